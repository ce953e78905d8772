"""Labeled aligned faces for training and evaluation.

Layout (paths in the CSVs are relative to the data root, or absolute):

    ROOT/BP4D/aligned_images/F001/T1/0001.jpg        256x256 aligned faces
    ROOT/BP4D/aligned_landmarks/F001/T1/0001.npy     (68, 2) dlib landmarks, 256-px (x, y)
    ROOT/BP4D/labels/0/train.csv                      image_path,au1,au2,au4,...

The landmark file of an image is its path with the `aligned_images` folder replaced by
`aligned_landmarks` and the suffix by `.npy` (an image outside any `aligned_images` folder
keeps its landmarks next to it). Missing landmark files are computed with dlib and cached.

Label columns are named `au<N>` (also `AU<NN>`, `au_<N>`); an AU is active iff its label is
>= the dataset's threshold (DISFA intensities: 2; BP4D and custom occurrences: 1).
Problems with the data (missing or unreadable image, bad label, no face for landmarks) are
reported with the image path and either skipped with a count or fatal (`on_bad`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from fgnet_video.atomic import save_npy
from fgnet_video.errors import UserError
from fgnet_video.face.still import ReleaseAligner
from fgnet_video.inference.engine import images_to_tensor
from fgnet_video.media.images import read_rgb
from fgnet_video.train.progress import progress_bar, stderr_console
from fgnet_video.train.targets import trainable_aus

BadDataPolicy = Literal["skip", "fail"]
DATASET_FOLDERS = {"bp4d": "BP4D", "disfa": "DISFA"}
POSITIVE_THRESHOLDS = {"bp4d": 1.0, "disfa": 2.0, "custom": 1.0}
# Valid label values per dataset: (minimum, maximum, integers only).
LABEL_RANGES = {"bp4d": (0.0, 1.0, True), "disfa": (0.0, 5.0, True), "custom": (0.0, np.inf, False)}
_AU_COLUMN = re.compile(r"^au_?0*(\d+)$", re.IGNORECASE)
_DECODE_ERRORS = (OSError, ValueError, UserError)


# -- bad data ------------------------------------------------------------------------------------

@dataclass
class DataIssues:
    """Collects problems with the data; under the 'fail' policy the first one is a UserError."""

    policy: BadDataPolicy = "fail"
    found: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.policy not in ("skip", "fail"):
            raise UserError(f"--on-bad-data must be skip or fail, not {self.policy!r}")

    def report(self, path: str, reason: str) -> None:
        """Record a bad frame (each path once); a UserError under the 'fail' policy."""
        if self.policy == "fail":
            raise UserError(f"bad data: {path}: {reason} (use --on-bad-data skip to skip it)")
        self.found.setdefault(path, reason)

    def items(self) -> list[list[str]]:
        """[[path, reason], ...] in the order found (for saving with a run's state)."""
        return [[path, reason] for path, reason in self.found.items()]

    def restore(self, items: list[list[str]]) -> None:
        for path, reason in items:
            self.found.setdefault(path, reason)

    def summary(self) -> str:
        """One line naming how many frames were skipped and the first of them."""
        if not self.found:
            return ""
        path, reason = next(iter(self.found.items()))
        return f"skipped {len(self.found)} bad frame(s); first: {path}: {reason}"

    def warn(self) -> None:
        if self.found:
            stderr_console().print(f"[yellow]warning:[/] {self.summary()}", highlight=False,
                                   soft_wrap=True, markup=True)


# -- label tables -------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelTable:
    """Frames of a label CSV: image paths (as written), binary labels (N, n_aus) and the AUs."""

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    aus: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def image_file(self, i: int) -> Path:
        return resolve_path(self.root, self.paths[i])

    def select(self, indices: Sequence[int] | np.ndarray) -> LabelTable:
        indices = np.asarray(indices, dtype=np.int64)
        return LabelTable(
            self.root, tuple(self.paths[i] for i in indices), self.labels[indices], self.aus
        )

    def subset(self, n: int, seed: int) -> LabelTable:
        """`n` frames drawn without replacement by `seed` (kept in CSV order)."""
        if n <= 0 or n > len(self):
            raise UserError(f"--subset must be between 1 and {len(self)} (frames in the CSV)")
        chosen = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self.select(chosen)


def resolve_path(root: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def landmark_file(image_file: Path) -> Path:
    """`.../aligned_images/x/y.jpg` -> `.../aligned_landmarks/x/y.npy` (last such folder)."""
    parts = list(image_file.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "aligned_images":
            parts[i] = "aligned_landmarks"
            return Path(*parts).with_suffix(".npy")
    return image_file.with_suffix(".npy")


def default_csv(root: Path, dataset: str, fold: int, split: str) -> Path:
    """ROOT/<BP4D|DISFA>/labels/<fold>/<split>.csv."""
    folder = DATASET_FOLDERS.get(dataset.lower())
    if folder is None:
        raise UserError(f"dataset {dataset!r} has no default label CSVs: pass them"
                        " (--csv, --train-csv, --val-csv)")
    return Path(root) / folder / "labels" / str(fold) / f"{split}.csv"


def au_columns(header: Sequence[str]) -> dict[int, str]:
    """AU number -> column name, for every column named like an AU."""
    found: dict[int, str] = {}
    for name in header:
        match = _AU_COLUMN.match(name.strip())
        if match:
            found[int(match.group(1))] = name
    return found


def read_labels(
    csv_path: Path | str,
    root: Path | str,
    dataset: str,
    issues: DataIssues,
    threshold: float | None = None,
) -> LabelTable:
    """Read a label CSV `image_path,au1,...` of `dataset` ('bp4d', 'disfa' or 'custom').

    bp4d/disfa fix the AU set (columns matched by AU number); custom takes the AU columns in
    header order. Rows with a bad label value are reported to `issues`.
    """
    csv_path, root = Path(csv_path), Path(root)
    dataset = dataset.lower()
    if dataset not in LABEL_RANGES:
        raise UserError(f"unknown dataset {dataset!r} (known: bp4d, disfa, custom)")
    if not csv_path.is_file():
        raise UserError(f"label CSV not found: {csv_path}")
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read label CSV {csv_path}: {exc}") from None
    if "image_path" not in frame.columns:
        raise UserError(f"{csv_path}: no 'image_path' column (header: {', '.join(frame.columns)})")
    columns = au_columns(list(frame.columns))
    if dataset == "custom":
        aus = trainable_aus(tuple(columns))
    else:
        aus = trainable_aus(dataset)
        missing = [a for a in aus if a not in columns]
        if missing:
            raise UserError(
                f"{csv_path}: no column for AU {', '.join(map(str, missing))} of {dataset}"
            )
    raw = frame[[columns[a] for a in aus]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    low, high, integral = LABEL_RANGES[dataset]
    valid = np.isfinite(raw) & (raw >= low) & (raw <= high)
    if integral:
        valid &= raw == np.round(raw)
    good_rows = valid.all(axis=1)
    paths = frame["image_path"].str.strip().tolist()
    for row in np.flatnonzero(~good_rows):
        column = int(np.flatnonzero(~valid[row])[0])
        value = frame[columns[aus[column]]].iloc[row]
        issues.report(
            paths[row], f"bad label {value!r} for AU{aus[column]} (row {row + 2} of {csv_path})"
        )
    empty = [i for i, p in enumerate(paths) if not p]
    for row in empty:
        issues.report(f"{csv_path} row {row + 2}", "empty image_path")
    keep = good_rows.copy()
    keep[empty] = False
    threshold = POSITIVE_THRESHOLDS[dataset] if threshold is None else threshold
    labels = (raw[keep] >= threshold).astype(np.uint8)
    return LabelTable(root, tuple(paths[i] for i in np.flatnonzero(keep)), labels, aus)


# -- landmarks ----------------------------------------------------------------------------------

class DlibLandmarker:
    """dlib 68-point landmarks of the largest face in an aligned image, found the way FG-Net's
    preprocessing did (`ReleaseAligner.largest_face`), in the 256-px coordinates of the face."""

    def __init__(self) -> None:
        self._aligner = ReleaseAligner()

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        face = self._aligner.largest_face(rgb)
        return None if face is None else face[1] * (256.0 / rgb.shape[1])


def _landmarks_or_reason(
    path: Path, landmarker: Callable[[np.ndarray], np.ndarray | None]
) -> tuple[np.ndarray | None, str]:
    """(landmarks, '') or (None, why there are none)."""
    try:
        rgb = read_rgb(path)
    except _DECODE_ERRORS as exc:
        return None, f"unreadable image ({exc})"
    points = landmarker(rgb)
    if points is None:
        return None, "no face found to compute landmarks"
    return np.asarray(points, dtype=np.float64), ""


_process_landmarker: DlibLandmarker | None = None


def _start_landmark_process() -> None:
    global _process_landmarker
    _process_landmarker = DlibLandmarker()


def _landmarks_in_process(path: Path) -> tuple[np.ndarray | None, str]:
    return _landmarks_or_reason(path, _process_landmarker)


def check_frames(
    table: LabelTable,
    issues: DataIssues,
    landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None,
    show_progress: bool = True,
    workers: int = 1,
) -> LabelTable:
    """Drop (or fail on) frames whose image is missing; compute and cache missing landmarks.

    `landmarker` maps an RGB image to (68, 2) 256-px landmarks or None (no face); without
    one, dlib's runs in `workers` processes. Returns the frames that are usable.
    """
    keep: list[int] = []
    missing: list[int] = []
    for i in range(len(table)):
        image_file = table.image_file(i)
        if not image_file.is_file():
            issues.report(table.paths[i], "image file not found")
            continue
        keep.append(i)
        if not landmark_file(image_file).is_file():
            missing.append(i)
    failed: set[int] = set()
    if missing:
        files = [table.image_file(i) for i in missing]
        with ExitStack() as stack:
            if landmarker is None and workers > 1 and len(missing) > 1:
                pool = stack.enter_context(ProcessPoolExecutor(
                    min(workers, len(missing)), initializer=_start_landmark_process))
                results = pool.map(_landmarks_in_process, files, chunksize=8)
            else:
                landmarker = landmarker or DlibLandmarker()
                results = (_landmarks_or_reason(f, landmarker) for f in files)
            ticker = stack.enter_context(progress_bar("landmarks", len(missing), show_progress))
            for i, file, (points, reason) in zip(missing, files, results, strict=True):
                if points is None:
                    issues.report(table.paths[i], reason)
                    failed.add(i)
                else:
                    save_npy(landmark_file(file), points)
                ticker.advance()
    return table.select([i for i in keep if i not in failed])


# -- torch dataset ------------------------------------------------------------------------------

def face_tensor(rgb: np.ndarray, size: int) -> torch.Tensor:
    """One uint8 RGB face (H, W, 3) as a float (3, size, size) tensor in [-1, 1]. Arrays of
    decoded images are read-only (PIL's are), which torch warns about when it wraps them, so
    such an array is copied first."""
    return images_to_tensor(np.require(rgb, requirements="W")[None], size)[0]


class FrameDataset(torch.utils.data.Dataset):
    """Items: {'image' (3,S,S) in [-1,1], 'landmarks' (68,2) 256-px, 'labels' (n_aus,) 0/1,
    'index'}; an unreadable frame gives {'bad': (path, reason)} instead (never raises)."""

    def __init__(self, table: LabelTable, image_size: int):
        self.table = table
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict:
        image_file = self.table.image_file(i)
        try:
            image = face_tensor(read_rgb(image_file), self.image_size)
        except _DECODE_ERRORS as exc:
            return {"bad": (self.table.paths[i], f"unreadable image ({exc})")}
        try:
            landmarks = np.load(landmark_file(image_file), allow_pickle=False)
        except _DECODE_ERRORS as exc:
            return {"bad": (self.table.paths[i], f"unreadable landmarks ({exc})")}
        if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
            reason = f"landmarks must be 68x2 finite numbers, not {landmarks.shape}"
            return {"bad": (self.table.paths[i], reason)}
        return {
            "image": image,
            "landmarks": torch.from_numpy(landmarks.astype(np.float32)),
            "labels": torch.from_numpy(self.table.labels[i].astype(np.float32)),
            "index": i,
        }


@dataclass
class FrameBatch:
    """A collated batch; `bad` lists (path, reason) of the frames that could not be read."""

    images: torch.Tensor
    landmarks: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    bad: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def collate_frames(items: list[dict]) -> FrameBatch:
    good = [item for item in items if "bad" not in item]
    bad = [item["bad"] for item in items if "bad" in item]
    if not good:
        empty = torch.zeros(0)
        return FrameBatch(empty, empty, empty, torch.zeros(0, dtype=torch.int64), bad)
    return FrameBatch(
        images=torch.stack([item["image"] for item in good]),
        landmarks=torch.stack([item["landmarks"] for item in good]),
        labels=torch.stack([item["labels"] for item in good]),
        indices=torch.tensor([item["index"] for item in good], dtype=torch.int64),
        bad=bad,
    )
