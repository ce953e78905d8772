"""How long a `--jobs 2` CNN study takes to stop after SIGTERM, at random moments of its work.

    python benchmarks/sigterm_stop.py [--runs N] [--seed S] [--busy K] [--max-delay SECONDS]

Runs what tests/test_nothing_lost.py's "cnn study" case runs (walk_opera and a copy of it,
`--detector cnn --min-face 20 --jobs 2`, random tiny weights), sends SIGTERM a random
0..max-delay seconds after the first partial output appears, and prints, per run, the delay,
the exit status and the seconds from the signal to the exit; then the slowest. `--busy K`
keeps K busy-looping processes beside it (a loaded machine, where the test once failed:
5.5 s > the README's 5). The delays come from `--seed`, so two versions of the code can be
compared on the same moments.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CROWD = REPO / "benchmarks" / "real_footage" / "walk_opera.mp4"


def _spin() -> None:
    while True:
        pass


def stop_seconds(folder: Path, weights: Path, delay: float) -> tuple[int, float]:
    """(exit status, seconds from SIGTERM to exit) of one study stopped `delay` s in."""
    (folder / "crowds").mkdir(parents=True)
    copy = folder / "crowds" / f"copy0{CROWD.suffix}"
    shutil.copy(CROWD, copy)
    out = folder / "out"
    args = ["analyze", str(CROWD), str(copy), "--out-dir", str(out), "-w", str(weights),
            "--min-face", "20", "--detector", "cnn", "--jobs", "2"]
    with open(folder / "stderr.txt", "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "fgnet_video", *args], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=err)
    since = None
    while since is None or time.monotonic() - since < delay:
        if since is None and any(out.rglob(".*partial-*")):
            since = time.monotonic()
        if process.poll() is not None:
            raise SystemExit(f"the study ended before SIGTERM: {folder / 'stderr.txt'}")
        time.sleep(0.05)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    return process.returncode, time.monotonic() - signalled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--busy", type=int, default=2)
    parser.add_argument("--max-delay", type=float, default=8.0)
    args = parser.parse_args()
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    delays = random.Random(args.seed)
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "tiny.safetensors"
        save_converted(weights, random_model(TINY, seed=0), "bp4d", BP4D_AUS)
        for spinner in spinners:
            spinner.start()
        try:
            slowest = 0.0
            for run in range(args.runs):
                delay = delays.uniform(0.0, args.max_delay)
                code, seconds = stop_seconds(Path(tmp) / f"run{run}", weights, delay)
                slowest = max(slowest, seconds)
                print(f"SIGTERM {delay:.2f} s in: exit {code}, stopped in {seconds:.2f} s",
                      flush=True)
        finally:
            for spinner in spinners:
                spinner.terminate()
    print(f"slowest stop: {slowest:.2f} s over {args.runs} runs, {args.busy} busy processes")


if __name__ == "__main__":
    main()
