"""Checkpoint formats: release layout, pSp initialisation, refusal of bad files."""

from __future__ import annotations

import pickle

import pytest
import torch
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.model.checkpoints import infer_config, load_model
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model


class NotATensor:
    """A class whose pickle needs code execution: weights_only loading must refuse it."""


@pytest.fixture()
def tiny_release_files(tmp_path):
    """A tiny model saved in the release's layouts: model.pth and a pSp encoder.pt."""
    model = random_model(TINY, seed=1)
    parts = {p: getattr(model, p).state_dict() for p in ("interpreter", "g_all", "pspencoder")}
    torch.save(parts, tmp_path / "model.pth")
    psp_state = {f"encoder.{k}": v for k, v in model.pspencoder.state_dict().items()}
    psp_state |= {f"decoder.{k}": v for k, v in model.g_all.state_dict().items()}
    torch.save({"state_dict": psp_state, "latent_avg": model.latent_avg.clone(), "opts": {}},
               tmp_path / "encoder.pt")
    return model, tmp_path / "model.pth", tmp_path / "encoder.pt"


def test_release_layout_loads_with_inferred_sizes(tiny_release_files):
    model, model_pth, encoder_pt = tiny_release_files
    loaded = load_model(model_pth, psp=encoder_pt, dataset="disfa")
    assert loaded.model.config == TINY
    assert loaded.aus == (1, 2, 4, 6, 9, 12, 25, 26)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert set(loaded.metadata["sources"]) == {"model", "psp"}


def test_psp_file_initialises_a_trainable_model(tiny_release_files):
    model, _, encoder_pt = tiny_release_files
    loaded = load_model(encoder_pt)
    assert loaded.metadata["kind"] == "psp-init"
    assert torch.equal(loaded.model.latent_avg, model.latent_avg)
    for key, value in model.pspencoder.state_dict().items():
        assert torch.equal(loaded.model.pspencoder.state_dict()[key], value)
    head = loaded.model.interpreter.layer(TINY.n_levels - 1)[-1].weight.detach()
    assert abs(float(head.std()) - 0.02) < 0.01  # the release's N(0, 0.02) init


def test_psp_file_with_a_separate_stylegan(tiny_release_files, tmp_path):
    _, _, encoder_pt = tiny_release_files
    other = random_model(TINY, seed=9)
    torch.save({"g_ema": other.g_all.state_dict()}, tmp_path / "sg2.pt")
    loaded = load_model(encoder_pt, stylegan=tmp_path / "sg2.pt")
    assert torch.equal(loaded.model.g_all.input.input, other.g_all.input.input)


def test_release_model_needs_psp(tiny_release_files):
    _, model_pth, _ = tiny_release_files
    with pytest.raises(UserError, match="--psp"):
        load_model(model_pth)


def test_missing_and_misshapen_keys_are_named(tiny_release_files, tmp_path):
    _, model_pth, encoder_pt = tiny_release_files
    parts = torch.load(model_pth, weights_only=True)
    del parts["interpreter"]["layer0.1.bias"]
    torch.save(parts, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"1 missing \(e.g. layer0.1.bias\)"):
        load_model(tmp_path / "broken.pth", psp=encoder_pt)
    parts = torch.load(model_pth, weights_only=True)
    del parts["g_all"]
    torch.save(parts, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="not an FG-Net, pSp or converted checkpoint"):
        load_model(tmp_path / "partial.pth")


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"interpreter": NotATensor()}, path)
    with pytest.raises(UserError, match="pickled code"):
        load_model(path)
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump({"a": NotATensor()}, handle)
    with pytest.raises(UserError):
        load_model(tmp_path / "plain.pkl")


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", b"\x89PNG\r\n\x1a\n...."])
def test_wrong_files_give_one_clear_cli_line(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    image = tmp_path / "face.png"
    image.write_bytes(b"")
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(path), str(image)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgnet-video: error:"), result.output
    assert "Traceback" not in result.output and str(path) in lines[0]


def test_missing_weights_file(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        load_model(tmp_path / "absent.safetensors")


def test_infer_config_rejects_non_generators():
    with pytest.raises(UserError, match="StyleGAN2"):
        infer_config({"foo": torch.zeros(1)}, {})
