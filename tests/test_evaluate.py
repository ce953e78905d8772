"""Evaluation: F1 / accuracy / support, channel mapping by AU name, the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fgnet_video.aus import BP4D_AUS, CROSS_DATASET_AUS, DISFA_AUS
from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.model.config import TINY
from fgnet_video.model.fgnet import FGNet
from fgnet_video.train.data import DataIssues, FrameDataset, landmark_file, read_labels
from fgnet_video.train.evaluate import (
    ChannelMap,
    EvalResult,
    average_results,
    channel_map,
    count_predictions,
    predicted_active,
)
from fgnet_video.train.metrics import AUCounts
from fgnet_video.train.model_init import output_conv
from fgnet_video.train.options import EvaluateOptions
from fgnet_video.weights.checkpoints import save_converted


def test_f1_accuracy_support_by_hand() -> None:
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 1], [1, 0]], dtype=bool)
    predicted = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0]], dtype=bool)
    counts = AUCounts.from_predictions(predicted, truth)
    # AU a: tp 2, fp 1, fn 1, tn 1 -> F1 = 2*2 / (2*2 + 1 + 1) = 2/3; AU b: nothing found.
    np.testing.assert_allclose(counts.f1(), [200 / 3, 0.0])
    np.testing.assert_allclose(counts.accuracy(), [60.0, 80.0])
    np.testing.assert_array_equal(counts.support, [3, 1])
    assert counts.mean_f1() == pytest.approx(100 / 3)
    doubled = counts + counts
    np.testing.assert_array_equal(doubled.tp, [4, 0])
    np.testing.assert_allclose(doubled.f1(), counts.f1())
    np.testing.assert_array_equal(AUCounts.from_array(counts.as_array()).fp, counts.fp)
    # No positives and none predicted: F1 is 0 (sklearn's zero_division default), not NaN.
    empty = AUCounts.from_predictions(np.zeros((3, 1), bool), np.zeros((3, 1), bool))
    assert empty.f1().tolist() == [0.0] and empty.accuracy().tolist() == [100.0]


def test_decisions_use_the_mean_of_the_clamped_heatmap() -> None:
    raw = torch.full((1, 3, 2, 2), -1.0)
    raw[0, 0, 0, 0] = 5.0  # unclamped mean 0.5 > 0, clamped mean (1 - 3) / 4 < 0
    raw[0, 1] = 0.25
    raw[0, 2, 0] = 3.0  # clamped mean (1 + 1 - 1 - 1) / 4 = 0: not > 0
    assert predicted_active(raw, (0, 1, 2)).tolist() == [[False, True, False]]
    assert predicted_active(raw, (1, 0)).tolist() == [[True, False]]


def test_channels_are_matched_by_au_number() -> None:
    bp4d_on_disfa = channel_map(BP4D_AUS, DISFA_AUS)
    assert bp4d_on_disfa == ChannelMap(aus=(1, 2, 4, 6, 12), channels=(0, 1, 2, 3, 6),
                                       columns=(0, 1, 2, 3, 5))
    disfa_on_bp4d = channel_map(DISFA_AUS, BP4D_AUS)
    assert disfa_on_bp4d == ChannelMap(aus=(1, 2, 4, 6, 12), channels=(0, 1, 2, 3, 5),
                                       columns=(0, 1, 2, 3, 6))
    assert bp4d_on_disfa.aus == CROSS_DATASET_AUS
    assert channel_map(BP4D_AUS, DISFA_AUS, only=(12, 4)).aus == (4, 12)
    with pytest.raises(UserError, match="AU 9 is not both predicted"):
        channel_map(BP4D_AUS, DISFA_AUS, only=(9,))
    with pytest.raises(UserError, match="none in common"):
        channel_map((7, 10), (9, 25))


class _FixedScores(torch.nn.Module):
    """Returns, for each image, the heatmaps of a fixed table row chosen by the image's first
    pixel (frame i is painted with value 10 * i)."""

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.rows = rows

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        index = torch.round((images[:, 0, 0, 0] + 1) / 2 * 255 / 10).long()
        return self.rows[index][:, :, None, None].expand(-1, -1, 4, 4)


def _write_frames(root: Path, folder: str, n: int) -> list[str]:
    paths = []
    for i in range(n):
        rel = f"{folder}/aligned_images/{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(root / rel)
        lm = landmark_file(root / rel)
        lm.parent.mkdir(parents=True, exist_ok=True)
        np.save(lm, np.full((68, 2), 128.0))
        paths.append(rel)
    return paths


def test_counts_on_a_fixed_prediction_set(tmp_path: Path) -> None:
    paths = _write_frames(tmp_path, "X", 6)
    labels = [(1, 0), (1, 1), (0, 1), (0, 0), (1, 0), (0, 1)]
    csv = tmp_path / "labels.csv"
    csv.write_text("image_path,au12,au1\n" + "".join(
        f"{p},{a},{b}\n" for p, (a, b) in zip(paths, labels, strict=True)))
    # Model channels: AU1, AU12 (the reverse of the CSV's column order).
    scores = torch.tensor([[-0.2, 0.3], [0.4, 0.1], [0.5, -0.1], [0.1, -0.6], [-0.9, 0.2],
                           [-0.3, -0.2]])
    table = read_labels(csv, tmp_path, "custom", DataIssues())
    mapping = channel_map((1, 12), table.aus)
    counts = count_predictions(_FixedScores(scores), FrameDataset(table, 8), mapping,
                               device=torch.device("cpu"), batch_size=4, show_progress=False)
    # AU12 (channel 1): predicted 1,1,0,0,1,0 vs truth 1,1,0,0,1,0 -> F1 100.
    # AU1 (channel 0): predicted 0,1,1,1,0,0 vs truth 0,1,1,0,0,1 -> tp 2, fp 1, fn 1.
    assert mapping.aus == (12, 1)
    np.testing.assert_allclose(counts.f1(), [100.0, 200 / 3])
    np.testing.assert_array_equal(counts.support, [3, 3])
    np.testing.assert_allclose(counts.accuracy(), [100.0, 100 * 4 / 6])


def test_fold_average_is_the_mean_of_per_fold_f1() -> None:
    a = AUCounts.from_predictions(np.array([[1], [0]], bool), np.array([[1], [1]], bool))
    b = AUCounts.from_predictions(np.array([[1], [1]], bool), np.array([[1], [1]], bool))
    average = average_results([EvalResult("0", (4,), a), EvalResult("1", (4,), b)])
    assert average["per_au"]["AU04"]["f1"] == pytest.approx((200 / 3 + 100) / 2)
    assert average["per_au"]["AU04"]["support"] == 4


def _au12_only_checkpoint(path: Path) -> Path:
    """A tiny BP4D checkpoint whose heatmaps are constant: +0.5 on the AU12 channel, -0.5
    elsewhere (output conv weights zeroed)."""
    torch.manual_seed(0)
    model = FGNet(TINY).eval()
    conv = output_conv(model)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-0.5)
        conv.bias[BP4D_AUS.index(12)] = 0.5
    return save_converted(path, model, "bp4d", BP4D_AUS)


def test_evaluate_cli_cross_dataset_on_all_folds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = _write_frames(data, "DISFA", 4)
    header = "image_path," + ",".join(f"au{a}" for a in DISFA_AUS)
    # DISFA intensities; AU12 is column 5 and active iff >= 2.
    au12_per_fold = [(3, 0, 1, 2), (0, 0, 0, 5), (2, 2, 2, 2)]
    for fold, au12 in enumerate(au12_per_fold):
        rows = [header]
        for path, value in zip(paths, au12, strict=True):
            values = [1, 0, 4, 0, 0, value, 3, 0]
            rows.append(path + "," + ",".join(map(str, values)))
        folder = data / "DISFA" / "labels" / str(fold)
        folder.mkdir(parents=True)
        (folder / "test.csv").write_text("\n".join(rows) + "\n")
    weights = _au12_only_checkpoint(tmp_path / "bp4d.safetensors")
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(main, [
        "evaluate", "--weights", str(weights), "--dataset", "disfa", "--data", str(data),
        "--all-folds", "--json", str(out), "--device", "cpu", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert "AU12" in result.output and "AU25" not in result.output
    report = json.loads(out.read_text())
    assert report["aus"] == [1, 2, 4, 6, 12]
    assert report["model"] == {"dataset": "bp4d", "aus": list(BP4D_AUS)}
    # Always predicting AU12: F1 = 2 P / (2 P + (N - P)) with P positives among N = 4.
    expected = [200 * p / (2 * p + 4 - p) for p in (2, 1, 4)]
    got = [s["per_au"]["AU12"]["f1"] for s in report["sets"]]
    np.testing.assert_allclose(got, expected)
    assert report["average"]["per_au"]["AU12"]["f1"] == pytest.approx(np.mean(expected))
    # AU1 is never predicted; AU4 (intensity 4, active everywhere) is missed too.
    assert report["average"]["per_au"]["AU04"] == {"f1": 0.0, "accuracy": 0.0, "support": 12}
    assert report["average"]["per_au"]["AU01"]["accuracy"] == 100.0
    assert report["average"]["mean_f1"] == pytest.approx(np.mean(expected) / 5)


def test_evaluate_cli_per_fold_weights_and_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = _write_frames(data, "BP4D", 2)
    header = "image_path," + ",".join(f"au{a}" for a in BP4D_AUS)
    row = ",".join(["1"] * 12)
    for fold in (0, 1, 2):
        folder = data / "BP4D" / "labels" / str(fold)
        folder.mkdir(parents=True)
        (folder / "test.csv").write_text(header + "\n" + "".join(f"{p},{row}\n" for p in paths))
    for fold in (0, 1, 2):
        _au12_only_checkpoint(tmp_path / f"ck{fold}.safetensors")
    result = CliRunner().invoke(main, [
        "evaluate", "--weights", str(tmp_path / "ck{fold}.safetensors"), "--dataset", "bp4d",
        "--data", str(data), "--all-folds", "--json", str(tmp_path / "s.json"),
        "--device", "cpu", "--num-workers", "0", "--aus", "AU12,1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "s.json").read_text())
    assert [s["weights"] for s in report["sets"]] == [
        str(tmp_path / f"ck{k}.safetensors") for k in (0, 1, 2)]
    assert report["aus"] == [1, 12]
    assert report["average"]["per_au"]["AU12"]["f1"] == 100.0
    missing = CliRunner().invoke(main, [
        "evaluate", "--weights", str(tmp_path / "ck0.safetensors"), "--dataset", "bp4d",
        "--data", str(data), "--fold", "1", "--csv", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1
    assert missing.output.strip() == f"fgnet-video: error: label CSV not found: {tmp_path}/nope.csv"


def test_evaluate_cli_builds_the_libraries_options(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def spy(weights: str, dataset: str, data: str, options: EvaluateOptions) -> dict:
        calls.append((weights, dataset, data, options))
        raise UserError("spied")

    monkeypatch.setattr("fgnet_video.train.evaluate.evaluate_weights", spy)
    args = ["evaluate", "--weights", "disfa", "--dataset", "BP4D", "--data", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.output.strip() == "fgnet-video: error: spied"
    assert calls == [("disfa", "bp4d", str(tmp_path), EvaluateOptions())]
    calls.clear()
    CliRunner().invoke(main, args + ["--aus", "AU12, 1", "--all-folds", "--offline"])
    assert calls[0][3] == EvaluateOptions(aus=(12, 1), all_folds=True, offline=True)
    both = CliRunner().invoke(main, args + ["--csv", "a.csv", "--all-folds"])
    assert both.output.strip() == "fgnet-video: error: --csv and --all-folds exclude each other"
    bad = CliRunner().invoke(main, args + ["--aus", "AU1,lips"])
    assert bad.output.strip() == ("fgnet-video: error: --aus takes AU numbers like 1,2,4"
                                  " (got 'AU1,lips')")


def test_evaluate_known_name_offline_is_one_line(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(home))
    monkeypatch.setenv("FGNET_VIDEO_OFFLINE", "1")
    result = CliRunner().invoke(main, ["evaluate", "--weights", "bp4d", "--dataset", "bp4d",
                                       "--data", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"fgnet-video: error: bp4d weights are not in {home}")
    assert "fgnet-video weights import" in lines[0]
