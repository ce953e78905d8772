"""The prepared GPU check: one command that answers every open question about the GPU path
and writes one report (`gpu_check.md` + `gpu_check.json`) under `--out`.

    # on a CPU machine with dlib and av, once: clips and their saved face tracks (small)
    python benchmarks/gpu_check.py --prepare gpu_inputs/
    # on the GPU machine (nothing downloaded; bring gpu_inputs/ and, without PyAV, its wheel)
    bash benchmarks/gpu_check.sh --inputs gpu_inputs/ --out gpu_report/
    # anywhere, in seconds (CI): the same steps on the CPU with the tiny preset
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_dry/

Steps, each timed, each with its output kept (a failing step never stops the others):
doctor; the kernel build (`doctor --build`, seconds); the CUDA tests (`pytest -m cuda`);
parity of the full model in fp32 on the device with the release's reference outputs
(../shared/reference) and the bf16/fp16 accuracy guard on real aligned faces; model speed
(benchmarks/model_speed.py: the release-equivalent mode against each switch, batches 16 and
64); the face stage's networks (benchmarks/face_nets_speed.py: dlib's MMOD detector and
face-descriptor ResNet in PyTorch, 720p frames/s with and without the small-face pass and
descriptors/s at batches 16 and 64, fp32/bf16/fp16 against fp32); analyze end to end on a
720p single-face clip and a two-face clip with the full model, replaying face tracks saved
on the CPU machine (`analyze --tracks`: the GPU machine needs no dlib), then both clips
twice as a study, `--jobs 1` against `--jobs 4` on one model
(benchmarks/study_throughput.py); a full-size training step with and without the auxiliary
tasks; last, torch.compile's inference speed (its compilation is the slowest and least
certain step). --dry-run runs every step on the CPU with the tiny preset and tiny sizes (its
torch.compile step with the eager backend: the plumbing, in seconds), so the script cannot
rot unseen.

Each step runs in its own process with a timeout; `--budget SECONDS` bounds the whole check
(a step gets at most what is left, and one that would start with under MIN_STEP_S left is
recorded as skipped), and the report is rewritten after every step, so a check cut short by
its machine still leaves every finished step's result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = ("single_720p", "two_faces_720p")
STEP_TIMEOUT_S = {"kernel build": 300, "cuda tests": 240, "model speed": 240,
                  "torch.compile speed": 300}
DEFAULT_TIMEOUT_S = 180
MIN_STEP_S = 15


class Budget:
    """The seconds left to the whole check (unbounded when `seconds` is None)."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def timeout(self, wanted: float) -> float:
        if self.deadline is None:
            return wanted
        return min(wanted, self.deadline - time.monotonic())


def run_step(name: str, command: list[str], timeout: float) -> dict:
    """Run `command`; its status ('ok', 'failed', 'timeout', 'skipped'), seconds and output
    tail. A step with under MIN_STEP_S seconds to run is skipped."""
    if timeout < MIN_STEP_S:
        print(f"[{0:7.1f} s] {name}: skipped (out of budget)", flush=True)
        return {"name": name, "command": " ".join(command), "status": "skipped (out of budget)",
                "seconds": 0.0, "output": ""}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        status, output = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
    seconds = round(time.perf_counter() - started, 1)
    print(f"[{seconds:7.1f} s] {name}: {status}", flush=True)
    return {"name": name, "command": " ".join(command), "status": status, "seconds": seconds,
            "output": output[-6000:] if isinstance(output, str) else str(output)[-6000:]}


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


# -- preparing the clips and their tracks (CPU machine) ------------------------------------------

def prepare(folder: Path, frames: int) -> None:
    """Make a 720p single-face clip and a 720p two-face clip from the sample video, and save
    their face tracks (analyze --save-tracks with random tiny weights: only the tracks are
    kept)."""
    import av
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    source = REPO / "sample_videos" / "astronaut.mp4"
    with av.open(str(source)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # forward, then backward, and so on, until `frames` (the motion stays continuous)
    cycle = images + images[-2:0:-1]
    images = [cycle[i % len(cycle)] for i in range(frames)]
    single = [cv2.resize(im, (1280, 720), interpolation=cv2.INTER_CUBIC) for im in images]
    pair = []
    for image in images:  # two half-size copies side by side (one mirrored), aspect kept
        half = cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((720, 1280, 3), np.uint8)
        canvas[180:540, :640], canvas[180:540, 640:] = half, half[:, ::-1]
        pair.append(canvas)
    for name, clip in zip(CLIPS, (single, pair), strict=True):
        path = folder / f"{name}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
            for image in clip:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(stream.encode())
    weights = folder / "tiny.safetensors"
    subprocess.run(python("-m", "fgnet_video", "weights", "init", "--preset", "tiny", "-o",
                          str(weights)), check=True, cwd=REPO)
    subprocess.run(python("-m", "fgnet_video", "analyze", *(str(folder / f"{c}.mp4")
                                                           for c in CLIPS),
                          "--out-dir", str(folder / "tracks"), "-w", str(weights),
                          "--save-tracks", "--overwrite"), check=True, cwd=REPO)
    from face_nets_speed import make_inputs  # benchmarks/ is this script's folder

    make_inputs(folder)  # real multi-face frames, chips and dlib's two network files


# -- steps that run in this process ----------------------------------------------------------------

def parity_and_precision(device: str, dry_run: bool, work: Path) -> dict:
    """fp32 on `device` against the release's outputs (full model, reference checkpoints),
    then each reduced precision against fp32 on real aligned faces (the accuracy guard)."""
    import numpy as np
    import torch
    from PIL import Image

    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.fp32 import exact_fp32
    from fgnet_video.inference.agreement import compare_predictions
    from fgnet_video.inference.engine import InferenceEngine, Prediction
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import load_model
    from fgnet_video.weights.loaded import LoadedModel

    result: dict = {}
    if dry_run:
        # random tiny weights score every AU near 0, where no decision is confident and the
        # guard has nothing to compare: the last interpreter layer is scaled up for that
        model = random_model(TINY, seed=0)
        with torch.no_grad():
            for parameter in model.interpreter.layer(TINY.n_levels - 1)[-1].parameters():
                parameter.mul_(200)
        loaded = LoadedModel(model, "bp4d", BP4D_AUS, {})
        images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    else:
        checkpoints = work / "reference_checkpoints"
        subprocess.run(python(str(SHARED / "reference" / "make_reference_checkpoints.py"),
                              str(checkpoints), "--seed", "0"), check=True)
        loaded = load_model(checkpoints / "model.pth", psp=checkpoints / "encoder.pt",
                            dataset="bp4d")
        expected = np.load(SHARED / "reference" / "fgnet_forward" / "expected_seed0.npz")
        model = loaded.model.to(device).eval()
        release_inputs = torch.from_numpy(expected["images"]).to(device)
        # fp32 as the engine runs it (exact_fp32), then as the GPU would by default (TF32
        # convolutions), for the record of what exact_fp32 buys
        for name, context in (("release_fp32", exact_fp32(torch.device(device))),
                              ("release_tf32_default", contextlib.nullcontext())):
            with context, torch.inference_mode():
                trace = model.trace(release_inputs)
            heatmaps = trace.heatmaps[:, :12].clamp(-1, 1).float().cpu().numpy()
            diff = np.abs(heatmaps - expected["heatmaps"])
            result[name] = {"max_heatmap_diff": float(diff.max()),
                            "mean_heatmap_diff": float(diff.mean()),
                            "within_tolerance": bool(diff.max() <= 1e-3
                                                     and diff.mean() <= 1e-4)}
        faces = sorted((SHARED / "reference" / "ffhq_align").glob("*_aligned.png"))
        faces += sorted((SHARED / "reference" / "fgnet_forward").glob("*.jpg"))
        images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((256, 256)))
                           for f in faces])
    engines = {p: InferenceEngine(loaded, device=device, precision=p, batch_size=4)
               for p in (["fp32", "bf16"] + (["fp16"] if device.startswith("cuda") else []))}
    predictions: dict[str, Prediction] = {
        p: engine.predict(images, keep_heatmaps=True) for p, engine in engines.items()}
    for precision in list(predictions)[1:]:
        agreement = compare_predictions(predictions["fp32"], predictions[precision])
        result[precision] = {"decisions": agreement.decisions, "pairs": agreement.pairs,
                             "max_heatmap_diff": agreement.max_heatmap_diff,
                             "acceptable": agreement.acceptable}
    return result


# -- the check -------------------------------------------------------------------------------------

def steps(args: argparse.Namespace, work: Path, report) -> list[dict]:
    """Every step, most important first; `report(results)` after each one."""
    dry = args.dry_run
    device = "cpu" if dry else args.device
    preset = "tiny" if dry else "full"
    budget = Budget(args.budget)
    results: list[dict] = []

    def step(name: str, command: list[str], timeout: float = DEFAULT_TIMEOUT_S,
             figures=None) -> dict:
        """Run one step; `figures()` (a dict or None) is read after it, before the report."""
        if args.only and not any(name.startswith(wanted) for wanted in args.only):
            return {}
        result = run_step(name, command, budget.timeout(timeout))
        if figures is not None and (found := figures()):
            result["figures"] = found
        results.append(result)
        report(results)
        return result

    step("doctor", python("-m", "fgnet_video", "doctor"), 60)
    if not dry:
        step("kernel build", python("-m", "fgnet_video", "doctor", "--build"),
             STEP_TIMEOUT_S["kernel build"])
    parity = python(str(Path(__file__).resolve()), "--parity", device, "--work", str(work),
                    *(["--dry-run"] if dry else []))
    step("parity and precision", parity)
    step("cuda tests", python("-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                              "tests"), STEP_TIMEOUT_S["cuda tests"])
    speed = ["--device", device, "--preset", preset]
    speed += ["--batches", "2", "--repeats", "1"] if dry else ["--batches", "16,64"]
    from model_speed import MODES  # benchmarks/ is this script's folder

    numbers = {str(i): bool(m.switches.get("compile")) for i, m in enumerate(MODES, 1)}
    step("model speed", python("benchmarks/model_speed.py", *speed, "--modes",
                               ",".join(n for n, compiled in numbers.items() if not compiled)),
         STEP_TIMEOUT_S["model speed"])
    faces = ["--batches", "2", "--dtypes", "fp32,tf32,bf16", "--repeats", "1", "--scale", "0.25"] \
        if dry else []
    step("face networks speed", python("benchmarks/face_nets_speed.py", "--device", device,
                                       "--inputs", str(face_inputs(args, work)), *faces))
    end_to_end(args, device, work, step)
    for name, script in (("training step", "train_step.py"),
                         ("training step with auxiliary tasks", "aux_step.py")):
        sizes = ["--batch-size", "2", "--steps", "1", "--warmup", "0"] if dry else \
            ["--batch-size", "8", "--steps", "3"]
        step(name, python(f"benchmarks/{script}", "--preset", preset, "--device", device,
                          *sizes))
    step("torch.compile speed", python("benchmarks/model_speed.py", *speed, "--modes",
                                       ",".join(n for n, compiled in numbers.items() if compiled),
                                       "--accuracy-faces", "0",
                                       *(["--compile", "--compile-backend", "eager"] if dry
                                         else [])),
         STEP_TIMEOUT_S["torch.compile speed"])
    return results


def face_inputs(args: argparse.Namespace, work: Path) -> Path:
    """The prepared inputs folder (made here for a dry run without --inputs)."""
    inputs = Path(args.inputs) if args.inputs else work / "inputs"
    if args.dry_run and not args.inputs and not (inputs / "face_frames.npz").is_file():
        prepare(inputs, frames=6)
    return inputs


def end_to_end(args: argparse.Namespace, device: str, work: Path, step) -> None:
    """analyze of each prepared clip on the device, replaying its saved tracks."""
    inputs = face_inputs(args, work)
    weights = inputs / "tiny.safetensors" if args.dry_run else \
        work / "reference_checkpoints" / "model.pth"
    model = ["-w", str(weights)] if args.dry_run else \
        ["-w", str(weights), "--psp", str(work / "reference_checkpoints" / "encoder.pt")]
    for clip in CLIPS:
        out = work / "analyze" / clip
        step(f"analyze {clip}", python(
            "-m", "fgnet_video", "analyze", str(inputs / f"{clip}.mp4"), "-o",
            str(out / f"{clip}.csv"), "--tracks", str(inputs / "tracks" / f"{clip}.tracks.npz"),
            "--device", device, "--overwrite", *model),
            figures=lambda sidecar=out / f"{clip}.json": sidecar_figures(sidecar))
    step("analyze study, one model", python(
        "benchmarks/study_throughput.py", *(str(inputs / f"{clip}.mp4") for clip in CLIPS),
        "--copies", "2", "--tracks", str(inputs / "tracks"), "--device", device,
        "--jobs", "1,2" if args.dry_run else "1,4", *model))


def sidecar_figures(sidecar: Path) -> dict | None:
    """frames/s, faces/s and stage seconds of an analyze run, from its sidecar."""
    if not sidecar.is_file():
        return None
    stats = json.loads(sidecar.read_text())["stats"]
    seconds = stats["wall_seconds"] or 1e-9
    return {"frames_per_s": round(stats["frames"] / seconds, 1),
            "faces_per_s": round(stats["faces"] / seconds, 1), "stages_s": stats["stages"]}


def _commit() -> str:
    """The checked-out commit (with '+changes' when the tree differs from it), or 'unknown'
    where there is no git repository (a copied working tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no")
                         else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_report(out: Path, results: list[dict], args: argparse.Namespace) -> None:
    import torch

    device = "cpu (dry run)" if args.dry_run or not torch.cuda.is_available() else \
        torch.cuda.get_device_name(0)
    header = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
              "budget_s": args.budget,
              "python": platform.python_version(), "cores": os.cpu_count(),
              "dry_run": args.dry_run, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "commit": _commit()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({"machine": header, "steps": results},
                                                   indent=2) + "\n")
    lines = ["# GPU check", "", " · ".join(f"{k}: {v}" for k, v in header.items()), "",
             "| step | status | seconds | figures |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['status']} | {r['seconds']} | "
                     f"{json.dumps(r.get('figures', ''))} |")
    for r in results:
        lines += ["", f"## {r['name']}", "", f"`{r['command']}`", "", "```",
                  r["output"].strip()[-3000:], "```"]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for gpu_check.md and gpu_check.json")
    parser.add_argument("--inputs", help="folder made by --prepare (clips + tracks)")
    parser.add_argument("--prepare", metavar="DIR", help="make the clips and tracks, and stop")
    parser.add_argument("--frames", type=int, default=150, help="frames per prepared clip")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true",
                        help="every step on the CPU with the tiny preset (seconds)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="bound on the whole check (default: none)")
    parser.add_argument("--only", type=lambda text: [w.strip() for w in text.split(",")],
                        default=None, metavar="NAMES",
                        help="run only the steps whose names start with one of these "
                        "(comma-separated, e.g. 'parity,cuda tests')")
    parser.add_argument("--parity", metavar="DEVICE", help=argparse.SUPPRESS)
    parser.add_argument("--work", help="folder for the check's own files (reference "
                        "checkpoints, 2.5 GB at full size; default: OUT/work)")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare), args.frames)
        return 0
    if args.parity:  # the parity step's own process: fails when a figure is out of bounds
        result = parity_and_precision(args.parity, args.dry_run, Path(args.work))
        print(json.dumps(result, indent=2))
        good = result.get("release_fp32", {}).get("within_tolerance", True) and all(
            r["acceptable"] for r in result.values() if "acceptable" in r)
        return 0 if good else 1
    if not args.out:
        parser.error("--out is required (or --prepare DIR)")
    out = Path(args.out)
    work = Path(args.work) if args.work else out / "work"
    results = steps(args, work, lambda done: write_report(out, done, args))
    print(f"report: {out / 'gpu_check.md'}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
