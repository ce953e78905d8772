"""Options of a training run; the defaults are the FG-Net release's recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from fgnet_video.errors import UserError

# Options that only change how a run executes, not what it computes: they may differ when
# a run is resumed. Every other option is fixed by the run being resumed.
RUNTIME_OPTIONS = frozenset({
    "out", "device", "num_workers", "max_iterations", "save_every", "log_every", "progress",
    "eval_batch_size", "resume",
})


@dataclass(frozen=True)
class TrainOptions:
    """A training run. Initialisation: exactly one of `weights` (fine-tune an FG-Net
    checkpoint; a release model.pth also needs `psp`), `psp` (+ optional `stylegan`: the
    release's starting point) or `preset` (random init, e.g. 'tiny')."""

    dataset: str
    data: str
    out: str
    fold: int = 0
    train_csv: str | None = None
    val_csv: str | None = None
    validate: bool = True
    weights: str | None = None
    psp: str | None = None
    stylegan: str | None = None
    preset: str | None = None
    features: str | None = None
    lr: float = 5e-5
    weight_decay: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 0.1
    batch_size: int = 16
    epochs: int = 15
    iterations: int = 500
    dropout: float = 0.1
    seed: int = 0
    sigma: float = 20.0
    subset: int | None = None
    val_subset: int | None = None
    positive_threshold: float | None = None
    precision: str = "auto"
    deterministic: bool = False
    on_bad_data: str = "fail"
    device: str = "auto"
    num_workers: int = 4
    eval_batch_size: int = 32
    max_iterations: int | None = None
    save_every: int = 0
    log_every: int = 10
    progress: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        if self.dataset.lower() not in ("bp4d", "disfa", "custom"):
            raise UserError(f"--dataset must be bp4d, disfa or custom, not {self.dataset!r}")
        positive = {"batch_size": self.batch_size, "epochs": self.epochs,
                    "iterations": self.iterations, "eval_batch_size": self.eval_batch_size,
                    "log_every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.sigma <= 0:
            raise UserError("--lr, --grad-clip and --sigma must be > 0, --weight-decay >= 0")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1), not {self.dropout}")
        if self.max_iterations is not None and self.max_iterations < 0:
            raise UserError("--max-iterations must be >= 0")
        if self.save_every < 0 or self.num_workers < 0:
            raise UserError("--save-every and --num-workers must be >= 0")
        starts = [name for name in ("weights", "preset") if getattr(self, name)]
        if self.psp and not self.weights:
            starts.append("psp")
        if len(starts) != 1 and not self.resume:
            raise UserError(
                "choose one initialisation: --psp encoder.pt [--stylegan g.pt] (the release's),"
                " --weights CHECKPOINT (fine-tuning) or --preset tiny|full (random)"
            )
        if self.dataset.lower() == "custom" and not self.train_csv and not self.resume:
            raise UserError("--dataset custom needs --train-csv (and --val-csv for validation)")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def resumed_with(self, given: dict) -> TrainOptions:
        """These stored options with the runtime options in `given` applied. A run-defining
        option in `given` that differs from the stored value is an error."""
        stored = self.to_dict()
        conflicts = [k for k, v in given.items()
                     if k not in RUNTIME_OPTIONS and k in stored and stored[k] != v]
        if conflicts:
            name = conflicts[0]
            raise UserError(
                f"--{name.replace('_', '-')} {given[name]!r} differs from the run being resumed"
                f" ({stored[name]!r}); start a new run in another --out to change it"
            )
        runtime = {k: v for k, v in given.items() if k in RUNTIME_OPTIONS and k != "resume"}
        return replace(self, **runtime, resume=True)
