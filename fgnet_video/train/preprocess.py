"""`preprocess`: images, image folders and videos -> FG-Net's training-data layout.

Every image (or sampled video frame) goes through the release's recipe
(`fgnet_video.face.still.ReleaseAligner`): the largest HOG face, its 68 landmarks, the exact
FFHQ alignment, and landmarks re-detected on the aligned crop.

Outputs under the output folder, mirroring the input tree:

    aligned_images/<relative path>.jpg       aligned face, JPEG quality 95
    aligned_landmarks/<relative path>.npy    (68, 2) float32 landmarks in aligned pixels
    no_face.txt                              the inputs where no face was found: an image's
                                             relative path with its extension, a video
                                             frame as <video path>/<frame index, 6 digits>
    videos.json                              per video folder: {"fps": average frame rate,
                                             "source": file name}, so frame i is at i / fps s

A folder's files are named relative to that folder; a video becomes a folder named after
its stem holding <frame index, 6 digits>.jpg. Each file is written under a temporary name and
renamed when complete; a rerun skips every item whose two outputs exist or which is listed in
no_face.txt, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fgnet_video.analysis.guard import OutputClash, check_outputs
from fgnet_video.atomic import atomic_path, save_npy, write_json
from fgnet_video.errors import UserError
from fgnet_video.face.still import ReleaseAligner
from fgnet_video.media.images import IMAGE_SUFFIXES, read_rgb
from fgnet_video.media.video import VIDEO_SUFFIXES, FrameSelector, VideoReader, probe

IMAGES_DIR, LANDMARKS_DIR, NO_FACE_FILE = "aligned_images", "aligned_landmarks", "no_face.txt"
VIDEOS_FILE = "videos.json"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Source:
    """One input file, the relative name (no extension) its outputs get, and the relative
    name (with extension) that no_face.txt lists it by."""

    path: Path
    key: str
    is_video: bool
    name: str

    def frame(self, index: int) -> tuple[str, str]:
        """(output key, no_face.txt name) of the video frame with this index."""
        return f"{self.key}/{index:06d}", f"{self.name}/{index:06d}"


@dataclass
class PreprocessReport:
    """What a preprocess run did."""

    written: int = 0
    skipped: int = 0  # already complete (or known to have no face) from an earlier run
    no_face: list[str] = field(default_factory=list)  # inputs without a face (names), this run
    truncated: list[str] = field(default_factory=list)  # videos that broke off, with reason
    no_face_file: Path | None = None


# -- inputs ---------------------------------------------------------------------------------

def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_sources(sources: Iterable[str | os.PathLike], output: Path) -> list[Source]:
    """The files to process with their output names; raises UserError on bad input.

    A file is an image (by suffix) or else a video; a folder contributes its images and
    videos (recursively, hidden files and the output folder excluded), named relative to it.
    """
    found: list[Source] = []
    output = output.resolve()
    for source in map(Path, sources):
        if not source.exists():
            raise UserError(f"{source}: no such file or folder")
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                relative = path.relative_to(source)
                if (not path.is_file() or any(p.startswith(".") for p in relative.parts)
                        or output in path.resolve().parents):
                    continue
                if _is_image(path) or _is_video(path):
                    found.append(Source(path, relative.with_suffix("").as_posix(),
                                        _is_video(path), relative.as_posix()))
        else:
            found.append(Source(source, source.stem, not _is_image(source), source.name))
    if not found:
        raise UserError("no images or videos found in the given sources")
    written = (output / IMAGES_DIR, output / LANDMARKS_DIR)
    for item in found:
        if any(folder in item.path.resolve().parents for folder in written):
            raise OutputClash(f"{item.path}: lies in {IMAGES_DIR}/ or {LANDMARKS_DIR}/ of the "
                              "output folder, which preprocess writes; copy it elsewhere or "
                              "choose another --output")
    seen: dict[str, Path] = {}
    for item in found:
        if item.key in seen:
            raise UserError(f"{seen[item.key]} and {item.path} would both be written as "
                            f"{IMAGES_DIR}/{item.key}.jpg; rename one or process them apart")
        seen[item.key] = item.path
    return found


# -- the per-image work ---------------------------------------------------------------------

def output_paths(root: Path, key: str) -> tuple[Path, Path]:
    """(aligned image .jpg, landmarks .npy) of an item."""
    return root / IMAGES_DIR / f"{key}.jpg", root / LANDMARKS_DIR / f"{key}.npy"


def check_plan(root: Path, items: list[Source]) -> None:
    """Refuse (OutputClash, nothing written) a plan whose fixed files or image outputs would
    replace an input, a file of a finished analysis, a link or a device (the output guard)."""
    units = [(item.path, [] if item.is_video else list(output_paths(root, item.key)))
             for item in items]
    units.append((None, [root / NO_FACE_FILE, root / VIDEOS_FILE]))
    check_outputs(units)


def _write(root: Path, key: str, aligned: np.ndarray, landmarks: np.ndarray) -> None:
    image_path, landmarks_path = output_paths(root, key)
    save_npy(landmarks_path, landmarks.astype(np.float32))
    with atomic_path(image_path) as tmp:
        Image.fromarray(aligned).save(tmp, quality=JPEG_QUALITY)


@dataclass(frozen=True)
class _Job:
    """One item: an image file to read, or a decoded video frame; `name` is how no_face.txt
    lists it."""

    key: str
    name: str
    path: Path | None = None
    image: np.ndarray | None = None


_worker_aligner: ReleaseAligner | None = None


def _run_job(job: _Job, root: Path, size: int) -> tuple[str, bool]:
    """Process one item (in a worker process or inline); returns (name, face found)."""
    global _worker_aligner
    if _worker_aligner is None or _worker_aligner.size != size:
        _worker_aligner = ReleaseAligner(size)
    image = job.image if job.image is not None else read_rgb(job.path)
    result = _worker_aligner(image)
    if result is not None:
        _write(root, job.key, *result)
    return job.name, result is not None


# -- the run --------------------------------------------------------------------------------

def _estimate_frames(path: Path, selector: FrameSelector) -> int:
    """Roughly how many frames the selector keeps (for the progress bar)."""
    info = probe(path)
    duration = info.duration or ((info.frame_count or 0) / info.fps if info.fps else 0.0)
    begin = selector.start or 0.0
    finish = min(selector.end, duration) if selector.end is not None else duration
    rate = selector.fps or info.fps or 0.0
    if selector.fps and info.fps:
        rate = min(selector.fps, info.fps)
    return max(int(round(max(finish - begin, 0.0) * rate)), 1)


def _read_no_face(root: Path) -> set[str]:
    path = root / NO_FACE_FILE
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def read_videos(root: Path) -> dict[str, dict]:
    """ROOT/videos.json: {video folder key: {'fps': float, 'source': name}} ({} when absent)."""
    path = root / VIDEOS_FILE
    if not path.is_file():
        return {}
    try:
        videos = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if not isinstance(videos, dict):
        raise UserError(f"{path}: expected a JSON object of video folders")
    return videos


def _record_video(root: Path, key: str, path: Path, fps: float | None) -> None:
    """Add (or refresh) a video's entry in ROOT/videos.json."""
    videos = read_videos(root)
    entry = {"fps": fps, "source": path.name}
    if videos.get(key) != entry:
        write_json(root / VIDEOS_FILE, {**videos, key: entry})


def _write_no_face(root: Path, names: set[str]) -> Path:
    path = root / NO_FACE_FILE
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in sorted(names)))
    return path


class _Runner:
    """Feeds jobs to `jobs` worker processes (or runs them inline) and collects results."""

    def __init__(self, root: Path, size: int, jobs: int) -> None:
        self.root, self.size, self.jobs = root, size, jobs
        self._pool: ProcessPoolExecutor | None = None
        self._pending: set[Future] = set()
        if jobs > 1:
            context = multiprocessing.get_context("spawn")  # the decode thread makes fork unsafe
            self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)

    def submit(self, job: _Job) -> Iterator[tuple[str, bool]]:
        """Start `job`; yields the results that are ready (bounded number in flight)."""
        if self._pool is None:
            yield _run_job(job, self.root, self.size)
            return
        self._pending.add(self._pool.submit(_run_job, job, self.root, self.size))
        if len(self._pending) >= 2 * self.jobs:
            done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)

    def drain(self) -> Iterator[tuple[str, bool]]:
        """Results of all remaining jobs."""
        while self._pending:
            done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)


def preprocess(sources: Iterable[str | os.PathLike], output: str | os.PathLike, *,
               fps: float | None = None, start: float | None = None, end: float | None = None,
               jobs: int = 1, size: int = 256,
               on_progress: Callable[[int], None] | None = None,
               on_total: Callable[[int], None] | None = None) -> PreprocessReport:
    """Align every image / sampled video frame of `sources` into `output` (see module doc).

    `fps`, `start`, `end` select video frames by timestamp; `jobs` worker processes share the
    work. `on_total(n)` gets the estimated item count, `on_progress(k)` each k items done.
    """
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    root = Path(output)
    FrameSelector(fps, start, end)  # validates the options before any work
    items = collect_sources(sources, root)
    check_plan(root, items)
    if on_total is not None:
        on_total(sum(_estimate_frames(s.path, FrameSelector(fps, start, end)) if s.is_video
                     else 1 for s in items))
    root.mkdir(parents=True, exist_ok=True)
    known_no_face = _read_no_face(root)
    report = PreprocessReport()
    tick = on_progress or (lambda _: None)

    def todo(key: str, name: str) -> bool:
        image_path, landmarks_path = output_paths(root, key)
        # no_face.txt lists names; files from before names had extensions list keys
        listed = name in known_no_face or key in known_no_face
        if listed or (image_path.is_file() and landmarks_path.is_file()):
            report.skipped += 1
            tick(1)
            return False
        return True

    def record(results: Iterable[tuple[str, bool]]) -> None:
        for name, found in results:
            if found:
                report.written += 1
            else:
                report.no_face.append(name)
            tick(1)

    runner = _Runner(root, size, jobs)
    try:
        for item in items:
            if not item.is_video:
                if todo(item.key, item.name):
                    record(runner.submit(_Job(item.key, item.name, path=item.path)))
                continue
            with VideoReader(item.path, fps=fps, start=start, end=end) as reader:
                for frame in reader:
                    key, name = item.frame(frame.index)
                    if todo(key, name):
                        record(runner.submit(_Job(key, name, image=frame.image)))
            _record_video(root, item.key, item.path, reader.info.fps)
            if reader.truncated:
                report.truncated.append(f"{item.path}: {reader.truncated}")
        record(runner.drain())
    finally:
        runner.close()
        if report.no_face:
            report.no_face_file = _write_no_face(root, known_no_face | set(report.no_face))
    report.no_face.sort()
    return report
