"""Saved face tracks: written beside the outputs, replayed with identical rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from fgnet_video.analysis.recording import analyze_video
from fgnet_video.cli import main

from .conftest import shared_path


def run(*args: str):
    return CliRunner().invoke(main, ["analyze", *args])


def test_saved_tracks_replay_to_identical_rows(tiny_weights, tmp_path):
    video = shared_path("media", "sample_disfa.avi")  # two faces, one cut by the edge
    first = tmp_path / "first.csv"
    result = run(str(video), "-w", str(tiny_weights), "-o", str(first), "--save-tracks")
    assert result.exit_code == 0, result.output
    tracks = tmp_path / "first.tracks.npz"
    sidecar = json.loads(first.with_suffix(".json").read_text())
    assert sidecar["outputs"]["tracks"]["name"] == "first.tracks.npz"
    with np.load(tracks) as data:
        assert data["frames"].tolist() == list(range(20))
        assert data["landmarks"].shape[1:] == (68, 2)
        assert len(data["face_id"]) == len(pd.read_csv(first).query("success == 1"))

    replay = tmp_path / "replay.csv"
    result = run(str(video), "-w", str(tiny_weights), "-o", str(replay), "--tracks",
                 str(tracks))
    assert result.exit_code == 0, result.output
    assert replay.read_bytes() == first.read_bytes()
    assert analyze_video(video, weights=str(tiny_weights), tracks=str(tracks)).equals(
        analyze_video(video, weights=str(tiny_weights)))


def test_a_study_folder_of_tracks_serves_another_model(tiny_weights, tmp_path):
    video = shared_path("media", "vox_talking.mp4")
    saved = tmp_path / "saved"
    assert run(str(video), "--out-dir", str(saved), "-w", str(tiny_weights), "--end", "1",
               "--save-tracks").exit_code == 0
    again = tmp_path / "again"
    result = run(str(video), "--out-dir", str(again), "-w", str(tiny_weights), "--end", "1",
                 "--tracks", str(saved))
    assert result.exit_code == 0, result.output
    assert (again / "vox_talking.csv").read_bytes() == (saved / "vox_talking.csv").read_bytes()


def test_tracks_of_another_selection_or_recording_are_refused(tiny_weights, tmp_path):
    vox = shared_path("media", "vox_talking.mp4")
    assert run(str(vox), "-o", str(tmp_path / "v.csv"), "-w", str(tiny_weights), "--end", "1",
               "--save-tracks").exit_code == 0
    tracks = str(tmp_path / "v.tracks.npz")
    other = run(str(vox), "-o", str(tmp_path / "o.csv"), "-w", str(tiny_weights), "--end", "2",
                "--tracks", tracks)
    assert other.exit_code == 1 and "give the same --fps/--start/--end" in other.output
    disfa = run(str(shared_path("media", "sample_disfa.avi")), "-o", str(tmp_path / "d.csv"),
                "-w", str(tiny_weights), "--tracks", tracks)
    assert disfa.exit_code == 1 and "saved from" in disfa.output
    clash = run(str(vox), "-o", str(tmp_path / "v.csv"), "-w", str(tiny_weights), "--end", "1",
                "--tracks", tracks, "--save-tracks", "--overwrite")
    assert clash.exit_code == 2 and "would replace the input" in clash.output
    for out in ("o.csv", "d.csv"):
        assert not (tmp_path / out).exists()


def test_missing_or_misplaced_tracks_are_one_line(tiny_weights, tmp_path):
    vox = str(shared_path("media", "vox_talking.mp4"))
    cases = [(["-o", str(tmp_path / "a.csv"), "--tracks", str(tmp_path / "no.npz")],
              "no such file"),
             (["--out-dir", str(tmp_path / "o"), "--tracks", str(tmp_path / "none")],
              "no such folder"),
             (["-o", str(tmp_path / "a.csv"), "--tracks", str(tmp_path)],
              "give the .tracks.npz file of the input with -o")]
    for args, message in cases:
        result = run(vox, "-w", str(tiny_weights), *args)
        assert result.exit_code == 1 and message in result.output, result.output
