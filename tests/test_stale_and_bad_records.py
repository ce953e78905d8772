"""A finished unit is kept only when it answers the command run now (else it is redone, and
a line says why); a malformed run record is an incomplete unit, never a crash, and names in
records never lead out of their folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.analysis.sidecar import OutputPaths, read_run_record
from fgnet_video.cli import main

from .conftest import shared_path


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def analysed(tmp_path, tiny_weights) -> tuple[Path, Path]:
    """(video, table) of one finished analysis at 2 frames per second."""
    video = tmp_path / "v.mp4"
    shutil.copy(shared_path("media", "vox_talking.mp4"), video)
    table = tmp_path / "x.csv"
    result = _run("analyze", str(video), "-o", str(table), "-w", str(tiny_weights), "--fps", "2")
    assert result.exit_code == 0, result.output
    return video, table


def test_the_same_command_again_skips_the_finished_unit(analysed, tiny_weights):
    video, table = analysed
    before = table.read_bytes()
    result = _run("analyze", str(video), "-o", str(table), "-w", str(tiny_weights), "--fps", "2")
    assert result.exit_code == 0 and "complete already, skipped" in result.output, result.output
    assert table.read_bytes() == before


@pytest.mark.parametrize("change, why", [
    (["--fps", "1"], "sampling"),
    (["--fps", "2", "--columns", "openface"], "columns"),
    (["--fps", "2", "--smooth", "1"], "smooth"),
    (["--fps", "2", "--min-face", "60"], "face settings"),
])
def test_other_settings_redo_the_unit_and_say_why(analysed, tiny_weights, change, why):
    video, table = analysed
    result = _run("analyze", str(video), "-o", str(table), "-w", str(tiny_weights), *change)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "analysed again" in line]
    assert len(lines) == 1 and why in lines[0], result.output
    assert "skipped" not in result.output
    record = read_run_record(table.with_suffix(".json"))
    assert OutputPaths.for_table(table).complete() and record is not None
    if why == "sampling":
        assert record["settings"]["sampling"]["fps"] == 1.0
        assert len(pd.read_csv(table)) < 10  # 1 frame per second of a 4.7 s clip


def test_other_weights_redo_the_unit(analysed, tmp_path):
    video, table = analysed
    other = tmp_path / "other.safetensors"
    made = _run("weights", "init", "--preset", "tiny", "--seed", "1", "-o", str(other))
    assert made.exit_code == 0, made.output
    result = _run("analyze", str(video), "-o", str(table), "-w", str(other), "--fps", "2")
    assert result.exit_code == 0, result.output
    assert "analysed again" in result.output and "weights" in result.output, result.output
    record = read_run_record(table.with_suffix(".json"))
    assert Path(record["checkpoint"]["path"]).name == "other.safetensors"


def test_weights_changed_in_place_redo_the_unit(analysed, tiny_weights, tmp_path):
    video, table = analysed
    weights = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, weights)
    first = _run("analyze", str(video), "-o", str(table), "-w", str(weights), "--fps", "2",
                 "--overwrite")
    assert first.exit_code == 0, first.output
    made = _run("weights", "init", "--preset", "tiny", "--seed", "2", "-o",
                str(tmp_path / "seed2.safetensors"))
    assert made.exit_code == 0
    shutil.copy(tmp_path / "seed2.safetensors", weights)  # retrained into the same file
    result = _run("analyze", str(video), "-o", str(table), "-w", str(weights), "--fps", "2")
    assert "has changed since" in result.output, result.output


BAD_RECORDS = {
    "outputs_list": {"tool": "fgnet-video", "finished": True, "outputs": [1]},
    "list": [1, 2, 3],
    "string": "fgnet-video",
    "escaping_name": {"tool": "fgnet-video", "finished": True,
                      "outputs": {"table": {"name": "../../etc/passwd", "bytes": 1,
                                            "sha256": "0"}}},
    "absolute_name": {"tool": "fgnet-video", "finished": True,
                      "outputs": {"table": {"name": "/etc/passwd", "bytes": 1, "sha256": "0"}}},
    "integer_name": {"tool": "fgnet-video", "finished": True,
                     "outputs": {"table": {"name": 7, "bytes": 1, "sha256": "0"}}},
    "missing_name": {"tool": "fgnet-video", "finished": True,
                     "outputs": {"table": {"bytes": 1, "sha256": "0"}}},
    "escaping_overlay": {"tool": "fgnet-video", "finished": True,
                         "outputs": {"table": {"name": "escaping_overlay.csv", "bytes": 1,
                                               "sha256": "0"},
                                     "overlay": {"name": "../o.mp4", "bytes": 1,
                                                 "sha256": "0"}}},
}
DEEP = "[" * 100_000 + "]" * 100_000


def _write_bad_records(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, record in BAD_RECORDS.items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    (folder / "deep.json").write_text(DEEP)
    (folder / "deep.failed.json").write_text(DEEP)
    return [*BAD_RECORDS, "deep"]


def test_bad_records_are_no_records(tmp_path):
    names = _write_bad_records(tmp_path)
    for name in names:
        assert read_run_record(tmp_path / f"{name}.json") is None, name
        assert OutputPaths.from_sidecar(tmp_path / f"{name}.json") is None, name
        assert not OutputPaths.for_table(tmp_path / f"{name}.csv").complete(), name


def test_status_reads_a_folder_of_bad_records_without_failing(tmp_path):
    names = _write_bad_records(tmp_path / "out")
    listed = _run("status", str(tmp_path / "out"))
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("0 done, 0 failed, 0 missing"), listed.output
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in names:
        (inputs / f"{name}.mp4").write_bytes(b"")
    named = _run("status", str(tmp_path / "out"), str(inputs))
    assert named.exit_code == 1 and "Traceback" not in named.output, named.output
    assert f"0 done, 0 failed, {len(names)} missing" in named.output, named.output


def test_a_study_redoes_units_with_bad_records_and_names_them(tmp_path, tiny_weights):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("outputs_list", "deep"):
        shutil.copy(shared_path("media", "vox_talking.mp4"), inputs / f"{name}.mp4")
    out.mkdir()
    (out / "outputs_list.json").write_text(json.dumps(BAD_RECORDS["outputs_list"]))
    (out / "deep.json").write_text(DEEP)
    result = _run("analyze", str(inputs), "--out-dir", str(out), "-w", str(tiny_weights),
                  "--fps", "2")
    assert result.exit_code == 0, result.output
    redone = [line for line in result.output.splitlines() if "not a valid run record" in line]
    assert len(redone) == 2, result.output
    for name in ("outputs_list", "deep"):
        assert OutputPaths.for_table(out / f"{name}.csv").complete()


def test_a_replaced_recording_or_left_out_features_redo_the_unit(analysed, tiny_weights):
    video, table = analysed
    reduced = _run("analyze", str(video), "-o", str(table), "-w", str(tiny_weights), "--fps",
                   "2", "--features", "early")
    assert "features" in reduced.output and "analysed again" in reduced.output, reduced.output
    full = _run("analyze", str(video), "-o", str(table), "-w", str(tiny_weights), "--fps", "2")
    assert "features ['early'] then" in full.output, full.output  # not given: all three
    shutil.copy(shared_path("media", "webcam_lamp.wmv"), video)  # another recording, same path
    replaced = _run("analyze", str(video), "-o", str(table), "-w", str(tiny_weights), "--fps",
                    "2")
    assert "has changed since" in replaced.output, replaced.output


def test_folder_inputs_leave_out_hidden_files_and_overlays_beside_a_record(tmp_path):
    from fgnet_video.study.plan import expand_inputs

    (tmp_path / "talk.mp4").write_bytes(b"")
    (tmp_path / ".talk.overlay.partial-12@host.mp4").write_bytes(b"")  # a killed run's
    (tmp_path / "talk.overlay.mp4").write_bytes(b"")
    (tmp_path / "talk.json").write_text("{}")  # any record beside it, valid or not
    (tmp_path / "other.overlay.mp4").write_bytes(b"")  # no record: a user's video
    assert sorted(job.name for job in expand_inputs([str(tmp_path)])) == [
        "other.overlay", "talk"]


def test_a_study_redoes_each_unit_made_with_other_settings_and_names_it(tmp_path, tiny_weights):
    """--out-dir: a rerun with the same settings skips both finished units; with another
    --fps, each unit is redone with one line naming it and the reason."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(shared_path("media", "vox_talking.mp4"), inputs / "talk.mp4")
    shutil.copy(shared_path("media", "sample_disfa.avi"), inputs / "lab.avi")
    common = ["analyze", str(inputs), "--out-dir", str(out), "-w", str(tiny_weights)]
    first = _run(*common, "--fps", "2")
    assert first.exit_code == 0, first.output
    again = _run(*common, "--fps", "2")
    assert again.exit_code == 0 and "analysed again" not in again.output, again.output
    assert "0 done, 2 skipped, 0 failed" in again.output, again.output
    redone = _run(*common, "--fps", "1")
    assert redone.exit_code == 0, redone.output
    lines = [line for line in redone.output.splitlines() if "analysed again" in line]
    assert len(lines) == 2 and all("sampling" in line for line in lines), redone.output
    assert any("talk" in line for line in lines) and any("lab" in line for line in lines)
    for name in ("talk", "lab"):
        record = read_run_record(out / f"{name}.json")
        assert record is not None and record["settings"]["sampling"]["fps"] == 1.0


def test_a_known_weights_name_other_than_the_recorded_one_redoes_the_unit(tmp_path,
                                                                        monkeypatch):
    """-w bp4d, then -w disfa: the record names the cached bp4d file; disfa's is another
    (the names resolve in the weights cache, nothing is downloaded to compare)."""
    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study.freshness import _weights_differ
    from fgnet_video.weights.store import KNOWN_WEIGHTS

    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path))
    cached = tmp_path / KNOWN_WEIGHTS["bp4d"].filename
    recorded = {"path": str(cached), "sha256": "0" * 64}
    assert _weights_differ(recorded, AnalyzeOptions.from_kwargs(weights="bp4d")) is None
    assert _weights_differ(recorded, AnalyzeOptions.from_kwargs(weights="disfa")) == (
        f"weights {cached} then, disfa now")
