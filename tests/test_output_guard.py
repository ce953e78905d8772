"""The output guard (fgnet_video.analysis.guard) for every command that writes: no output may
replace an input, a file of a finished analysis (table, run record, overlay, saved tracks,
failure record, the recording it analysed) or its JSON twin; a refusal is one line, exit
status 2, nothing touched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fgnet_video.analysis.guard import OutputClash, PlannedUnit, check_outputs
from fgnet_video.analysis.sidecar import finished_files, read_run_record
from fgnet_video.cli import main

from .conftest import shared_path


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_weights) -> Path:
    """A folder with interview.mp4 analysed into aus.csv + aus.json + aus.tracks.npz."""
    folder = tmp_path_factory.mktemp("finished")
    shutil.copy(shared_path("media", "vox_talking.mp4"), folder / "interview.mp4")
    result = _run("analyze", str(folder / "interview.mp4"), "-o", str(folder / "aus.csv"),
                  "-w", str(tiny_weights), "--fps", "2", "--save-tracks")
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def study(finished, tmp_path, tiny_weights) -> Path:
    """A copy of `finished`, analysed again in place (an analysis may redo its own files;
    the run record then names this copy's recording)."""
    folder = tmp_path / "study"
    shutil.copytree(finished, folder)
    result = _run("analyze", str(folder / "interview.mp4"), "-o", str(folder / "aus.csv"),
                  "-w", str(tiny_weights), "--fps", "2", "--save-tracks", "--overwrite")
    assert result.exit_code == 0, result.output
    return folder


def _assert_refused(result, folder: Path, before: dict[str, str], what: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgnet-video: error: "), result.output
    assert what in lines[0], lines[0]
    assert _digests(folder) == before  # nothing touched


@pytest.mark.parametrize("output, what", [
    ("interview.mp4", "would replace a file of the analysis recorded in"),  # the recording
    ("aus.tracks.npz", "would replace a file of the analysis recorded in"),  # saved tracks
    ("aus.txt", "aus.json: would replace a file of the analysis"),  # the twin is the record
    ("aus.failed.csv", "aus.failed.json"),  # the failure record's name
])
def test_summarize_never_writes_over_a_finished_analysis(study, output, what):
    before = _digests(study)
    result = _run("summarize", str(study / "aus.csv"), "-o", str(study / output))
    _assert_refused(result, study, before, what)


@pytest.mark.parametrize("command", ["summarize", "plot"])
def test_the_recording_of_a_table_made_elsewhere_is_protected(tmp_path, tiny_weights, command):
    """in/ -> out/: the recording lies beside no run record, but the table's own record
    (out/aus.json) names it, so neither summarize nor plot of out/aus.csv may write it."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    shutil.copy(shared_path("media", "vox_talking.mp4"), source / "interview.mp4")
    result = _run("analyze", str(source / "interview.mp4"), "-o", str(out / "aus.csv"),
                  "-w", str(tiny_weights), "--fps", "2")
    assert result.exit_code == 0, result.output
    before = _digests(source)
    result = _run(command, str(out / "aus.csv"), "-o", str(source / "interview.mp4"))
    _assert_refused(result, source, before, "would replace a file of the analysis recorded in")


def test_plot_never_writes_over_a_run_record(study):
    before = _digests(study)
    result = _run("plot", str(study / "aus.csv"), "-o", str(study / "aus.json"))
    _assert_refused(result, study, before, "would replace")


def test_a_single_output_never_removes_another_units_record(study, tiny_weights):
    """-o res.failed.csv, then -o res.csv: res.csv's failure record would be the first
    run's run record."""
    first = _run("analyze", str(study / "interview.mp4"), "-o", str(study / "res.failed.csv"),
                 "-w", str(tiny_weights), "--fps", "2")
    assert first.exit_code == 0, first.output
    before = _digests(study)
    result = _run("analyze", str(study / "interview.mp4"), "-o", str(study / "res.csv"),
                  "-w", str(tiny_weights), "--fps", "2")
    _assert_refused(result, study, before, "res.failed.json")
    assert read_run_record(study / "res.failed.json") is not None


def test_an_input_named_like_a_failure_record_is_never_deleted(study, tiny_weights):
    video = study / "z.failed.json"
    shutil.copy(study / "interview.mp4", video)
    before = _digests(study)
    result = _run("analyze", str(video), "-o", str(study / "z.csv"), "-w", str(tiny_weights))
    _assert_refused(result, study, before, "would replace the input")


def test_a_study_never_replaces_a_finished_units_record_with_a_failure_record(
        tmp_path, tiny_weights):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(shared_path("media", "vox_talking.mp4"), inputs / "x.failed.mp4")
    done = _run("analyze", str(inputs / "x.failed.mp4"), "--out-dir", str(out), "-w",
                str(tiny_weights), "--fps", "2")
    assert done.exit_code == 0, done.output
    (inputs / "x.mp4").write_bytes(b"")  # x's failure record would be x.failed.json
    before = _digests(out)
    result = _run("analyze", str(inputs), "--out-dir", str(out), "-w", str(tiny_weights),
                  "--fps", "2")
    _assert_refused(result, out, before, "x.failed.json")


def test_finished_files_are_what_valid_records_claim(study, tmp_path):
    claimed = finished_files(study)
    names = {Path(p).name for p in claimed}
    assert {"aus.csv", "aus.json", "aus.tracks.npz", "aus.failed.json",
            "interview.mp4"} <= names
    # a record naming a path out of its folder is no record: it claims nothing
    (study / "evil.json").write_text(
        '{"tool": "fgnet-video", "finished": true, "outputs": {"table": '
        '{"name": "../outside.csv", "bytes": 1, "sha256": "0"}}}')
    assert not any(Path(p).name == "outside.csv" for p in finished_files(study))
    check_outputs([PlannedUnit(None, [tmp_path / "outside.csv"])])  # not protected
    with pytest.raises(OutputClash, match="would replace a file of the analysis"):
        check_outputs([PlannedUnit(None, [study / "aus.csv"])])
    check_outputs([PlannedUnit(None, [study / "aus.csv"], record=study / "aus.json")])


def test_a_study_into_its_own_input_folder_with_overlays_resumes(tmp_path, tiny_weights):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(shared_path("media", "vox_talking.mp4"), folder / "talk.mp4")
    args = ["analyze", str(folder), "--out-dir", str(folder), "-w", str(tiny_weights), "--fps",
            "2", "--overlay"]
    first = _run(*args)
    assert first.exit_code == 0 and (folder / "talk.overlay.mp4").exists(), first.output
    again = _run(*args)
    assert again.exit_code == 0, again.output
    assert "0 done, 1 skipped, 0 failed" in again.output, again.output


def test_weights_and_evaluate_outputs_go_through_the_guard(study, tiny_weights):
    before = _digests(study)
    init = _run("weights", "init", "--preset", "tiny", "-o", str(study / "aus.csv"))
    _assert_refused(init, study, before, "would replace a file of the analysis")
    imported = _run("weights", "import", str(tiny_weights), "-o", str(tiny_weights))
    assert imported.exit_code == 2 and "would replace the input" in imported.output
    scores = _run("evaluate", "--weights", str(tiny_weights), "--dataset", "bp4d", "--data",
                  str(study), "--json", str(study / "aus.json"))
    _assert_refused(scores, study, before, "would replace a file of the analysis")


def test_preprocess_never_writes_over_its_input_or_an_analysis(study, tmp_path):
    """An image given from the folders preprocess fills would be replaced by its own aligned
    copy; the fixed files (no_face.txt, videos.json) go through the guard too."""
    out = tmp_path / "data"
    images = out / "aligned_images"
    images.mkdir(parents=True)
    shutil.copy(shared_path("reference", "ffhq_align", "celeb-2_aligned.png"),
                images / "face.png")
    before = _digests(images)
    inside = _run("preprocess", str(images / "face.png"), "-o", str(out))
    _assert_refused(inside, images, before, "lies in aligned_images/")
    # no_face.txt as a link to a file elsewhere: writing it would replace that file.
    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("the user's notes\n")
    (out / "no_face.txt").symlink_to(elsewhere)
    source = tmp_path / "face.png"
    shutil.copy(images / "face.png", source)
    linked = _run("preprocess", str(source), "-o", str(out))
    assert linked.exit_code == 2 and "no_face.txt: is a link" in linked.output, linked.output
    assert elsewhere.read_text() == "the user's notes\n"
    assert _digests(images) == before


def test_train_never_replaces_an_earlier_runs_files_or_its_weights(tmp_path, tiny_weights):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(tiny_weights, out / "best.safetensors")
    before = _digests(out)
    args = ["train", "--dataset", "bp4d", "--data", str(tmp_path), "--out", str(out),
            "--no-val", "--device", "cpu"]
    weights = _run(*args, "--weights", str(out / "best.safetensors"))
    _assert_refused(weights, out, before, "would replace the input")
    earlier = _run(*args, "--preset", "tiny")
    _assert_refused(earlier, out, before, "already holds best.safetensors of another run")


def test_an_overlay_outside_the_tables_folder_is_a_refused_plan(tmp_path, tiny_weights):
    """A run record names its files by name, beside it (a record never points elsewhere):
    an overlay in another folder could be neither protected nor found by `status`."""
    shutil.copy(shared_path("media", "vox_talking.mp4"), tmp_path / "v.mp4")
    (tmp_path / "vids").mkdir()
    result = _run("analyze", str(tmp_path / "v.mp4"), "-o", str(tmp_path / "out" / "a.csv"),
                  "--overlay", str(tmp_path / "vids" / "o.mp4"), "-w", str(tiny_weights))
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"fgnet-video: error: --overlay {tmp_path / 'vids' / 'o.mp4'}: the overlay goes in "
        "the table's folder, where its run record can name it (records name no file "
        f"elsewhere): give --overlay {tmp_path / 'out' / 'o.mp4'}")
    assert not (tmp_path / "out").exists() and not list((tmp_path / "vids").iterdir())


def test_summarize_of_a_parquet_table_never_replaces_its_run_record(tmp_path, tiny_weights):
    """summarize p.parquet -o p.csv writes p.json beside p.csv: the run record of p.parquet."""
    shutil.copy(shared_path("media", "vox_talking.mp4"), tmp_path / "v.mp4")
    made = _run("analyze", str(tmp_path / "v.mp4"), "-o", str(tmp_path / "p.parquet"), "-w",
                str(tiny_weights), "--fps", "2")
    assert made.exit_code == 0, made.output
    before = _digests(tmp_path)
    result = _run("summarize", str(tmp_path / "p.parquet"), "-o", str(tmp_path / "p.csv"))
    _assert_refused(result, tmp_path, before, "p.json: would replace a file of the analysis")


def test_the_library_call_is_guarded_as_the_command_is(tmp_path, tiny_weights):
    """analyze_video(path, output, overlay=...) plans and checks its outputs like
    `analyze -o`: an overlay onto the video it reads is refused, nothing written."""
    from fgnet_video.analysis.recording import analyze_video

    video = tmp_path / "v.mp4"
    shutil.copy(shared_path("media", "vox_talking.mp4"), video)
    before = _digests(tmp_path)
    with pytest.raises(OutputClash, match="would replace the input"):
        analyze_video(video, tmp_path / "a.csv", overlay=video, weights=str(tiny_weights))
    assert _digests(tmp_path) == before
