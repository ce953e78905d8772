"""After analyze: per-person summaries, plots, and OpenFace's column layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.analysis.tables import in_layout
from fgnet_video.cli import main
from fgnet_video.reports.plot import MAX_POINTS, plot_table
from fgnet_video.reports.summary import person_key, summarize
from tests.conftest import shared_path

# Person 0: ten frames 0.1 s apart, AU01 runs [0, 0.2), [0.3, 0.4), [0.6, 0.9).
P0_TIMES = [round(0.1 * k, 1) for k in range(10)]
P0_AU01 = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0]
# Person 1: seen at 0, 0.1, then (after 0.3 s without their face) 0.5, 0.6; each frame counts
# one frame interval (the table's median spacing, 0.1 s): 0.4 s seen, the time away not.
# AU01 runs [0, 0.1), [0.6, 0.7): a gap of 0.5 s.
P1_TIMES = [0.0, 0.1, 0.5, 0.6]
P1_AU01 = [1, 0, 0, 1]


def hand_table() -> pd.DataFrame:
    """Two persons, AU01 and AU02 (AU02 never active), and one frame without a face."""
    rows = [{"frame": round(t * 10), "timestamp": t, "face_id": person, "success": 1,
             "confidence": 0.9, "AU01_score": 0.5 if a else -0.5, "AU01": a,
             "AU02_score": -0.2, "AU02": 0}
            for person, (times, au01) in enumerate([(P0_TIMES, P0_AU01), (P1_TIMES, P1_AU01)])
            for t, a in zip(times, au01, strict=True)]
    rows.append({"frame": 10, "timestamp": 1.0, "success": 0})
    table = pd.DataFrame(rows).sort_values(["frame", "face_id"], ignore_index=True)
    for name in ("face_id", "success", "AU01", "AU02"):
        table[name] = table[name].astype("Int64")
    return table


def row(summary: pd.DataFrame, person, au: str) -> dict:
    key = summary.columns[0]
    found = summary[(summary[key] == person) & (summary["au"] == au)]
    assert len(found) == 1
    return found.iloc[0].to_dict()


def test_summary_counts_by_hand():
    summary = summarize(hand_table())
    assert list(summary["face_id"]) == [0, 0, 1, 1]
    p0 = row(summary, 0, "AU01")
    assert p0["frames"] == 10 and p0["seconds"] == pytest.approx(1.0)
    assert p0["active_share"] == pytest.approx(0.6)
    assert p0["events"] == 3
    assert p0["mean_event_s"] == pytest.approx(0.2)  # (0.2 + 0.1 + 0.3) / 3
    assert p0["median_event_s"] == pytest.approx(0.2)
    assert (p0["first_onset_s"], p0["last_onset_s"]) == pytest.approx((0.0, 0.6))
    p1 = row(summary, 1, "AU01")
    assert p1["frames"] == 4 and p1["seconds"] == pytest.approx(0.4)
    assert p1["active_share"] == pytest.approx(0.5) and p1["events"] == 2
    quiet = row(summary, 0, "AU02")
    assert quiet["events"] == 0 and quiet["active_share"] == 0
    assert math.isnan(quiet["mean_event_s"]) and math.isnan(quiet["first_onset_s"])


def test_time_without_the_persons_face_is_neither_seen_nor_active():
    """25 fps; a person found in frames 0-8 and 100-108 only, AU01 active in all 18: 0.72 s
    seen; at --bridge 0 two events of 0.36 s (the 3.64 s between them is not an event); a
    --bridge covering the gap joins them."""
    frames = [*range(9), *range(100, 109)]
    rows = [{"frame": k, "timestamp": k / 25, "face_id": 0 if k in frames else None,
             "success": int(k in frames), "confidence": 0.9,
             "AU01_score": 0.5 if k in frames else None, "AU01": 1 if k in frames else None}
            for k in range(120)]
    table = pd.DataFrame(rows)
    for name in ("face_id", "success", "AU01"):
        table[name] = table[name].astype("Int64")
    found = row(summarize(table), 0, "AU01")
    assert found["frames"] == 18 and found["seconds"] == pytest.approx(0.72)
    assert found["events"] == 2 and found["mean_event_s"] == pytest.approx(0.36)
    assert (found["first_onset_s"], found["last_onset_s"]) == pytest.approx((0.0, 4.0))
    bridged = row(summarize(table, bridge=3.64), 0, "AU01")
    assert bridged["events"] == 1 and bridged["mean_event_s"] == pytest.approx(4.36)
    assert row(summarize(table, bridge=3.6), 0, "AU01")["events"] == 2


@pytest.mark.parametrize("options, events, mean, last_onset", [
    ({"bridge": 0.1}, 2, (0.4 + 0.3) / 2, 0.6),    # [0, 0.4) joined; gap 0.2 to [0.6, 0.9)
    ({"bridge": 0.2}, 1, 0.9, 0.0),                # everything joined: [0, 0.9)
    ({"min_event": 0.2}, 2, (0.2 + 0.3) / 2, 0.6),  # [0.3, 0.4) dropped
    ({"bridge": 0.1, "min_event": 0.35}, 1, 0.4, 0.0),  # bridged first, then 0.3 s dropped
])
def test_bridge_and_min_event(options, events, mean, last_onset):
    p0 = row(summarize(hand_table(), **options), 0, "AU01")
    assert p0["events"] == events
    assert p0["mean_event_s"] == pytest.approx(mean)
    assert p0["last_onset_s"] == pytest.approx(last_onset)
    assert p0["active_share"] == pytest.approx(0.6)  # shares are of raw decisions


def test_bridge_spans_missing_frames():
    assert row(summarize(hand_table(), bridge=0.49), 1, "AU01")["events"] == 2
    joined = row(summarize(hand_table(), bridge=0.5), 1, "AU01")
    assert joined["events"] == 1 and joined["mean_event_s"] == pytest.approx(0.7)


def test_person_column_wins_over_face_id():
    table = hand_table()
    table["person_id"] = table["face_id"].map({0: "ann", 1: "bob"})
    assert person_key(table) == "person_id"
    summary = summarize(table)
    assert summary.columns[0] == "person_id"
    assert row(summary, "bob", "AU01")["seconds"] == pytest.approx(0.4)


def test_openface_layout_reads_the_same():
    table = hand_table()
    pd.testing.assert_frame_equal(summarize(in_layout(table, "openface")), summarize(table))


def test_summarize_cli_writes_csv_and_nested_json(tmp_path):
    source = tmp_path / "aus.csv"
    hand_table().to_csv(source, index=False)
    out = tmp_path / "summary.csv"
    result = CliRunner().invoke(main, ["summarize", str(source), "-o", str(out),
                                       "--bridge", "0.1"])
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out)
    assert row(csv, 0, "AU01")["events"] == 2
    nested = json.loads(out.with_suffix(".json").read_text())
    assert nested["person_key"] == "face_id" and nested["settings"]["bridge"] == 0.1
    assert nested["persons"]["0"]["aus"]["AU01"]["events"] == 2
    assert nested["persons"]["1"]["seconds"] == pytest.approx(0.4)
    assert nested["persons"]["0"]["aus"]["AU02"]["mean_event_s"] is None


def _one_line_error(args: list[str], code: int = 1) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgnet-video: error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("command", ["summarize", "plot"])
@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n", "not an fgnet-video analyze table"),
    ("", "not a readable table"),
    ("frame,timestamp,face_id,success,AU01_score,AU01\n", "has no rows"),
    ("frame,timestamp,face_id,success,AU01_score,AU01\n0,0.0,,0,,\n", "no face"),
])
def test_bad_tables_are_one_line(tmp_path, command, content, message):
    source = tmp_path / "bad.csv"
    source.write_text(content)
    args = [command, str(source)] + (["-o", str(tmp_path / "out.png")] if command == "plot"
                                     else [])
    assert message in _one_line_error(args)


def test_outputs_never_replace_the_input(tmp_path):
    source = tmp_path / "aus.csv"
    hand_table().to_csv(source, index=False)
    _one_line_error(["summarize", str(source), "-o", str(source)], code=2)
    _one_line_error(["plot", str(source), "-o", str(tmp_path / "aus.txt")])
    assert _one_line_error(["summarize", str(tmp_path / "none.csv")]).endswith("no such file")
    assert source.read_text() == hand_table().to_csv(index=False)


def test_plot_has_a_panel_per_person(tmp_path):
    figure = plot_table(hand_table())
    assert len(figure.axes) == 2
    assert [ax.get_title(loc="left").split(":")[0] for ax in figure.axes] == ["face_id 0",
                                                                               "face_id 1"]
    source = tmp_path / "aus.parquet"
    hand_table().to_parquet(source)
    result = CliRunner().invoke(main, ["plot", str(source), "-o", str(tmp_path / "aus.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "aus.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_downsamples_long_recordings():
    n = 5 * MAX_POINTS
    times = np.arange(n) / 25.0
    table = pd.DataFrame({"frame": np.arange(n), "timestamp": times, "face_id": 0,
                          "success": 1, "AU01_score": np.sin(times), "AU01": (np.sin(times) > 0)
                          .astype(int)})
    figure = plot_table(table)
    (trace,) = figure.axes[0].get_lines()[1:]  # after the dotted centre line
    assert len(trace.get_xdata()) <= MAX_POINTS


# --- a real analyze output ---------------------------------------------------------------

@pytest.fixture(scope="module")
def real_tables(tmp_path_factory):
    """(default table, OpenFace-layout table) of analyze on the real talking clip, tiny
    random weights."""
    video = shared_path("media", "vox_talking.mp4")
    folder = tmp_path_factory.mktemp("real")
    runner = CliRunner()
    weights = folder / "tiny.safetensors"
    result = runner.invoke(main, ["weights", "init", "--preset", "tiny", "-o", str(weights)])
    assert result.exit_code == 0, result.output
    tables = []
    for name, extra in (("aus.csv", []), ("openface.csv", ["--columns", "openface"])):
        result = runner.invoke(main, ["analyze", str(video), "-w", str(weights),
                                      "-o", str(folder / name), *extra])
        assert result.exit_code == 0, result.output
        tables.append(folder / name)
    return tables


def test_real_summary_and_plot(real_tables, tmp_path):
    aus_csv, _ = real_tables
    table = pd.read_csv(aus_csv)
    summary = summarize(aus_csv)
    assert set(summary["person_id"]) == set(table["person_id"].dropna().astype(int))
    first = summary.iloc[0]
    frames = int((table["person_id"] == first["person_id"]).sum())
    assert first["frames"] == frames
    assert first["seconds"] == pytest.approx(frames / 25.0, rel=1e-6)  # 25 fps, no gaps
    assert first["active_share"] == pytest.approx(table[first["au"]].mean())
    result = CliRunner().invoke(main, ["plot", str(aus_csv), "-o", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.png").stat().st_size > 10_000


def test_openface_columns(real_tables):
    aus_csv, openface_csv = real_tables
    ours, theirs = pd.read_csv(aus_csv), pd.read_csv(openface_csv)
    aus = [c for c in ours.columns if c.startswith("AU") and not c.endswith("_score")]
    assert list(theirs.columns) == ["frame", "face_id", "timestamp", "confidence", "success",
                                    *[f"{au}_c" for au in aus]]
    assert [au[:2] for au in aus] == ["AU"] * 12
    for au in aus:
        assert theirs[f"{au}_c"].equals(ours[au])
    for name in ("frame", "face_id", "timestamp", "confidence", "success"):
        assert theirs[name].equals(ours[name])
    sidecar = json.loads(openface_csv.with_suffix(".json").read_text())
    assert sidecar["settings"]["columns"] == "openface"
    # OpenFace's layout has no person ids: its summary is per face track, the same here
    # (one track, one person)
    assert ours["face_id"].dropna().equals(ours["person_id"].dropna())
    pd.testing.assert_frame_equal(summarize(openface_csv),
                                  summarize(aus_csv).rename(columns={"person_id": "face_id"}))
