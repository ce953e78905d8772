"""Unlabeled frames for the auxiliary tasks (`train --unlabeled SRC... --aux ...`).

A source is either
- a video file: decoded and aligned once by `fgnet_video.train.preprocess.preprocess` (every frame,
  the release's alignment) into the run's cache folder `<out>/unlabeled/`; `sources.json`
  there records the videos (path, size, modification time) so later runs and --resume reuse
  the cache;
- a preprocessed folder: one holding `aligned_images/` (and `aligned_landmarks/`), or the
  `aligned_images` folder itself. Missing landmarks are computed with dlib and cached, as for
  labeled frames.

Timing (for the flow task): a video is a folder of `aligned_images` whose images are named by
frame index (`000012.jpg`, as preprocess writes them); frame i is at i / fps seconds, with
fps the video's average frame rate recorded by preprocess in `videos.json`, or `fps_override`
(`--unlabeled-fps`) for folders without that record. The flow partner of frame t is the frame
of the same video whose time is closest to t + gap (and later than t), accepted when it is
within gap / 2 of t + gap; frames without one take no part in the flow task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fgnet_video.atomic import write_json
from fgnet_video.errors import UserError
from fgnet_video.media.images import IMAGE_SUFFIXES, read_rgb
from fgnet_video.media.video import VIDEO_SUFFIXES
from fgnet_video.train.data import (
    DataIssues,
    LabelTable,
    check_frames,
    face_tensor,
    landmark_file,
)
from fgnet_video.train.flow import flow_target
from fgnet_video.train.preprocess import IMAGES_DIR, preprocess, read_videos
from fgnet_video.train.progress import progress_bar, stderr_console

CACHE_DIR = "unlabeled"
SOURCES_FILE = "sources.json"
_READ_ERRORS = (OSError, ValueError, UserError)


# -- sources ------------------------------------------------------------------------------------

def split_sources(sources: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(video files, preprocessed folders) of the given sources; UserError for anything else."""
    videos: list[Path] = []
    roots: list[Path] = []
    for source in map(Path, sources):
        if not source.exists():
            raise UserError(f"--unlabeled {source}: no such file or folder")
        if source.is_file():
            if source.suffix.lower() not in VIDEO_SUFFIXES:
                raise UserError(f"--unlabeled {source}: not a video file (known suffixes:"
                                f" {', '.join(VIDEO_SUFFIXES)}) nor a preprocessed folder")
            videos.append(source)
        elif (source / IMAGES_DIR).is_dir():
            roots.append(source)
        elif source.name == IMAGES_DIR:
            roots.append(source.parent)
        else:
            raise UserError(f"--unlabeled {source}: no {IMAGES_DIR}/ folder in it (make one with"
                            " `fgnet-video preprocess VIDEOS -o FOLDER`, or pass the videos)")
    return videos, roots


def _stamp(videos: Sequence[Path]) -> list[dict]:
    stats = [(v.resolve(), v.stat()) for v in videos]
    return [{"path": str(p), "size": s.st_size, "mtime_ns": s.st_mtime_ns} for p, s in stats]


def cache_videos(videos: Sequence[Path], cache: Path, jobs: int = 1,
                 show_progress: bool = True) -> None:
    """Decode and align `videos` into `cache` with preprocess, unless the cache already
    holds exactly these videos (same paths, sizes and modification times)."""
    stamp = {"videos": _stamp(videos)}
    marker = cache / SOURCES_FILE
    try:
        if json.loads(marker.read_text()) == stamp:
            return
    except (OSError, json.JSONDecodeError):
        pass  # no cache yet, or an unfinished one: preprocess skips the frames already done
    with progress_bar("align unlabeled videos", 0, show_progress) as ticker:
        report = preprocess(videos, cache, jobs=jobs,
                            on_total=lambda n: ticker.update(total=n), on_progress=ticker.advance)
    for line in report.truncated:
        stderr_console().print(f"[yellow]warning:[/] truncated video {line}", highlight=False,
                               soft_wrap=True)
    write_json(marker, stamp)


# -- frames and their flow partners -------------------------------------------------------------

@dataclass(frozen=True)
class FrameFile:
    """An aligned frame: its file, the preprocessed folder it is in, its video (the folder
    under aligned_images) and its time in seconds (NaN: unknown)."""

    path: Path
    root: Path
    video: str
    time: float


def scan_frames(root: Path, fps_override: float | None = None) -> list[FrameFile]:
    """The aligned images under ROOT/aligned_images (hidden files skipped), sorted, as
    absolute paths with their video folder and time (index / fps when the name is an index
    and fps is known)."""
    root = root.absolute()
    images = root / IMAGES_DIR
    rates = read_videos(root)
    found: list[FrameFile] = []
    for path in sorted(images.rglob("*")):
        relative = path.relative_to(images)
        if (not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES
                or any(part.startswith(".") for part in relative.parts)):
            continue
        video = relative.parent.as_posix()
        fps = rates.get(video, {}).get("fps") or fps_override
        time = int(path.stem) / fps if path.stem.isdigit() and fps else float("nan")
        found.append(FrameFile(path, root, video, time))
    return found


def flow_partners(videos: Sequence[Hashable], times: np.ndarray, gap: float) -> np.ndarray:
    """For each frame, the index of the frame of the same video whose time is closest to
    time + gap (the earlier on a tie) and later than the frame, when within gap / 2 of
    time + gap; -1 otherwise (also for unknown times)."""
    times = np.asarray(times, dtype=np.float64)
    partners = np.full(len(times), -1, dtype=np.int64)
    groups: dict[Hashable, list[int]] = {}
    for i, video in enumerate(videos):
        groups.setdefault(video, []).append(i)
    for members in groups.values():
        index = np.asarray(members)
        index = index[np.isfinite(times[index])]
        if len(index) < 2:
            continue
        index = index[np.argsort(times[index], kind="stable")]
        t = times[index]
        wanted = t + gap
        above = np.minimum(np.searchsorted(t, wanted), len(t) - 1)
        candidates = np.stack([np.maximum(above - 1, 0), above])  # (2, n)
        error = np.round(np.abs(t[candidates] - wanted), 9)
        error[t[candidates] <= t] = np.inf
        best = candidates[np.argmin(error, axis=0), np.arange(len(t))]
        good = error.min(axis=0) <= gap / 2 + 1e-9
        partners[index[good]] = index[best[good]]
    return partners


@dataclass(frozen=True)
class UnlabeledFrames:
    """The unlabeled frames and, for each, the index of its flow partner (-1: none)."""

    files: tuple[Path, ...]
    partners: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    def usable(self, pairs: bool) -> np.ndarray:
        """Indices of the frames a task set can use: all, or those with a flow partner."""
        return np.flatnonzero(self.partners >= 0) if pairs else np.arange(len(self.files))


def load_frames(roots: Sequence[Path], issues: DataIssues, *, flow_gap: float | None,
                fps_override: float | None = None, show_progress: bool = True,
                workers: int = 1) -> UnlabeledFrames:
    """The frames of the preprocessed `roots` with landmarks (missing ones computed and
    cached) and their flow partners `flow_gap` seconds later (None: no pairing)."""
    frames = [frame for root in roots for frame in scan_frames(root, fps_override)]
    if not frames:
        raise UserError("--unlabeled: no aligned images found in "
                        + ", ".join(str(r / IMAGES_DIR) for r in roots))
    table = LabelTable(Path("/"), tuple(str(f.path) for f in frames),
                       np.zeros((len(frames), 0), dtype=np.uint8), ())
    kept = set(check_frames(table, issues, show_progress=show_progress, workers=workers).paths)
    frames = [f for f in frames if str(f.path) in kept]
    partners = np.full(len(frames), -1, dtype=np.int64)
    if flow_gap is not None:
        untimed = [f for f in frames if np.isnan(f.time) and f.path.stem.isdigit()]
        if untimed and fps_override is None:
            raise UserError(f"--unlabeled {untimed[0].root}: no frame rate recorded for video"
                            f" {untimed[0].video!r} (no videos.json from preprocess): pass"
                            " --unlabeled-fps")
        partners = flow_partners([(f.root, f.video) for f in frames],
                                 np.array([f.time for f in frames]), flow_gap)
        if not (partners >= 0).any():
            raise UserError(f"--unlabeled: no two frames of a video are about {flow_gap:g} s"
                            " apart; change --aux-flow-gap or preprocess without --fps")
    return UnlabeledFrames(tuple(f.path for f in frames), partners)


# -- torch dataset ------------------------------------------------------------------------------

class UnlabeledDataset(torch.utils.data.Dataset):
    """Items of `frames` at `indices`: {'image' (3, S, S) in [-1, 1], 'landmarks' (68, 2),
    'flow' (2, F, F) when `flow_size` is set} or {'bad': (path, reason)} (never raises)."""

    def __init__(self, frames: UnlabeledFrames, indices: np.ndarray, image_size: int,
                 flow_size: int | None):
        self.frames = frames
        self.indices = np.asarray(indices, dtype=np.int64)
        self.image_size = image_size
        self.flow_size = flow_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        i = int(self.indices[k])
        path = self.frames.files[i]
        try:
            rgb = read_rgb(path)
            landmarks = np.load(landmark_file(path), allow_pickle=False)
            if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
                raise ValueError(f"landmarks must be 68x2 finite numbers, not {landmarks.shape}")
            item = {"image": face_tensor(rgb, self.image_size),
                    "landmarks": torch.from_numpy(landmarks.astype(np.float32))}
            if self.flow_size is not None:
                partner = read_rgb(self.frames.files[self.frames.partners[i]])
                item["flow"] = torch.from_numpy(flow_target(rgb, partner, self.flow_size))
        except _READ_ERRORS as exc:
            return {"bad": (str(path), f"unreadable unlabeled frame ({exc})")}
        return item


@dataclass
class UnlabeledBatch:
    """Collated unlabeled frames; `flows` is None without the flow task."""

    images: torch.Tensor
    landmarks: torch.Tensor
    flows: torch.Tensor | None
    bad: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device) -> UnlabeledBatch:
        move = {"device": device, "non_blocking": True}
        return UnlabeledBatch(self.images.to(**move), self.landmarks.to(**move),
                              None if self.flows is None else self.flows.to(**move), self.bad)


def collate_unlabeled(items: list[dict]) -> UnlabeledBatch:
    good = [item for item in items if "bad" not in item]
    bad = [item["bad"] for item in items if "bad" in item]
    if not good:
        return UnlabeledBatch(torch.zeros(0, 3, 1, 1), torch.zeros(0, 68, 2), None, bad)
    flows = torch.stack([item["flow"] for item in good]) if "flow" in good[0] else None
    return UnlabeledBatch(torch.stack([item["image"] for item in good]),
                          torch.stack([item["landmarks"] for item in good]), flows, bad)
