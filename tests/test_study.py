"""Studies on many machines: shards cover every input exactly once, `status` says where a
study stands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.study.plan import in_shard, parse_shard

from .conftest import REPO, shared_path


def test_shards_partition_the_names_and_are_stable():
    names = [f"site{k % 3}/subject{k:03d}" for k in range(300)]
    for n in (1, 2, 7):
        owners = [[k for k in range(1, n + 1) if in_shard(name, (k, n))] for name in names]
        assert all(len(o) == 1 for o in owners)
        if n == 7:  # every shard gets work, none gets all of it
            sizes = [sum(o == [k] for o in owners) for k in range(1, 8)]
            assert min(sizes) > 20
    before = {name: in_shard(name, (2, 7)) for name in names}
    assert all(in_shard(name, (2, 7)) == kept for name, kept in before.items())
    assert parse_shard("3/10") == (3, 10)
    for bad in ("0/3", "4/3", "3", "a/b"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def study(tmp_path, n: int) -> list[str]:
    data = shared_path("media", "vox_talking.mp4").read_bytes()
    inputs = []
    for k in range(n):
        path = tmp_path / "in" / f"rec{k}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        inputs.append(str(path))
    return inputs


@pytest.mark.slow
def test_concurrent_shards_into_one_folder_cover_every_input_once(tmp_path, tiny_weights):
    inputs = study(tmp_path, 6)
    out = tmp_path / "out"
    shards = [subprocess.Popen(
        [sys.executable, "-m", "fgnet_video", "analyze", *inputs, "--out-dir", str(out),
         "-w", str(tiny_weights), "--end", "0.2", "--shard", f"{k}/2"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    logs = [p.communicate(timeout=300) for p in shards]
    assert all(p.returncode == 0 for p in shards), logs
    done = [line.split()[-1] for _, err in logs for line in err.splitlines()
            if line.startswith("done ")]
    assert sorted(done) == sorted(inputs)  # each input exactly once over both shards
    assert sorted(p.name for p in out.glob("*.json")) == [f"rec{k}.json" for k in range(6)]
    assert not list(out.glob(".*"))
    result = CliRunner().invoke(main, ["status", str(out), *inputs])
    assert result.exit_code == 0 and result.output.startswith("6 done, 0 failed, 0 missing")


def test_status_reports_done_failed_and_missing(tmp_path, tiny_weights):
    inputs = study(tmp_path, 2)
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["analyze", inputs[0], str(broken), "--out-dir", str(out),
                                      "-w", str(tiny_weights), "--end", "0.2"])
    assert first.exit_code == 1  # one input failed
    result = CliRunner().invoke(main, ["status", str(out), *inputs, str(broken)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == "1 done, 1 failed, 1 missing"
    assert lines[1].startswith("  failed   broken: ") and "not a readable video" in lines[1]
    assert lines[2] == "  missing  rec1"
    # without the inputs, what the folder holds
    folder_only = CliRunner().invoke(main, ["status", str(out)])
    assert folder_only.output.startswith("1 done, 1 failed, 0 missing")
    # a later success clears the failure record
    broken.write_bytes((tmp_path / "in" / "rec1.mp4").read_bytes())
    CliRunner().invoke(main, ["analyze", *inputs, str(broken), "--out-dir", str(out), "-w",
                              str(tiny_weights), "--end", "0.2"])
    again = CliRunner().invoke(main, ["status", str(out), *inputs, str(broken)])
    assert again.exit_code == 0 and again.output.strip() == "3 done, 0 failed, 0 missing"
    assert not list(out.glob("*.failed.json"))


def test_a_missing_input_is_a_failure_status_can_tell(tmp_path, tiny_weights):
    out = tmp_path / "out"
    gone = tmp_path / "gone.mp4"
    result = CliRunner().invoke(main, ["analyze", str(gone), "--out-dir", str(out), "-w",
                                       str(tiny_weights)])
    assert result.exit_code == 1 and "no such file" in result.output
    status = CliRunner().invoke(main, ["status", str(out), str(gone)])
    assert status.output.splitlines()[:2] == ["0 done, 1 failed, 0 missing",
                                              f"  failed   gone: {gone}: no such file"]
