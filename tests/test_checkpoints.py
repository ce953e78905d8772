"""Checkpoint formats: release layout, pSp initialisation, refusal of bad files."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model
from fgnet_video.weights.checkpoints import load_model
from fgnet_video.weights.metadata import METADATA_KEY, read_converted_metadata
from fgnet_video.weights.release import infer_config

from .conftest import shared_path


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
    with pytest.raises(UserError, match=r"pickled code \(tests\.test_checkpoints\.NotATensor\)"):
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


def _not_pickle_bytes(size: int) -> bytes:
    """Random bytes that start like neither a pickle (0x80) nor a zip archive ('PK')."""
    return b"\x17" + np.random.default_rng(0).bytes(size - 1)


def test_files_that_are_no_checkpoint_say_so_not_pickled_code(tiny_release_files, tmp_path):
    _, model_pth, _ = tiny_release_files
    noise = tmp_path / "random.pth"
    noise.write_bytes(_not_pickle_bytes(50_000))
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a checkpoint\n")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    expected = {
        noise: "not a PyTorch checkpoint (neither a zip archive nor a pickle: unrecognised "
               "bytes (random data?))",
        text: "not a PyTorch checkpoint (neither a zip archive nor a pickle: text)",
        empty: "empty file (0 bytes), not a PyTorch checkpoint",
    }
    for path, reason in expected.items():
        with pytest.raises(UserError) as error:
            load_model(path)
        assert str(error.value) == f"{path}: {reason}"
    video = tmp_path / "encoder.pt"
    video.write_bytes(shared_path("media", "vox_talking.mp4").read_bytes())
    with pytest.raises(UserError) as error:
        load_model(model_pth, psp=video)
    assert str(error.value) == (f"{video}: not a PyTorch checkpoint (neither a zip archive nor "
                                "a pickle: an MP4/MOV video)")


def test_a_pickle_torch_cannot_read_is_not_called_code(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))  # no class, no function in it
    with warnings.catch_warnings(), pytest.raises(UserError) as error:
        warnings.simplefilter("error")  # nor a warning about its protocol: the error says it
        load_model(path)
    assert str(error.value) == (f"{path}: not a PyTorch checkpoint (unpickling failed: "
                                "Unsupported operand 149)")


@pytest.mark.parametrize("edit, problem", [
    ("{not json", "its metadata is not valid JSON (Expecting property name enclosed in double "
                  "quotes at character 1)"),
    ("[1, 2]", "its metadata is '[1, 2]', not a JSON object"),
    (lambda m: m.pop("config"), "its metadata has no 'config'"),
    (lambda m: m.update(config=[]), "its metadata's 'config' is not an object"),
    (lambda m: m.pop("dataset"), "its metadata has no 'dataset'"),
    (lambda m: m.update(aus="1,2"), "its metadata's 'aus' is not a list"),
    (lambda m: m.update(aus=[1, "x"]), "its metadata's 'aus' are not all AU numbers"),
    (lambda m: m.update(aus=list(range(1, 41))), "its metadata lists 40 AUs for 32 heatmaps"),
    (lambda m: m.update(aus=[]), "its metadata lists 0 AUs for 32 heatmaps"),
    (lambda m: m.update(format_version="x"), "its format_version 'x' is not a number"),
    (lambda m: m["config"].update(generator_channels=[8] * 5),
     "its config is invalid (generator_channels needs 6 widths for resolution 128)"),
    (lambda m: m["config"].update(resolution="abc"),
     "its config is invalid ('resolution' holds 'abc')"),
    (lambda m: m["config"].update(encoder_units=[1, 0, 2, 1]),
     "its config is invalid ('encoder_units' holds 0)"),
    (lambda m: m["config"].update(image_size=-32),
     "its config is invalid ('image_size' holds -32)"),
    (lambda m: m["config"].update(dropout="x"), "its config is invalid ('dropout' holds 'x')"),
    (lambda m: m["config"].update(features="early"),
     "its config is invalid ('features' is 'early')"),
])
def test_crafted_metadata_is_named_in_one_line(tiny_weights, tmp_path, edit, problem):
    """`edit`: the metadata text, or a change to the tiny model's metadata."""
    if isinstance(edit, str):
        metadata = edit
    else:
        meta = read_converted_metadata(tiny_weights)
        edit(meta)
        metadata = json.dumps(meta)
    path = tmp_path / "crafted.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={METADATA_KEY: metadata})
    for read in (load_model, read_converted_metadata):
        with pytest.raises(UserError) as error:
            read(path)
        assert str(error.value) == f"{path}: not a fgnet-video checkpoint: {problem}"
    result = CliRunner().invoke(main, ["weights", "info", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"fgnet-video: error: {path}: not a fgnet-video "
                                     f"checkpoint: {problem}")
