"""How close `analyze`'s time-left line comes to the time the run then really took.

    python benchmarks/eta_accuracy.py [--detector hog] [--clips NAME ...] [--fps F]

Each clip (default: the ../shared/media recordings and two real multi-person excerpts of
benchmarks/real_footage) is analysed whole by the CLI in a fresh
process, with random tiny weights (the model is not what is measured; the face stage and
decode are), default options otherwise. The moment each stderr line arrives is recorded: the
time-left line says "about T left"; the real time left is from that line to the process's
exit. Prints, per clip, the predicted and real seconds and their ratio (real / predicted;
1.5x either way is the target; none when under MEANINGFUL_S seconds were left), the
machine's load average with it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIPS = ("vox_talking.mp4", "webcam_lamp.wmv", "sample_disfa.avi", "phone_cut_vfr.mov")
REAL = Path(__file__).resolve().parent / "real_footage"
REAL_CLIPS = ("hamilton_whitehouse.mp4", "walk_opera.mp4")
LINE = re.compile(r"(?:about (\d+(?:\.\d+)?) (s|min|h)|under 1 s) left for")
UNIT = {"s": 1.0, "min": 60.0, "h": 3600.0}
MEANINGFUL_S = 5.0  # a ratio of remaining times shorter than this says nothing


def predicted_seconds(line: str) -> float | None:
    """Seconds that a time-left line promises (None when the line is not one)."""
    found = LINE.search(line)
    if found is None:
        return None
    return 0.5 if found.group(1) is None else float(found.group(1)) * UNIT[found.group(2)]


def timed_run(args: list[str]) -> tuple[list[tuple[float, str]], float, int]:
    """([(arrival time, stderr line)], exit time, exit status) of `fgnet-video ARGS`."""
    process = subprocess.Popen([sys.executable, "-m", "fgnet_video", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [(time.monotonic(), line.rstrip()) for line in process.stderr]
    process.wait()
    return lines, time.monotonic(), process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="hog")
    parser.add_argument("--clips", nargs="+", default=[str(SHARED / "media" / c) for c in CLIPS]
                        + [str(REAL / c) for c in REAL_CLIPS])
    parser.add_argument("--fps", type=float, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); "
          f"detector {args.detector}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "tiny.safetensors"
        save_converted(weights, random_model(TINY, seed=0), "bp4d", BP4D_AUS)
        for k, clip in enumerate(args.clips):
            command = ["analyze", clip, "-o", str(Path(tmp) / f"out{k}.csv"), "-w",
                       str(weights), "--detector", args.detector]
            if args.fps:
                command += ["--fps", str(args.fps)]
            lines, ended, code = timed_run(command)
            said = [(t, predicted_seconds(line)) for t, line in lines
                    if predicted_seconds(line) is not None]
            name = Path(clip).name
            if code != 0:
                print(f"{name}: exit {code}: {lines[-1][1] if lines else ''}")
            elif not said:
                total = ended - lines[0][0] if lines else float("nan")
                print(f"{name}: no time-left line (run of {total:.1f} s after the first line)")
            else:
                at, promised = said[0]
                real = ended - at
                ratio = (f"real/predicted {real / promised:.2f}" if real >= MEANINGFUL_S
                         else f"under {MEANINGFUL_S:g} s left: no ratio")
                print(f"{name}: said {promised:.0f} s left, took {real:.1f} s more: {ratio}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
