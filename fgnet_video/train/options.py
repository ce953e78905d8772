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

AUX_TASKS = ("inpaint", "flow")


def parse_tasks(text: str | None) -> tuple[str, ...]:
    """Auxiliary task names: 'flow,inpaint' -> ('inpaint', 'flow') (canonical order), '' ->
    (); ValueError naming the first unknown one."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    unknown = [name for name in names if name not in AUX_TASKS]
    if unknown:
        raise ValueError(unknown[0])
    return tuple(task for task in AUX_TASKS if task in names)


@dataclass(frozen=True)
class TrainOptions:
    """A training run. Initialisation: exactly one of `weights` (fine-tune an FG-Net
    checkpoint; a release model.pth also needs `psp`), `psp` (+ optional `stylegan`: the
    release's starting point) or `preset` (random init, e.g. 'tiny').

    Auxiliary tasks (off by default; fgnet_video.train.auxiliary): `aux` names them
    ('inpaint', 'flow' or 'inpaint,flow'), `unlabeled` lists their videos / preprocessed
    folders; each iteration adds an unlabeled batch of `aux_batch` frames (default: the
    batch size) and the weighted losses. Inpainting blanks `aux_masks` squares of side
    `aux_mask_size` (256-px units) at AU ROI points; flow pairs frames `aux_flow_gap`
    seconds apart (`unlabeled_fps`: frame rate of folders without preprocess's videos.json).
    """

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
    aux: str = ""
    unlabeled: tuple[str, ...] = ()
    aux_weight_inpaint: float = 1.0
    aux_weight_flow: float = 0.1
    aux_batch: int | None = None
    aux_masks: int = 3
    aux_mask_size: float = 40.0
    aux_flow_gap: float = 0.1
    unlabeled_fps: float | None = None
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
        self._check_aux()

    def _check_aux(self) -> None:
        """Validate the auxiliary-task options; store `aux` in canonical order ('inpaint,flow')
        and `unlabeled` as a tuple (so stored and given options compare equal on resume)."""
        try:
            tasks = parse_tasks(self.aux)
        except ValueError as exc:
            raise UserError(f"--aux takes inpaint, flow or inpaint,flow, not {exc.args[0]!r}"
                            ) from None
        object.__setattr__(self, "aux", ",".join(tasks))
        object.__setattr__(self, "unlabeled", tuple(str(p) for p in self.unlabeled))
        if tasks and not self.unlabeled:
            raise UserError("--aux needs unlabeled data: --unlabeled VIDEO_OR_FOLDER")
        if self.unlabeled and not tasks:
            raise UserError("--unlabeled feeds the auxiliary tasks: add --aux inpaint,flow"
                            " (or one of them)")
        if self.aux_weight_inpaint < 0 or self.aux_weight_flow < 0:
            raise UserError("--aux-weight-inpaint and --aux-weight-flow must be >= 0")
        if self.aux_batch is not None and self.aux_batch < 1:
            raise UserError(f"--aux-batch must be at least 1, not {self.aux_batch}")
        if self.aux_masks < 1 or not self.aux_mask_size > 0:
            raise UserError("--aux-masks must be at least 1 and --aux-mask-size > 0")
        if not self.aux_flow_gap > 0:
            raise UserError(f"--aux-flow-gap must be > 0 seconds, not {self.aux_flow_gap}")
        if self.unlabeled_fps is not None and not self.unlabeled_fps > 0:
            raise UserError(f"--unlabeled-fps must be > 0, not {self.unlabeled_fps}")

    @property
    def aux_tasks(self) -> tuple[str, ...]:
        """The auxiliary tasks of the run, () when off."""
        return parse_tasks(self.aux)

    @property
    def unlabeled_batch(self) -> int:
        return self.aux_batch or self.batch_size

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
