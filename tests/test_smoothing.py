"""`analyze --smooth`: the streaming majority filter of each track's decisions, and end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.analysis.recording import analyze_video
from fgnet_video.analysis.smoothing import DecisionSmoother
from fgnet_video.analysis.stream import ROW_COLUMNS
from fgnet_video.analysis.tables import au_table, decision_columns
from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.options import AnalyzeOptions

from .conftest import shared_path

AUS = (1, 2)
FPS = 30.0
THREE_FRAMES = 0.1  # a centred window of 0.1 s holds a frame and its two neighbours at 30 fps


def table(records: list[tuple[int, float, int | None, list[int] | None]]) -> pd.DataFrame:
    """Rows in analyze's layout from (frame, time, face_id or None, per AU 0/1 or None):
    a face's score is +0.5 for 1 and -0.5 for 0 (so the raw decision is score > 0); None is
    a frame without a face."""
    base = pd.DataFrame({
        "frame": [r[0] for r in records],
        "timestamp": [r[1] for r in records],
        "face_id": pd.array([r[2] for r in records], dtype="Int64"),
        "success": pd.array([0 if r[2] is None else 1 for r in records], dtype="Int64"),
        **{name: np.where([r[2] is None for r in records], np.nan, 10.0)
           for name in ("confidence", "x", "y", "w", "h")},
    }, columns=ROW_COLUMNS)
    scores = np.array([[np.nan] * len(AUS) if r[3] is None else [v - 0.5 for v in r[3]]
                       for r in records], dtype=np.float64).reshape(-1, len(AUS))
    return pd.concat([base, au_table(scores, AUS)], axis=1)


def track(decisions: list[list[int]], face_id: int = 0) -> pd.DataFrame:
    """One face in every frame at 30 fps with these per-frame decisions."""
    return table([(k, round(k / FPS, 6), face_id, d) for k, d in enumerate(decisions)])


def by_frame(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """The row groups of `rows`, one per frame, in order."""
    return [group for _, group in rows.groupby("frame", sort=True)]


def streamed(rows: pd.DataFrame, seconds: float, groups: list[pd.DataFrame] | None = None):
    """`rows` through a DecisionSmoother, fed as `groups` (default one per frame)."""
    smoother = DecisionSmoother(seconds)
    parts = [smoother.push(g.reset_index(drop=True)) for g in groups or by_frame(rows)]
    parts.append(smoother.finish())
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def reference(rows: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """The rule, written out row by row: per face row and AU, the majority of its track's
    raw decisions within [t - S/2, t + S/2]; a tie keeps the raw decision."""
    out = rows.copy()
    faces = rows[rows["success"] == 1]
    for i, row in faces.iterrows():
        near = faces[(faces["face_id"] == row["face_id"])
                     & ((faces["timestamp"] - row["timestamp"]).abs() <= seconds / 2 + 1e-9)]
        for name in decision_columns(rows.columns):
            ones, zeros = int((near[name] == 1).sum()), int((near[name] == 0).sum())
            out.loc[i, name] = 1 if ones > zeros else 0 if zeros > ones else row[name]
    return out


def test_a_one_frame_blip_and_a_one_frame_dropout_are_removed():
    rows = track([[0, 1], [0, 1], [0, 1], [1, 0], [0, 1], [0, 1], [0, 1]])
    out = streamed(rows, THREE_FRAMES)
    assert out["AU01"].tolist() == [0] * 7
    assert out["AU02"].tolist() == [1] * 7
    pd.testing.assert_frame_equal(out.drop(columns=["AU01", "AU02"]),
                                  rows.drop(columns=["AU01", "AU02"]))
    assert out.dtypes.equals(rows.dtypes)


def test_ties_keep_the_raw_decision_and_windows_stop_at_the_track_ends():
    # each window holds both frames (cut at the track's ends): one 1 and one 0
    rows = track([[1, 0], [0, 1]])
    pd.testing.assert_frame_equal(streamed(rows, THREE_FRAMES), rows)
    # the first frame's window is frames 0-1 only: a tie; frame 1 sees 1, 0, 0
    rows = track([[1, 1], [0, 1], [0, 1]])
    assert streamed(rows, THREE_FRAMES)["AU01"].tolist() == [1, 0, 0]


def test_interleaved_tracks_are_smoothed_separately():
    zero = [[0, 0], [0, 0], [1, 1], [0, 0], [0, 0]]
    one = [[1, 1], [1, 1], [0, 0], [1, 1], [1, 1]]
    rows = table([(k, round(k / FPS, 6), face, (zero if face == 0 else one)[k])
                  for k in range(5) for face in (0, 1)])
    out = streamed(rows, THREE_FRAMES)
    assert out.loc[out["face_id"] == 0, "AU01"].tolist() == [0] * 5
    assert out.loc[out["face_id"] == 1, "AU01"].tolist() == [1] * 5
    pd.testing.assert_frame_equal(out[["frame", "face_id"]], rows[["frame", "face_id"]])


def test_rows_without_a_face_pass_untouched_and_order_is_kept():
    records = [(0, 0.0, 0, [1, 1]), (1, 0.04, None, None), (2, 0.05, 0, [0, 1]),
               (3, 0.06, 0, [1, 0]), (4, 0.2, None, None), (5, 0.3, 0, [0, 0])]
    rows = table(records)
    out = streamed(rows, 0.2)
    assert len(out) == len(rows)
    pd.testing.assert_frame_equal(out[rows["success"] == 0], rows[rows["success"] == 0])
    pd.testing.assert_frame_equal(out, reference(rows, 0.2))
    # frames 0, 2, 3 vote together (within 0.1 s); frame 5 is alone
    assert out.loc[rows["success"] == 1, "AU01"].tolist() == [1, 1, 1, 0]


def test_rows_come_out_with_a_bounded_delay_and_bounded_memory():
    decisions = [[k % 3 == 0, k % 2] for k in range(300)]
    rows = track([[int(a), int(b)] for a, b in decisions])
    smoother = DecisionSmoother(THREE_FRAMES)
    out = []
    for k, group in enumerate(by_frame(rows)):
        out.append(smoother.push(group.reset_index(drop=True)))
        # frame j is final once a frame later than t_j + 0.05 s is in: j <= k - 2
        assert sum(len(p) for p in out) == max(0, k - 1)
        assert smoother.held <= 4
    out.append(smoother.finish())
    assert smoother.held == 0
    pd.testing.assert_frame_equal(pd.concat(out, ignore_index=True),
                                  reference(rows, THREE_FRAMES))


@pytest.mark.parametrize("seed", range(5))
def test_streaming_equals_the_rule_on_random_tracks_and_groups(seed):
    rng = np.random.default_rng(seed)
    time, records = 0.0, []
    for k in range(80):  # variable frame rate, faces coming and going
        time = round(time + rng.choice([0.01, 0.033, 0.1, 0.25]), 6)
        faces = [f for f in range(3) if rng.random() < 0.7]
        records += ([(k, time, f, rng.integers(0, 2, len(AUS)).tolist()) for f in faces]
                    or [(k, time, None, None)])
    rows = table(records)
    frames = by_frame(rows)
    cuts = np.sort(rng.choice(np.arange(1, len(frames)), 15, replace=False))
    groups = [pd.concat(part) for part in np.split(np.array(frames, dtype=object), cuts)]
    seconds = float(rng.choice([0.05, 0.3, 1.0]))
    pd.testing.assert_frame_equal(streamed(rows, seconds, groups), reference(rows, seconds))


def test_a_zero_window_changes_nothing_and_a_negative_one_is_refused():
    rows = track([[0, 1], [1, 0], [0, 1]])
    pd.testing.assert_frame_equal(streamed(rows, 0.0), rows)
    with pytest.raises(UserError, match="--smooth"):
        AnalyzeOptions(smooth=-1.0)
    result = CliRunner().invoke(main, ["analyze", "x.mp4", "-o", "x.csv", "--smooth", "-1"])
    assert result.exit_code == 2 and "--smooth" in result.output


def flickering_weights(tiny_weights: Path, scores: pd.Series, out: Path) -> Path:
    """The tiny test model (`tiny_weights`, seed 0) with AU01's heatmap bias shifted by minus
    the median of its `scores`: its scores then sit around 0 and its decisions flicker from
    frame to frame (the random model's are otherwise constant over a clip)."""
    import torch

    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    model = random_model(TINY, seed=0)
    with torch.no_grad():
        output_conv = model.interpreter.layer(model.interpreter.config.n_levels - 1)[-1]
        output_conv.bias[0] -= float(scores.median())
    return save_converted(out, model, "bp4d", BP4D_AUS, extra={"kind": "random"})


def analyze_cli(*args: str) -> None:
    result = CliRunner().invoke(main, ["analyze", *args])
    assert result.exit_code == 0, result.output


def test_smoothed_cli_run_keeps_scores_and_smooths_decisions(tiny_weights, tmp_path):
    video = shared_path("media", "vox_talking.mp4")
    first = tmp_path / "first.csv"
    analyze_cli(str(video), "-w", str(tiny_weights), "-o", str(first))
    weights = flickering_weights(tiny_weights, pd.read_csv(first)["AU01_score"],
                                 tmp_path / "flicker.safetensors")
    plain, smooth = tmp_path / "plain.csv", tmp_path / "smooth.csv"
    analyze_cli(str(video), "-w", str(weights), "-o", str(plain))
    analyze_cli(str(video), "-w", str(weights), "-o", str(smooth), "--smooth", "0.5")

    raw, smoothed = pd.read_csv(plain), pd.read_csv(smooth)
    decisions = decision_columns(raw.columns)
    expected = reference(raw, 0.5)
    assert (expected["AU01"] != raw["AU01"]).sum() > 0  # the window does something
    pd.testing.assert_frame_equal(smoothed.drop(columns=decisions), raw.drop(columns=decisions))
    pd.testing.assert_frame_equal(smoothed[decisions], expected[decisions].astype(np.int64))
    assert json.loads(smooth.with_suffix(".json").read_text())["settings"]["smooth"] == 0.5
    assert json.loads(plain.with_suffix(".json").read_text())["settings"]["smooth"] is None

    library = analyze_video(video, weights=str(weights), smooth=0.5)
    np.testing.assert_array_equal(library[decisions].to_numpy(int), smoothed[decisions])
