"""The library is what the CLI runs: one set of defaults, one table, one way to report."""

from __future__ import annotations

import threading
import warnings

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.analysis.recording import analyze_video
from fgnet_video.analysis.tables import au_table
from fgnet_video.cli import main
from fgnet_video.cli.analyze import analyze
from fgnet_video.errors import UserError, warnings_as_lines
from fgnet_video.options import AnalyzeOptions, FaceSettings, ModelOptions
from fgnet_video.threads import background

from .conftest import shared_path

PATH_PARAMETERS = {"inputs", "output", "out_dir", "overlay_to"}


def test_cli_and_python_api_give_identical_tables(tiny_weights, tmp_path):
    video = shared_path("media", "vox_talking.mp4")
    cli_csv = tmp_path / "cli.csv"
    result = CliRunner().invoke(main, ["analyze", str(video), "-w", str(tiny_weights),
                                       "-o", str(cli_csv)])
    assert result.exit_code == 0, result.output
    library = analyze_video(video, weights=str(tiny_weights))
    written = analyze_video(video, tmp_path / "api.csv", weights=str(tiny_weights))
    assert (tmp_path / "api.csv").read_bytes() == cli_csv.read_bytes()
    pd.testing.assert_frame_equal(written, library)
    from_cli = pd.read_csv(cli_csv, dtype={"person": "string"})  # empty: no type of its own
    assert from_cli.columns.tolist() == library.columns.tolist()
    assert len(from_cli) == len(library) == 118
    pd.testing.assert_frame_equal(from_cli, library, check_dtype=False, atol=1e-6)
    sidecar = (tmp_path / "api.json").read_text()
    assert '"min_face_size": 40.0' in sidecar and '"batch_size": 16' in sidecar


def test_every_analyze_option_defaults_to_the_options_dataclass():
    defaults = AnalyzeOptions()
    for param in analyze.params:
        if param.name in PATH_PARAMETERS:
            continue
        assert param.default is None, f"--{param.name} has its own default {param.default!r}"
        # every option is a field of the options (unknown names raise a UserError)
        AnalyzeOptions.from_kwargs(**{param.name: getattr(defaults.model, param.name, None)
                                      or _field_default(defaults, param.name)})
    assert FaceSettings().min_face_size == 40.0 and ModelOptions().batch_size == "auto"
    helps = {p.name: p.help for p in analyze.params if isinstance(p, click.Option)}
    assert "[default: 40.0]" in helps["min_face_size"]
    assert "[default: auto]" in helps["batch_size"]


def _field_default(options: AnalyzeOptions, name: str):
    for part in (options, options.sampling, options.face, options.model):
        if hasattr(part, name):
            return getattr(part, name)
    raise AssertionError(name)


def test_options_refuse_unknown_names_and_bad_values():
    with pytest.raises(UserError, match="unknown option 'min_face'"):
        AnalyzeOptions.from_kwargs(min_face=50)
    with pytest.raises(UserError, match="--end .* must be after --start"):
        AnalyzeOptions.from_kwargs(start=3.0, end=2.0)
    with pytest.raises(UserError, match="--batch-size"):
        AnalyzeOptions.from_kwargs(batch_size="many")
    with pytest.raises(UserError, match="unknown format"):
        AnalyzeOptions.from_kwargs(table_format="xlsx")


def test_option_errors_come_from_the_library_in_one_line(tiny_weights, tmp_path):
    video = str(shared_path("media", "vox_talking.mp4"))
    cases = [
        ([video, "--start", "3", "--end", "2", "-o", "x.csv"], "--end (2.0) must be after"),
        ([video], "give either -o FILE (one input) or --out-dir DIR"),
        ([video, video.replace("vox_talking", "sample_disfa").replace(".mp4", ".avi"),
          "-o", "x.csv"], "-o takes one input, got 2"),
        ([video, "--out-dir", str(tmp_path), "--overlay", "o.mp4"], "without a file name"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["analyze", *args, "-w", str(tiny_weights)])
        assert result.exit_code != 0
        assert message in result.output and "Traceback" not in result.output


def test_au_table_marks_missing_faces_as_empty_decisions():
    table = au_table(np.array([[0.5, -0.2], [np.nan, np.nan]]), (1, 2))
    assert table.columns.tolist() == ["AU01_score", "AU01", "AU02_score", "AU02"]
    assert str(table["AU01"].dtype) == "Int64"
    assert table["AU01"].tolist()[0] == 1 and table["AU02"].tolist()[0] == 0
    assert table["AU01"].isna().tolist() == [False, True]
    assert np.isnan(table["AU02_score"][1])


def test_warnings_become_one_line_once(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings_as_lines()
        for _ in range(3):
            warnings.warn("fgnet-video: compiled kernels unavailable (x)\nlong details",
                          RuntimeWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == ["fgnet-video: warning: compiled kernels unavailable (x)",
                                "fgnet-video: warning: something else"]


def test_background_forwards_items_then_the_error():
    def items():
        yield 1
        yield 2
        raise ValueError("broken")

    seen = []
    with pytest.raises(ValueError, match="broken"):
        for item in background(items(), maxsize=1, name="test-stage"):
            seen.append(item)
    assert seen == [1, 2]


def test_background_stops_and_closes_its_source_when_the_consumer_stops():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stage = background(endless(), maxsize=2, name="test-stage")
    assert [next(stage) for _ in range(3)] == [0, 1, 2]
    stage.close()
    assert closed.is_set()  # closed in the producer thread, which was joined
    assert not [t for t in threading.enumerate() if t.name.startswith("test-")]

    # chained stages: each owner closes its own (the pipeline closes the face stage, then
    # the reader's `with` block closes the decode stage)
    closed.clear()
    upstream = background(endless(), maxsize=2, name="test-upstream")
    downstream = background((n * 10 for n in upstream), maxsize=2, name="test-downstream")
    assert [next(downstream) for _ in range(3)] == [0, 10, 20]
    downstream.close()
    upstream.close()
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("test-")]


def test_missing_shared_fixtures_fail_in_ci_and_skip_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="absent"):
        shared_path("media", "no_such_clip.mp4")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="absent"):
        shared_path("media", "no_such_clip.mp4")
