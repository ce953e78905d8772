"""Time one FG-Net training step (targets + forward + MSE + backward + clip + AdamW).

    python benchmarks/train_step.py                       # tiny preset, CPU, batch 16
    python benchmarks/train_step.py --preset full --device cuda --precision auto

Prints ms/step of the training step and, as the baseline measured in the same command, of
an inference forward pass (eval mode, no grad) on the same batch, and their ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from fgnet_video.inference.precision import autocast, autocast_dtype
from fgnet_video.model.config import preset
from fgnet_video.model.fgnet import FGNet
from fgnet_video.train.distributed import DistContext, pick_device
from fgnet_video.train.loop import make_optimizer, training_step
from fgnet_video.train.model_init import freeze_unreached
from fgnet_video.train.options import TrainOptions
from fgnet_video.train.targets import trainable_aus


def time_call(fn, device: torch.device) -> float:
    """Milliseconds of one `fn()` call (the device synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000


def _timed(fn, steps: int, device: torch.device) -> float:
    """Median milliseconds of `fn()` over `steps` runs."""
    times = sorted(time_call(fn, device) for _ in range(steps))
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--features", default=None, help="e.g. early,middle ('- Late')")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--dataset", default="bp4d", choices=["bp4d", "disfa"])
    args = parser.parse_args()

    device = pick_device(args.device, DistContext())
    amp_dtype = autocast_dtype(args.precision, device)
    config = preset(args.preset)
    if args.features:
        config = config.with_features(args.features)
    torch.manual_seed(0)
    model = FGNet(config).to(device)
    params = freeze_unreached(model)
    optimizer = make_optimizer(params, TrainOptions("bp4d", "", "", preset=args.preset), device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    aus = trainable_aus(args.dataset)
    b, s = args.batch_size, config.image_size
    images = torch.rand(b, 3, s, s, device=device) * 2 - 1
    landmarks = torch.rand(b, 68, 2, device=device) * 140 + 60
    labels = torch.randint(0, 2, (b, len(aus)), device=device).float()

    def step() -> None:
        model.train()
        training_step(model, optimizer, scaler, images, landmarks, labels, aus,
                      heatmap_size=config.heatmap_size, sigma=20.0, grad_clip=0.1,
                      amp_dtype=amp_dtype)

    @torch.no_grad()
    def forward() -> None:
        model.eval()
        with autocast(device, amp_dtype):
            model(images)

    for _ in range(args.warmup):
        step()
        forward()
    forward_ms = _timed(forward, args.steps, device)
    step_ms = _timed(step, args.steps, device)
    precision = "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    print(f"preset {args.preset} features {','.join(config.features)} batch {b} on {device}"
          f" ({precision}, {torch.get_num_threads()} threads)")
    print(f"inference forward (baseline): {forward_ms:9.1f} ms/batch")
    print(f"training step:                {step_ms:9.1f} ms/step"
          f"  ({b * 1000 / step_ms:.1f} frames/s)")
    print(f"ratio step / forward:         {step_ms / forward_ms:9.2f}x")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
