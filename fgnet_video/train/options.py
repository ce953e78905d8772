"""Options of training and evaluation runs; the defaults are the FG-Net release's recipe.

Each field is declared with `fgnet_video.settings.setting(default, help)`: the dataclasses
hold every default and its help text, and the CLI (`fgnet_video.cli.train`,
`fgnet_video.cli.evaluate`) builds its options from them. This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from fgnet_video.aus import AU_SETS, LABEL_DATASETS, names
from fgnet_video.errors import UserError
from fgnet_video.options import KNOWN_WEIGHTS_HELP, ModelOptions
from fgnet_video.settings import setting, setting_help

# Options that only change how a run executes, not what it computes: they may differ when
# a run is resumed. Every other option is fixed by the run being resumed.
RUNTIME_OPTIONS = frozenset({
    "out", "device", "num_workers", "max_iterations", "save_every", "log_every", "progress",
    "eval_batch_size", "resume", "offline",
})

AUX_TASKS = ("inpaint", "flow")

# Path options made absolute when the options are built (see `absolute_paths`).
PATH_OPTIONS = ("data", "train_csv", "val_csv", "psp", "stylegan")

_WEIGHTS_FORMS = (f"a {KNOWN_WEIGHTS_HELP}, a converted .safetensors file or the release's "
                  "model.pth")
_OFFLINE_HELP = setting_help(ModelOptions, "offline")
_DEVICE_HELP = setting_help(ModelOptions, "device")


def parse_tasks(text: str | None) -> tuple[str, ...]:
    """Auxiliary task names: 'flow,inpaint' -> ('inpaint', 'flow') (canonical order), '' ->
    (); ValueError naming the first unknown one."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    unknown = [name for name in names if name not in AUX_TASKS]
    if unknown:
        raise ValueError(unknown[0])
    return tuple(task for task in AUX_TASKS if task in names)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def absolute_paths(values: dict) -> dict:
    """`values` (TrainOptions fields, some or all) with their paths made absolute, so that a
    run reads the same files wherever it is resumed from: each of PATH_OPTIONS, each of
    `unlabeled`, and `weights` when it names an existing file (else it is a known weights
    name such as 'bp4d', kept as it is)."""
    resolved = dict(values)
    for name in PATH_OPTIONS:
        if resolved.get(name):
            resolved[name] = _absolute(resolved[name])
    weights = resolved.get("weights")
    if weights and Path(weights).expanduser().is_file():
        resolved["weights"] = _absolute(weights)
    if "unlabeled" in resolved:
        resolved["unlabeled"] = tuple(_absolute(str(p)) for p in resolved["unlabeled"])
    return resolved


@dataclass(frozen=True)
class TrainOptions:
    """A training run. Initialisation: exactly one of `weights` (fine-tune an FG-Net
    checkpoint: a file, or a known name fetched by `fgnet_video.weights.store.load_weights`; a
    release model.pth also needs `psp`), `psp` (+ optional `stylegan`: the release's starting
    point) or `preset` (random init, e.g. 'tiny'). Paths are made absolute on construction
    (`absolute_paths`).

    Auxiliary tasks (off by default; fgnet_video.train.auxiliary): `aux` names them
    ('inpaint', 'flow' or 'inpaint,flow'), `unlabeled` lists their videos / preprocessed
    folders; each iteration adds an unlabeled batch of `aux_batch` frames (default: the
    batch size) and the weighted losses. Inpainting blanks `aux_masks` squares of side
    `aux_mask_size` (256-px units) at AU ROI points; flow pairs frames `aux_flow_gap`
    seconds apart (`unlabeled_fps`: frame rate of folders without preprocess's videos.json).

    `offline` (a runtime option, like `device`) stops downloads of known weights; None
    leaves it to FGNET_VIDEO_OFFLINE.
    """

    dataset: str = setting(
        help="AU set and label conventions; custom takes the AUs from the CSV header.")
    data: str = setting(
        help="Data root holding <DATASET>/aligned_images, aligned_landmarks, labels.")
    out: str = setting(help="Run folder: checkpoints, resume state, metrics.jsonl.")
    fold: int = setting(0, "Fold of the default label CSVs.")
    train_csv: str | None = setting(
        None, "Training labels [<DATASET>/labels/<fold>/train.csv].")
    val_csv: str | None = setting(
        None, "Validation labels [<DATASET>/labels/<fold>/test.csv].")
    validate: bool = setting(True, "Validation F1 after each epoch (best checkpoint kept).")
    weights: str | None = setting(None, f"FG-Net weights to fine-tune: {_WEIGHTS_FORMS}"
                                  " (with --psp).")
    psp: str | None = setting(None, "pSp encoder.pt to start from (or the latent_avg source"
                              " of a release model.pth given with --weights).")
    stylegan: str | None = setting(
        None, "StyleGAN2 .pt whose g_ema replaces pSp's decoder.")
    preset: str | None = setting(None, "Random initialisation of this size (tiny or full).")
    features: str | None = setting(
        None, "Feature groups to use, e.g. 'early,middle' (the paper's '- Late' ablation,"
        " faster).")
    lr: float = setting(5e-5, "AdamW learning rate.")
    weight_decay: float = setting(5e-4, "AdamW weight decay.")
    beta1: float = setting(0.9, "AdamW beta1.")
    beta2: float = setting(0.999, "AdamW beta2.")
    grad_clip: float = setting(0.1, "Gradient-norm clip.")
    batch_size: int = setting(16, "Global batch (split across torchrun processes).")
    epochs: int = setting(15, "Epochs to train.")
    iterations: int = setting(500, "Iterations per epoch.")
    dropout: float = setting(0.1, "Interpreter dropout.")
    seed: int = setting(0, "Seed of the initialisation, the data order and the subsets.")
    sigma: float = setting(20.0, "Target Gaussian sigma in 128-px heatmap units.")
    subset: int | None = setting(None, "Train on N frames drawn by --seed.")
    val_subset: int | None = setting(None, "Validate on N frames drawn by --seed.")
    positive_threshold: float | None = setting(
        None, "Label value that counts as active [disfa 2, else 1].")
    precision: str = setting("auto", "Training precision (auto: bf16, or fp16 with loss"
                             " scaling, on GPU; fp32 on CPU).")
    deterministic: bool = setting(False, "Deterministic GPU kernels (slower).")
    on_bad_data: str = setting("fail", "Skip (and count) or stop at a bad frame.")
    aux: str = setting("", "Auxiliary tasks on the unlabeled frames: inpaint, flow or"
                       " inpaint,flow [off].")
    unlabeled: tuple[str, ...] = setting(
        (), "Unlabeled video, or preprocessed folder (aligned_images/), for the auxiliary"
        " tasks (repeatable). Videos are aligned once into OUT/unlabeled/.")
    aux_weight_inpaint: float = setting(1.0, "Weight of the RoI inpainting L1 loss.")
    aux_weight_flow: float = setting(0.1, "Weight of the flow end-point-error loss.")
    aux_batch: int | None = setting(None, "Unlabeled frames per iteration [--batch-size].")
    aux_masks: int = setting(
        3, "Inpainting: squares masked per face, at random AU ROI points.")
    aux_mask_size: float = setting(
        40.0, "Inpainting: side of a masked square in 256-px face pixels.")
    aux_flow_gap: float = setting(0.1, "Flow: seconds between the two frames of a pair.")
    unlabeled_fps: float | None = setting(
        None, "Frame rate of preprocessed folders without videos.json (frame files named by"
        " frame index).")
    device: str = setting(ModelOptions.device, _DEVICE_HELP)
    num_workers: int = setting(4, "Data loading processes.")
    eval_batch_size: int = setting(32, "Batch size of the validation passes.")
    max_iterations: int | None = setting(
        None, "Stop (resumable) after this many iterations in this invocation.")
    save_every: int = setting(
        0, "Also save the resume state every N iterations (0: at epoch ends).")
    log_every: int = setting(10, "Iterations per log record.")
    progress: bool = setting(True, "Progress bars on stderr.")
    offline: bool | None = setting(None, _OFFLINE_HELP)
    resume: bool = setting(False, "Continue the run in --out where it stopped.")

    def __post_init__(self) -> None:
        paths = absolute_paths({name: getattr(self, name)
                                for name in (*PATH_OPTIONS, "weights", "unlabeled")})
        for name, value in paths.items():
            object.__setattr__(self, name, value)
        if self.dataset.lower() not in LABEL_DATASETS:
            raise UserError(f"--dataset must be {names(LABEL_DATASETS)}, not {self.dataset!r}")
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
                " --weights NAME_OR_FILE (fine-tuning) or --preset tiny|full (random)"
            )
        if self.dataset.lower() == "custom" and not self.train_csv and not self.resume:
            raise UserError("--dataset custom needs --train-csv (and --val-csv for validation)")
        self._check_aux()

    def _check_aux(self) -> None:
        """Validate the auxiliary-task options; store `aux` in canonical order ('inpaint,flow')
        so that stored and given options compare equal on resume."""
        try:
            tasks = parse_tasks(self.aux)
        except ValueError as exc:
            raise UserError(f"--aux takes inpaint, flow or inpaint,flow, not {exc.args[0]!r}"
                            ) from None
        object.__setattr__(self, "aux", ",".join(tasks))
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
        option in `given` that differs from the stored value (paths compared once made
        absolute) is an error."""
        stored = self.to_dict()
        given = absolute_paths(given)
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


def parse_aus(value: str | Sequence[int | str] | None) -> tuple[int, ...] | None:
    """AU numbers from '1,2,4', 'AU01,au12' or a sequence of such numbers or names; None
    (every AU) for None or ''. A UserError names a value that is not one."""
    if not value:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(int(str(part).strip().upper().removeprefix("AU")) for part in parts)
    except ValueError:
        raise UserError(f"--aus takes AU numbers like 1,2,4 (got {value!r})") from None


@dataclass(frozen=True)
class EvaluateOptions:
    """How `fgnet_video.train.evaluate.evaluate_weights` scores a checkpoint: which label
    sets (the test CSV of `fold`, of every fold with `all_folds`, or `csvs`), which AUs, and
    how it runs. `aus` may be given as text ('1,2,4', 'AU01,AU12'): it is stored as AU
    numbers. `offline` None leaves downloads of known weights to FGNET_VIDEO_OFFLINE."""

    fold: int = setting(0, "Fold whose test.csv is scored.")
    all_folds: bool = setting(False, "Score folds 0, 1, 2 and average them.")
    csvs: tuple[str, ...] = setting(
        (), "Label CSV(s) to score instead of the folds' test.csv (repeatable).")
    psp: str | None = setting(None, "pSp encoder.pt: supplies latent_avg for a release"
                              " model.pth.")
    model_dataset: str | None = setting(
        None, "AU set of a release model.pth [the evaluated dataset].")
    aus: tuple[int, ...] | None = setting(None, "Score only these AUs, e.g. 1,2,4,6,12.")
    batch_size: int = setting(32, "Frames per forward pass.")
    num_workers: int = setting(2, "Data loading processes.")
    device: str = setting(ModelOptions.device, _DEVICE_HELP)
    precision: str = setting(ModelOptions.precision, setting_help(ModelOptions, "precision"))
    on_bad_data: str = setting("fail", "Skip (and count) or stop at a bad frame.")
    positive_threshold: float | None = setting(
        None, "Label value that counts as active [disfa 2, else 1].")
    offline: bool | None = setting(None, _OFFLINE_HELP)
    show_progress: bool = setting(True, "Progress bars on stderr.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "csvs", tuple(str(csv) for csv in self.csvs))
        object.__setattr__(self, "aus", parse_aus(self.aus))
        if self.csvs and self.all_folds:
            raise UserError("--csv and --all-folds exclude each other")
        if self.fold < 0:
            raise UserError(f"--fold must be >= 0, not {self.fold}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.num_workers < 0:
            raise UserError("--num-workers must be >= 0")
        if self.model_dataset is not None and self.model_dataset.lower() not in AU_SETS:
            raise UserError(f"--model-dataset must be {names(AU_SETS)}, not "
                            f"{self.model_dataset!r}")

    @property
    def folds(self) -> tuple[int, ...]:
        """The folds whose test CSV is scored (unused when `csvs` are given)."""
        return (0, 1, 2) if self.all_folds else (self.fold,)
