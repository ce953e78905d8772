"""The FG-Net training loop (the release's recipe by default).

Each iteration: a batch of aligned faces -> raw heatmaps -> loss = MSE(raw[:, :n_aus],
targets), targets from the landmarks and labels (fgnet_video.train.targets.heatmap_targets_torch)
-> AdamW step after clipping the gradient norm. An epoch is a fixed number of iterations;
after each, the validation F1 is computed, `last.safetensors` is written and
`best.safetensors` when the F1 improved. `resume.pt` is written at the end of every epoch,
every `save_every` iterations and when the run stops early (--max-iterations, SIGINT,
SIGTERM); `--resume` continues from it bit for bit (same device and precision).

Under torchrun each process reads its share of every global batch; gradients are averaged
by DistributedDataParallel, metrics are summed over ranks and only rank 0 writes files.

With auxiliary tasks (`aux`, fgnet_video.train.auxiliary) every iteration also reads a batch
of unlabeled frames (an order of its own, from the same seed) and the step minimises the
supervised loss plus the weighted auxiliary losses; each loss is logged. The flow head is
saved as `flow_head.safetensors` at the end of every epoch and with the resume state.

Epochs are counted from 1 wherever people see them: the progress and summary lines and the
`epoch` and `best_epoch` fields of metrics.jsonl ("best F1 ... after epoch 3" and
"best_epoch": 3 name the same epoch). Only the resume state keeps its position from 0.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from fgnet_video.analysis.guard import OutputClash, check_outputs
from fgnet_video.aus import AU_SETS, CUSTOM_DATASET, au_name
from fgnet_video.errors import UserError
from fgnet_video.inference.precision import autocast, autocast_dtype
from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.fgnet import FGNet
from fgnet_video.train.auxiliary import AuxiliaryModel, AuxSettings, auxiliary_step, loss_names
from fgnet_video.train.data import (
    DataIssues,
    FrameDataset,
    LabelTable,
    check_frames,
    collate_frames,
    default_csv,
    read_labels,
)
from fgnet_video.train.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    broadcast_state,
    context_from_env,
    init_process_group,
    pick_device,
    shutdown,
)
from fgnet_video.train.evaluate import ChannelMap, count_predictions
from fgnet_video.train.flow import FlowHead, save_flow_head
from fgnet_video.train.model_init import freeze_unreached, initial_model, set_dropout
from fgnet_video.train.options import RUNTIME_OPTIONS, TrainOptions
from fgnet_video.train.progress import progress_bar
from fgnet_video.train.runlog import (
    LOG_FILE,
    RUN_FILE,
    MetricsLog,
    StopRequest,
    write_run_options,
)
from fgnet_video.train.sampler import EpochBatchSampler
from fgnet_video.train.state import (
    STATE_FILE,
    ResumeState,
    capture_rng,
    load_state,
    restore_rng,
    save_state,
    seed_everything,
)
from fgnet_video.train.step import apply_gradients, heatmap_loss
from fgnet_video.train.targets import trainable_aus
from fgnet_video.train.unlabeled import (
    CACHE_DIR,
    UnlabeledBatch,
    UnlabeledDataset,
    UnlabeledFrames,
    cache_videos,
    collate_unlabeled,
    load_frames,
    split_sources,
)
from fgnet_video.weights.checkpoints import save_converted

BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
FLOW_HEAD_FILE = "flow_head.safetensors"
# Every file a run writes at the top of its folder.
RUN_FOLDER_FILES = (BEST_FILE, LAST_FILE, FLOW_HEAD_FILE, STATE_FILE, RUN_FILE, LOG_FILE)


@dataclass(frozen=True)
class TrainSummary:
    """Where a run ended: `epoch`, the number of finished epochs (so the one in progress is
    epoch + 1), and the next `iteration` of the one in progress, the global step, the best
    validation F1 and the epoch it was reached in (`best_epoch`, counted from 1), the number
    of bad frames skipped."""

    out_dir: Path
    finished: bool
    epoch: int
    iteration: int
    step: int
    best_f1: float | None
    best_epoch: int | None
    skipped: int

    def line(self) -> str:
        """One human line (epochs counted from 1)."""
        best = ""
        if self.best_f1 is not None:
            best = f"; best F1 {self.best_f1:.1f} after epoch {self.best_epoch}"
        if not self.finished:
            return (f"stopped after step {self.step} (epoch {self.epoch + 1}, iteration"
                    f" {self.iteration}){best}; continue with --resume --out {self.out_dir}")
        return f"finished after step {self.step}{best}; checkpoints in {self.out_dir}"


def _counted(epoch: int | None) -> int | None:
    """An epoch's position (from 0, as the loop and its resume state keep it) as people count
    it (from 1)."""
    return None if epoch is None else epoch + 1


def train(options: TrainOptions) -> TrainSummary:
    """Run (or resume) training; returns where it ended."""
    ctx = context_from_env()
    device = pick_device(options.device, ctx)
    init_process_group(ctx, device)
    try:
        return _Trainer(options, ctx, device).run()
    finally:
        shutdown(ctx)


def training_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    landmarks: torch.Tensor,
    labels: torch.Tensor,
    aus: tuple[int, ...],
    *,
    heatmap_size: int,
    sigma: float,
    grad_clip: float,
    amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch already on the device; (loss, gradient norm before
    clipping). loss = mean over (B, n_aus, H, W) of (raw[:, :n_aus] - targets)^2."""
    with autocast(images.device, amp_dtype):
        raw = net(images)
    loss = heatmap_loss(raw, landmarks, labels, aus, heatmap_size=heatmap_size, sigma=sigma)
    grad_norm = apply_gradients(loss, optimizer, scaler, grad_clip)
    return loss.detach(), grad_norm


def make_optimizer(params: list[torch.nn.Parameter], options: TrainOptions,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; the fused kernel on GPU, the multi-tensor one on CPU
    (the same update, far fewer kernel launches than one per parameter)."""
    kernel = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(params, lr=options.lr, betas=(options.beta1, options.beta2),
                             weight_decay=options.weight_decay, **kernel)


def _load_split(options: TrainOptions, split: str, csv: str | None, issues: DataIssues,
                ctx: DistContext, subset: int | None) -> LabelTable:
    data = Path(options.data)
    path = Path(csv) if csv else default_csv(data, options.dataset, options.fold, split)
    table = read_labels(path, options.data, options.dataset, issues, options.positive_threshold)
    if subset is not None:
        table = table.subset(subset, options.seed)
    # Rank 0 computes missing landmarks first; the others then find them cached.
    if ctx.is_main:
        table = check_frames(table, issues, show_progress=options.progress,
                             workers=options.num_workers)
    barrier(ctx)
    if not ctx.is_main:
        table = check_frames(table, issues, show_progress=False)
    return table


def _load_unlabeled(options: TrainOptions, issues: DataIssues,
                    ctx: DistContext) -> UnlabeledFrames:
    """The unlabeled frames of `--unlabeled`; videos are aligned once into the run's cache."""
    videos, roots = split_sources(options.unlabeled)
    if videos:
        cache = options.out_dir / CACHE_DIR
        if ctx.is_main:
            cache_videos(videos, cache, jobs=max(1, options.num_workers),
                         show_progress=options.progress)
        barrier(ctx)
        roots.append(cache)
    gap = options.aux_flow_gap if "flow" in options.aux_tasks else None

    def load(show_progress: bool) -> UnlabeledFrames:
        return load_frames(roots, issues, flow_gap=gap, fps_override=options.unlabeled_fps,
                           show_progress=show_progress, workers=options.num_workers)

    # Rank 0 computes missing landmarks first; the others then find them cached.
    frames = load(options.progress) if ctx.is_main else None
    barrier(ctx)
    return frames if frames is not None else load(False)


def _aux_settings(options: TrainOptions) -> AuxSettings | None:
    if not options.aux_tasks:
        return None
    return AuxSettings(options.aux_tasks, options.aux_weight_inpaint, options.aux_weight_flow,
                       options.aux_masks, options.aux_mask_size, options.seed)


class _Trainer:
    """One training run: built from its options (or the resume state in its folder), then
    `run()`. Each step of the construction is a method, in this order: options, data,
    model, optimisation, progress, log."""

    def __init__(self, options: TrainOptions, ctx: DistContext, device: torch.device):
        self.ctx = ctx
        self.device = device
        self.out = options.out_dir  # the folder given now (a resumed run may have moved)
        self.state_path = self.out / STATE_FILE
        state = self._check_out_dir(options)
        self.options = self._effective_options(options, state)
        self._set_determinism()
        self._load_data()
        seed_everything(self.options.seed)
        self._build_model(state)
        self._build_optimisation()
        self._restore_progress(state)
        self._open_log(state)

    def _effective_options(self, options: TrainOptions, state: ResumeState | None
                           ) -> TrainOptions:
        """A resumed run keeps its stored options but for the runtime ones given now."""
        if state is None:
            return options
        stored = TrainOptions.from_dict(state.options)
        return stored.resumed_with(
            {k: v for k, v in options.to_dict().items() if k in RUNTIME_OPTIONS})

    def _set_determinism(self) -> None:
        """Mixed precision, and deterministic algorithms when asked (else cuDNN autotuning)."""
        options, device = self.options, self.device
        self.amp_dtype = autocast_dtype(options.precision, device)
        if options.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = device.type == "cuda" and not options.deterministic

    def _load_data(self) -> None:
        """The training and validation label tables, their AU set, and the unlabeled frames
        of the auxiliary tasks."""
        options, ctx = self.options, self.ctx
        self.issues = DataIssues(options.on_bad_data)
        self.train_table = _load_split(options, "train", options.train_csv, self.issues, ctx,
                                       options.subset)
        self.aus = trainable_aus(self.train_table.aus)
        self.val_table = None
        if options.validate:
            self.val_table = _load_split(options, "test", options.val_csv, self.issues, ctx,
                                         options.val_subset)
            if self.val_table.aus != self.aus:
                raise UserError(f"the validation CSV labels AUs {self.val_table.aus},"
                                f" the training CSV {self.aus}")
        self.aux = _aux_settings(options)
        self.unlabeled = _load_unlabeled(options, self.issues, ctx) if self.aux else None

    def _build_model(self, state: ResumeState | None) -> None:
        """The model (initial, or as resumed) and the flow head, on the device."""
        options, device = self.options, self.device
        if state is None:
            self.model, self.sources = initial_model(options, self.aus)
        else:
            if tuple(state.aus) != self.aus:
                raise UserError(f"the run being resumed trained AUs {state.aus}, not {self.aus}")
            self.model, self.sources = FGNet(FGNetConfig.from_dict(state.config)), state.sources
            self.model.load_state_dict(state.model)
            set_dropout(self.model, options.dropout)
        self.flow_head = None
        if self.aux is not None and self.aux.flow:
            self.flow_head = FlowHead(self.model.config.head_width)
            if state is not None:
                if "flow_head" not in state.aux:
                    raise UserError(f"{self.state_path}: no flow head saved in the resume state")
                self.flow_head.load_state_dict(state.aux["flow_head"])
            self.flow_head.to(device)
        self.model.to(device)

    def _build_optimisation(self) -> None:
        """What trains (the reached parameters, the flow head), the optimizer, the loss
        scaler, and the network the steps run (with the auxiliary heads, under DDP)."""
        options, device = self.options, self.device
        trainable = freeze_unreached(self.model, rgb=self.aux is not None and self.aux.inpaint)
        if self.flow_head is not None:
            trainable += list(self.flow_head.parameters())
        self.optimizer = make_optimizer(trainable, options, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.net = self.model if self.aux is None else AuxiliaryModel(self.model, self.flow_head)
        if self.ctx.enabled:
            self.net = DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.loss_names = loss_names(options.aux_tasks)

    def _restore_progress(self, state: ResumeState | None) -> None:
        """Where the run stands (epoch, iteration, step, best F1) and the random state: from
        the resume state, or from the start."""
        options, ctx = self.options, self.ctx
        self.epoch = self.iteration = self.step = 0
        self.best_f1: float | None = None
        self.best_epoch: int | None = None
        self.last_f1: float | None = None
        self.last_losses: dict[str, float] | None = None
        self.grad_norm = torch.zeros(())
        if state is None:
            seed_everything(options.seed + ctx.rank)
            return
        self.optimizer.load_state_dict(state.optimizer)
        self.scaler.load_state_dict(state.scaler)
        self.epoch, self.iteration, self.step = state.epoch, state.iteration, state.step
        self.best_f1, self.best_epoch = state.best_f1, state.best_epoch
        self.issues.restore(state.bad_frames)
        if len(state.rng) == ctx.world_size:
            restore_rng(state.rng[ctx.rank])
        else:
            seed_everything(options.seed + ctx.rank + state.step)

    def _open_log(self, state: ResumeState | None) -> None:
        """The run folder, its options file and metrics log (a resumed log cut back to what
        the resume state saw), the datasets, and the log's start or resume event."""
        options, ctx, out = self.options, self.ctx, self.out
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if state is None:
                write_run_options(out, options)
        self.log = MetricsLog(out / LOG_FILE, ctx.is_main,
                              truncate_to=None if state is None else state.log_bytes)
        self.train_set = FrameDataset(self.train_table, self.model.config.image_size)
        self.unlabeled_set = None
        if self.aux is not None:
            config = self.model.config
            self.unlabeled_set = UnlabeledDataset(
                self.unlabeled, self.unlabeled.usable(pairs=self.aux.flow), config.image_size,
                config.heatmap_size if self.aux.flow else None)
        if state is None:
            aux = {} if self.aux is None else {"aux": list(self.aux.tasks),
                                                "unlabeled_frames": len(self.unlabeled_set)}
            self.log.write({"event": "start", "aus": list(self.aus),
                            "train_frames": len(self.train_table),
                            "val_frames": len(self.val_table) if self.val_table else 0,
                            **aux, "world_size": ctx.world_size, "options": options.to_dict()})
        else:
            self.log.write({"event": "resume", "epoch": self.epoch + 1,
                            "iteration": self.iteration,
                            "step": self.step, "world_size": ctx.world_size})

    def _check_out_dir(self, options: TrainOptions) -> ResumeState | None:
        """The resume state of the run in --out (with --resume), else None; refuses a new run
        whose files would replace an earlier run's, an input, a link or a device (the
        output guard), before anything is written."""
        files = [self.out / name for name in RUN_FOLDER_FILES]
        inputs = [Path(p) for p in (options.weights, options.psp, options.stylegan,
                                    options.train_csv, options.val_csv) if p]
        check_outputs([(None, files)], extra_inputs=inputs)
        if options.resume:
            return load_state(self.state_path)
        if self.state_path.exists():
            raise UserError(f"{options.out} already holds a run: pass --resume to continue it"
                            " or choose another --out")
        earlier = [f.name for f in files if f.exists()]
        if earlier:
            raise OutputClash(f"{options.out} already holds {', '.join(earlier)} of another "
                              "run; choose another --out")
        return None

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> TrainSummary:
        o = self.options
        total = o.epochs * o.iterations
        done = self.epoch * o.iterations + self.iteration
        run_iterations = 0
        try:
            with StopRequest() as stop, progress_bar(
                "train", total, o.progress and self.ctx.is_main, completed=done,
                status=self._status(None),
            ) as ticker:
                while self.epoch < o.epochs:
                    if o.max_iterations is not None and run_iterations >= o.max_iterations:
                        return self._stop()
                    run_iterations = self._run_epoch(stop, ticker, run_iterations)
                    if run_iterations is None:
                        return self._stop()
                    self._end_epoch(ticker)
        finally:
            if self.ctx.is_main:
                self.issues.warn()
        self.log.write({"event": "done", "step": self.step, "best_f1": self.best_f1,
                        "best_epoch": _counted(self.best_epoch), "skipped": self._skipped()})
        self.log.close()
        return self._summary(finished=True)

    def _run_epoch(self, stop: StopRequest, ticker, run_iterations: int) -> int | None:
        """Iterations of the current epoch from self.iteration on; the count of iterations this
        process has run so far, or None when the run must stop here (state saved)."""
        o = self.options
        sampler = EpochBatchSampler(
            len(self.train_set), o.batch_size, o.iterations, o.seed, self.epoch,
            start=self.iteration, rank=self.ctx.rank, world_size=self.ctx.world_size,
        )
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_sampler=sampler, num_workers=o.num_workers,
            collate_fn=collate_frames, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(o.seed),
        )
        unlabeled_batches = self._unlabeled_loader() if self.aux else itertools.repeat(None)
        self.net.train()
        # Sums of each logged loss over the window, then the number of steps in it.
        window_loss = torch.zeros(len(self.loss_names) + 1, dtype=torch.float64,
                                  device=self.device)
        started = time.perf_counter()
        for batch, unlabeled in zip(loader, unlabeled_batches, strict=False):
            for path, reason in batch.bad + (unlabeled.bad if unlabeled is not None else []):
                self.issues.report(path, reason)
            limit = o.max_iterations is not None and run_iterations >= o.max_iterations
            # Every rank must agree to stop or to skip an empty batch (DDP steps in lockstep);
            # a single process needs no device round trip for that.
            empty = len(batch) == 0 or (unlabeled is not None and len(unlabeled) == 0)
            flags = torch.tensor([float(stop.requested or limit), float(empty)],
                                 device=self.device if self.ctx.enabled else "cpu")
            stop_now, empty = (all_reduce_sum(flags, self.ctx) > 0).tolist()
            if stop_now:
                return None
            if not empty:
                losses = self._step(batch, unlabeled)
                window_loss[:-1] += losses.detach().double()
                window_loss[-1] += 1
            self.iteration += 1
            self.step += 1
            run_iterations += 1
            if self.step % o.log_every == 0 or self.iteration == o.iterations:
                self._log_train(window_loss, started, ticker)
                window_loss.zero_()
            ticker.advance()
            if o.save_every and self.step % o.save_every == 0 and self.iteration < o.iterations:
                self._save_state()
        return run_iterations

    def _unlabeled_loader(self) -> torch.utils.data.DataLoader:
        """This epoch's unlabeled batches from the current iteration on (stream 1 of the
        seed, so the labeled order is the same as without auxiliary tasks)."""
        o = self.options
        sampler = EpochBatchSampler(
            len(self.unlabeled_set), o.unlabeled_batch, o.iterations, o.seed, self.epoch,
            start=self.iteration, rank=self.ctx.rank, world_size=self.ctx.world_size, stream=1,
        )
        return torch.utils.data.DataLoader(
            self.unlabeled_set, batch_sampler=sampler, num_workers=o.num_workers,
            collate_fn=collate_unlabeled, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(o.seed),
        )

    def _step(self, batch, unlabeled: UnlabeledBatch | None) -> torch.Tensor:
        """One step; the losses named by self.loss_names (a scalar without auxiliary tasks)."""
        images = batch.images.to(self.device, non_blocking=True)
        landmarks = batch.landmarks.to(self.device, non_blocking=True)
        labels = batch.labels.to(self.device, non_blocking=True)
        common = {"heatmap_size": self.model.config.heatmap_size, "sigma": self.options.sigma,
                  "grad_clip": self.options.grad_clip, "amp_dtype": self.amp_dtype}
        if unlabeled is None:
            loss, self.grad_norm = training_step(self.net, self.optimizer, self.scaler, images,
                                                 landmarks, labels, self.aus, **common)
            return loss
        losses, self.grad_norm = auxiliary_step(
            self.net, self.optimizer, self.scaler, images, landmarks, labels,
            unlabeled.to(self.device), self.aus, self.aux,
            self.aux.mask_rng(self.step, self.ctx.rank), **common,
        )
        return losses

    def _log_train(self, window_loss: torch.Tensor, started: float, ticker) -> None:
        totals = all_reduce_sum(window_loss.clone(), self.ctx)
        count = totals[-1]
        losses = {name: float(totals[k] / count) if count > 0 else float("nan")
                  for k, name in enumerate(self.loss_names)}
        self.last_losses = losses
        self.log.write({
            "event": "train", "epoch": self.epoch + 1, "iteration": self.iteration,
            "step": self.step, **losses, "grad_norm": float(self.grad_norm),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 3),
        })
        ticker.update(status=self._status(losses))

    def _status(self, losses: dict[str, float] | None) -> str:
        parts = [f"epoch {min(self.epoch + 1, self.options.epochs)}/{self.options.epochs}"]
        for name, value in (losses or {}).items():
            parts.append(f"{name.removeprefix('loss_')} {value:.4f}")
        if self.last_f1 is not None:
            parts.append(f"F1 {self.last_f1:.1f} (best {self.best_f1:.1f})")
        return " | ".join(parts)

    def _end_epoch(self, ticker) -> None:
        f1 = None
        record: dict = {"event": "val", "epoch": self.epoch + 1, "step": self.step}
        if self.val_table is not None:
            counts = self._validate()
            f1 = counts.mean_f1()
            per_au = counts.f1()
            record.update(frames=counts.n_frames, mean_f1=f1, per_au={au_name(a): float(v)
                                              for a, v in zip(self.aus, per_au, strict=True)})
        self.last_f1 = f1
        improved = f1 is not None and (self.best_f1 is None or f1 > self.best_f1)
        if improved:
            self.best_f1, self.best_epoch = f1, self.epoch
        record["best"] = improved
        self.log.write(record)
        self.epoch += 1
        self.iteration = 0
        if self.ctx.is_main:
            extra = {"training": {"epochs_done": self.epoch, "step": self.step, "val_f1": f1,
                                  "options": self.options.to_dict()}}
            save_converted(self.options.out_dir / LAST_FILE, self.model, self._dataset_name(),
                           self.aus, self.sources, extra)
            if improved:
                save_converted(self.options.out_dir / BEST_FILE, self.model,
                               self._dataset_name(), self.aus, self.sources, extra)
            if self.flow_head is not None:
                save_flow_head(self.options.out_dir / FLOW_HEAD_FILE, self.flow_head)
        self._save_state()
        ticker.update(status=self._status(self.last_losses))

    def _validate(self):
        broadcast_state(self.model, self.ctx)  # BatchNorm statistics differ across ranks
        dataset = FrameDataset(self.val_table, self.model.config.image_size)
        identity = ChannelMap(self.aus, tuple(range(len(self.aus))), tuple(range(len(self.aus))))
        counts = count_predictions(
            self.model, dataset, identity, device=self.device,
            batch_size=self.options.eval_batch_size, num_workers=self.options.num_workers,
            amp_dtype=self.amp_dtype, issues=self.issues, ctx=self.ctx,
            show_progress=False,
        )
        self.model.train()
        return counts

    def _dataset_name(self) -> str:
        """The dataset the checkpoints are saved under: the training set's, when the run
        scores its full AU set; else custom (a converted file named after a known dataset
        holds exactly its AUs)."""
        name = self.options.dataset.lower()
        return name if AU_SETS.get(name, self.aus) == self.aus else CUSTOM_DATASET

    def _skipped(self) -> int:
        return len(self.issues.found)

    # -- state ----------------------------------------------------------------------------------
    def _save_state(self) -> None:
        rng = capture_rng()
        if self.ctx.enabled:
            gathered: list = [None] * self.ctx.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng_all = gathered
        else:
            rng_all = [rng]
        if not self.ctx.is_main:
            return
        state = ResumeState(
            options=self.options.to_dict(), config=self.model.config.to_dict(),
            dataset=self._dataset_name(), aus=self.aus, sources=self.sources,
            epoch=self.epoch, iteration=self.iteration, step=self.step,
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(), rng=rng_all, best_f1=self.best_f1,
            best_epoch=self.best_epoch, log_bytes=self.log.size(), bad_frames=self.issues.items(),
            aux={} if self.flow_head is None else {"flow_head": self.flow_head.state_dict()},
        )
        save_state(self.state_path, state)

    def _stop(self) -> TrainSummary:
        self.log.write({"event": "stop", "epoch": self.epoch + 1, "iteration": self.iteration,
                        "step": self.step})
        self._save_state()
        self.log.close()
        return self._summary(finished=False)

    def _summary(self, finished: bool) -> TrainSummary:
        return TrainSummary(self.options.out_dir, finished, self.epoch, self.iteration,
                            self.step, self.best_f1, _counted(self.best_epoch), self._skipped())
