"""The resume state of a training run: everything needed to continue bit for bit.

`resume.pt` (next to the checkpoints) holds the run's options and model config, the model,
optimizer and grad-scaler states, the random generator states of torch (CPU and CUDA),
numpy and Python for every rank, the position (epoch, next iteration, global step), the best
validation F1 so far and the size of the metrics log at that point, and the state dicts of
the auxiliary-task heads (none without --aux). It is written with
torch.save to a temporary name and renamed, and read back with weights_only=True.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fgnet_video.atomic import atomic_path
from fgnet_video.errors import UserError

STATE_FILE = "resume.pt"
STATE_FORMAT = 1


def capture_rng() -> dict:
    """The global random states of torch (CPU, CUDA), numpy and Python as plain tensors/ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }


def restore_rng(state: dict) -> None:
    """Inverse of `capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((
        np_state["kind"],
        np_state["keys"].numpy().astype(np.uint32),
        np_state["pos"],
        np_state["has_gauss"],
        np_state["cached"],
    ))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class ResumeState:
    """Where a run stands. `iteration` is the next iteration of `epoch` to run; `epoch` and
    `best_epoch` are positions from 0 (the logs and messages count epochs from 1)."""

    options: dict
    config: dict
    dataset: str
    aus: tuple[int, ...]
    sources: dict
    epoch: int
    iteration: int
    step: int
    model: dict
    optimizer: dict
    scaler: dict
    rng: list[dict]
    best_f1: float | None = None
    best_epoch: int | None = None
    log_bytes: int = 0
    bad_frames: list[list[str]] = field(default_factory=list)
    aux: dict = field(default_factory=dict)  # auxiliary heads' state dicts, by name

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


def save_state(path: Path, state: ResumeState) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(state.to_dict(), tmp)


def load_state(path: Path) -> ResumeState:
    if not path.is_file():
        raise UserError(f"nothing to resume: {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"{path}: unreadable resume state ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: not a resume state of this fgnet-video version")
    fields = {k: v for k, v in data.items() if k in ResumeState.__dataclass_fields__}
    fields["aus"] = tuple(fields["aus"])
    return ResumeState(**fields)
