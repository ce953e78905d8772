"""Cost of the auxiliary tasks: one training step without them, with RoI inpainting, with
single-image flow, and with both (one labeled + one unlabeled batch per step).

    python benchmarks/aux_step.py                       # tiny preset, CPU, batch 16
    python benchmarks/aux_step.py --preset full --device cuda --batch-size 8

The supervised-only step (`training_step`) is the baseline measured in the same command;
each line prints ms/step and the ratio to it. The four steps are timed in interleaved rounds
(median per configuration) so that load from other processes affects them alike. Synthetic
faces are used (the step's cost does not depend on the pixels). The flow targets are
computed by the data loader workers, not in the step: their cost per frame pair (OpenCV DIS
on 256-px crops) is printed separately.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from train_step import time_call  # the sibling benchmark script (benchmarks/ is on sys.path)

from fgnet_video.inference.precision import autocast_dtype
from fgnet_video.model.config import preset
from fgnet_video.model.fgnet import FGNet
from fgnet_video.train.auxiliary import AuxiliaryModel, AuxSettings, auxiliary_step
from fgnet_video.train.distributed import DistContext, pick_device
from fgnet_video.train.flow import FlowHead, flow_target
from fgnet_video.train.loop import make_optimizer, training_step
from fgnet_video.train.model_init import freeze_unreached
from fgnet_video.train.options import TrainOptions
from fgnet_video.train.targets import trainable_aus
from fgnet_video.train.unlabeled import UnlabeledBatch


def _interleaved(steps: dict, rounds: int, device: torch.device) -> dict[str, float]:
    """Median ms of each step function, timed in rounds of one call each, so that a slow
    period of a shared machine hits every configuration alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(time_call(fn, device))
    return {name: float(np.median(values)) for name, values in times.items()}


def _landmarks(batch: int, device: torch.device) -> torch.Tensor:
    """Plausible 256-px landmarks: a jittered grid inside the face area."""
    base = torch.stack(torch.meshgrid(torch.linspace(70, 186, 17), torch.linspace(80, 200, 4),
                                      indexing="xy"), -1).reshape(-1, 2)[:68]
    return (base + torch.randn(batch, 68, 2) * 3).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--aux-batch", type=int, default=None, help="[--batch-size]")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device, DistContext())
    amp_dtype = autocast_dtype(args.precision, device)
    config = preset(args.preset)
    torch.manual_seed(0)
    base = FGNet(config)
    aus = trainable_aus("bp4d")
    b, u, s = args.batch_size, args.aux_batch or args.batch_size, config.image_size
    images = torch.rand(b, 3, s, s, device=device) * 2 - 1
    landmarks = _landmarks(b, device)
    labels = torch.randint(0, 2, (b, len(aus)), device=device).float()
    hm = config.heatmap_size
    unlabeled = UnlabeledBatch(torch.rand(u, 3, s, s, device=device) * 2 - 1,
                               _landmarks(u, device), torch.randn(u, 2, hm, hm, device=device),
                               [])
    options = TrainOptions("bp4d", "", "", preset=args.preset)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    common = {"heatmap_size": hm, "sigma": 20.0, "grad_clip": 0.1, "amp_dtype": amp_dtype}

    def make_step(tasks: tuple[str, ...]):
        model = copy.deepcopy(base).to(device).train()
        params = freeze_unreached(model, rgb="inpaint" in tasks)
        if not tasks:
            optimizer = make_optimizer(params, options, device)
            return lambda: training_step(model, optimizer, scaler, images, landmarks, labels,
                                         aus, **common)
        head = FlowHead(config.head_width).to(device) if "flow" in tasks else None
        params += list(head.parameters()) if head is not None else []
        optimizer = make_optimizer(params, options, device)
        net = AuxiliaryModel(model, head).train()
        settings = AuxSettings(tasks, 1.0, 0.1, 3, 40.0, seed=0)
        rng = np.random.default_rng(0)
        return lambda: auxiliary_step(net, optimizer, scaler, images, landmarks, labels,
                                      unlabeled, aus, settings, rng, **common)

    runs = {"supervised only (baseline)": (), "+ inpaint": ("inpaint",), "+ flow": ("flow",),
            "+ inpaint + flow": ("inpaint", "flow")}
    steps = {name: make_step(tasks) for name, tasks in runs.items()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    timings = _interleaved(steps, args.steps, device)

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    shifted = np.roll(crop, 2, axis=1)
    flow_target(crop, shifted, hm)
    flow_ms = _interleaved({"flow": lambda: flow_target(crop, shifted, hm)}, 20,
                           torch.device("cpu"))["flow"]

    precision = "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    print(f"preset {args.preset}, labeled batch {b} + unlabeled batch {u} on {device}"
          f" ({precision}, {torch.get_num_threads()} threads), median of {args.steps} steps")
    baseline = timings["supervised only (baseline)"]
    for name, ms in timings.items():
        print(f"{name:28s} {ms:9.1f} ms/step   {ms / baseline:5.2f}x")
    print(f"flow target per frame pair (data loader, DIS on 256 px): {flow_ms:.1f} ms"
          f" ({flow_ms * u:.0f} ms of loader time per unlabeled batch)")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
