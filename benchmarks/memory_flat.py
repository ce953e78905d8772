"""Peak memory of `analyze` does not grow with the recording's length.

    python benchmarks/memory_flat.py                       # 1 and 30 minutes of 720p, --fps 5
    python benchmarks/memory_flat.py --minutes 1,10 --fps 0  # every frame

Makes 1280x720 H.264 clips of the given lengths from the sample video (looped forward and
backward, 25 fps, x264 ultrafast), runs `fgnet-video analyze` on each in its own process
(random tiny weights, CSV table and sidecar, `--fps` sampling; 0 = every frame), and prints
each run's peak resident memory (the child's ru_maxrss) and wall time, and the ratio of each
peak to the shortest clip's. Every queue between the stages is bounded and the table is
written as rows come, so the ratio should stay near 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_clip(path: Path, seconds: float) -> Path:
    import av
    import cv2

    from fgnet_video.media.video import read_frames

    images = [cv2.resize(f.image, (1280, 720), interpolation=cv2.INTER_AREA)
              for f in read_frames(REPO / "sample_videos" / "astronaut.mp4")]
    cycle = images + images[-2:0:-1]
    frames = [av.VideoFrame.from_ndarray(image, format="rgb24") for image in cycle]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(int(seconds * 25)):
            out.mux(stream.encode(frames[i % len(frames)]))
        out.mux(stream.encode())
    return path


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """(peak RSS of the child in MiB, wall seconds), the child alone: a fresh process whose
    own children are waited for."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
             "time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", probe, *command], check=True,
                          capture_output=True, text=True, cwd=REPO)
    kib, seconds = done.stdout.split()
    return int(kib) / 1024, float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,30")
    parser.add_argument("--fps", type=float, default=5.0, help="sampling (0: every frame)")
    parser.add_argument("--face-workers", default="1", help="as analyze's option (the peak "
                        "is the analyze process's; each detection worker is its own process)")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="memory_flat_"))
    weights = folder / "tiny.safetensors"
    subprocess.run([sys.executable, "-m", "fgnet_video", "weights", "init", "--preset", "tiny",
                    "-o", str(weights)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    print(f"machine: {platform.processor() or 'cpu'}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; peak RSS = ru_maxrss of the analyze process; "
          f"--face-workers {args.face_workers}")
    print("\n| clip | frames analysed | peak RSS (MiB) | vs shortest | wall s |")
    print("|---|---|---|---|---|")
    first = None
    for minutes in (float(m) for m in args.minutes.split(",")):
        clip = make_clip(folder / f"{minutes:g}min.mp4", minutes * 60)
        sampling = ["--fps", f"{args.fps:g}"] if args.fps else []
        peak, seconds = peak_rss_mib([sys.executable, "-m", "fgnet_video", "analyze", str(clip),
                                      "-o", str(folder / f"{minutes:g}min.csv"), "-w",
                                      str(weights), "--face-workers", args.face_workers,
                                      *sampling])
        first = first or peak
        analysed = int(minutes * 60 * (args.fps or 25))
        print(f"| {minutes:g} min 720p | {analysed} | {peak:.0f} | {peak / first:.3f}x | "
              f"{seconds:.0f} |", flush=True)
        clip.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
