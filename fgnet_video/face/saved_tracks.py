"""Face tracks saved from one analysis and replayed in the next (`analyze --save-tracks`,
`analyze --tracks`).

A tracks file (`NAME.tracks.npz`, compressed NumPy arrays) holds, for one recording and one
frame selection:

    frames, times          (F,)  every analysed frame's index and timestamp (faces or not)
    face_frame             (N,)  the frame index of each face
    face_id                (N,)  its track id
    person_id, person      (N,)  its person id (-1: none) and name ('': none), so replayed
                                 rows keep them
    box                    (N, 4) x, y, w, h in frame pixels
    landmarks              (N, 68, 2) float64, frame pixels
    confidence, detected   (N,)  the detector score, whether the box was detected
    meta                   JSON: source file name and size, sampling and face settings

Replaying (`TrackReplay`) skips detection, tracking and landmark fitting: each frame's faces
are aligned from the stored landmarks, so the rows are identical to those of the run that
saved the tracks, whatever model scores them (the released BP4D and DISFA models on one
study, or a fine-tuned one, pay for the face stage once).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fgnet_video.errors import UserError
from fgnet_video.face.landmarks import Box
from fgnet_video.face.pipeline import Face, align_tracked
from fgnet_video.face.track import TrackedFace
from fgnet_video.media.video import Frame
from fgnet_video.options import FaceSettings, SamplingSettings

FORMAT_VERSION = 2  # 2: person_id and person
_NO_PERSON = -1  # person_id of a face without one


def _source_facts(source: Path) -> dict:
    return {"name": source.name, "bytes": source.stat().st_size}


class _SavedFace(NamedTuple):
    """What the tracks file keeps of a face (not its aligned crop, which replay redoes)."""

    frame_index: int
    face_id: int
    person_id: int | None
    person: str | None
    box: Box
    landmarks: np.ndarray
    confidence: float
    detected: bool


class TrackWriter:
    """Collects the faces of each analysed frame, in order; `save(path)` writes the file.
    Only what the file keeps is held (about 1 KB a face), not the faces' aligned crops."""

    def __init__(self, source: str | os.PathLike, sampling: SamplingSettings,
                 face: FaceSettings):
        self.meta = {"version": FORMAT_VERSION, "source": _source_facts(Path(source)),
                     "sampling": asdict(sampling), "face": asdict(face)}
        self.frames: list[int] = []
        self.times: list[float] = []
        self.faces: list[_SavedFace] = []

    def add(self, frame: Frame, faces: list[Face]) -> None:
        self.frames.append(frame.index)
        self.times.append(frame.time)
        self.faces.extend(_SavedFace(f.frame_index, f.face_id, f.person_id, f.person, f.box,
                                     f.landmarks, f.confidence, f.detected) for f in faces)

    def save(self, path: str | os.PathLike) -> None:
        """Write the tracks to `path` (the caller owns its atomic placement)."""
        faces = self.faces
        with open(path, "wb") as handle:
            np.savez_compressed(
                handle,
                frames=np.asarray(self.frames, np.int64),
                times=np.asarray(self.times, np.float64),
                face_frame=np.asarray([f.frame_index for f in faces], np.int64),
                face_id=np.asarray([f.face_id for f in faces], np.int64),
                person_id=np.asarray([_NO_PERSON if f.person_id is None else f.person_id
                                      for f in faces], np.int64),
                person=np.asarray([f.person or "" for f in faces], str),
                box=np.asarray([f.box for f in faces], np.float64).reshape(-1, 4),
                landmarks=np.asarray([f.landmarks for f in faces],
                                     np.float64).reshape(-1, 68, 2),
                confidence=np.asarray([f.confidence for f in faces], np.float64),
                detected=np.asarray([f.detected for f in faces], bool),
                meta=np.asarray(json.dumps(self.meta)),
            )


# (name, trailing shape) of the per-face arrays, each with one row per face
FACE_ARRAYS = {"face_frame": (), "face_id": (), "person_id": (), "person": (), "box": (4,),
               "landmarks": (68, 2), "confidence": (), "detected": ()}
MAX_COORDINATE = 1e5  # px: landmarks and boxes beyond this lie in no frame


def read_tracks(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and meta of a tracks file, checked: UserError naming the file and what is
    wrong with it (not an archive, cut off, a missing or mis-shaped array, coordinates out
    of any frame, one face id twice in a frame, meta that is not a JSON object)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise UserError(f"{path}: a single NumPy array, not a tracks file (.npz)")
            arrays = {key: data[key] for key in data.files}
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        what = ("holds Python objects or is no NumPy file at all"
                if "pickle" in str(exc) else "is cut off or damaged")
        raise UserError(f"{path}: not a readable tracks file (it {what})") from None
    missing = [name for name in ("meta", "frames", "times", *FACE_ARRAYS) if name not in arrays]
    if missing:
        raise UserError(f"{path}: not a tracks file: no {', '.join(missing)} array")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: damaged tracks file: its meta is not a JSON object")
    for name in ("frames", "face_frame", "face_id", "person_id"):
        if arrays[name].ndim != 1 or arrays[name].dtype.kind not in "iu":
            raise UserError(f"{path}: damaged tracks file: {name} is not a list of whole "
                            "numbers")
    faces = len(arrays["face_frame"])
    for name, trailing in FACE_ARRAYS.items():
        if arrays[name].shape != (faces, *trailing):
            raise UserError(f"{path}: damaged tracks file: {name} has shape "
                            f"{arrays[name].shape}, not {(faces, *trailing)}")
    for name in ("box", "landmarks", "confidence", "times"):
        values = arrays[name]
        if values.dtype.kind not in "fiu" or not np.isfinite(values).all():
            raise UserError(f"{path}: damaged tracks file: {name} holds non-numbers")
    for name in ("box", "landmarks"):
        farthest = np.abs(arrays[name]).max(initial=0)
        if farthest > MAX_COORDINATE:
            raise UserError(f"{path}: damaged tracks file: {name} lies outside any frame "
                            f"(up to {farthest:.3g} px)")
    pairs, counts = np.unique(np.stack([arrays["face_frame"], arrays["face_id"]], axis=1),
                              axis=0, return_counts=True)
    if (counts > 1).any():
        frame, face = (int(v) for v in pairs[np.argmax(counts > 1)])
        raise UserError(f"{path}: damaged tracks file: frame {frame} holds face id {face} "
                        "more than once")
    if not set(arrays["face_frame"].tolist()) <= set(arrays["frames"].tolist()):
        raise UserError(f"{path}: damaged tracks file: faces in frames it does not list")
    return arrays, meta


class TrackReplay:
    """The face stage of a run that replays saved tracks: `process(frame)` gives the frame's
    faces aligned from the stored landmarks (the `FacePipeline.process` contract)."""

    def __init__(self, path: str | os.PathLike, source: str | os.PathLike,
                 sampling: SamplingSettings, face: FaceSettings):
        path = Path(path)
        arrays, meta = read_tracks(path)
        if meta.get("version") != FORMAT_VERSION:
            raise UserError(f"{path}: tracks file version {meta.get('version')} is not "
                            f"{FORMAT_VERSION}")
        if meta.get("source") != _source_facts(Path(source)):
            raise UserError(f"{path}: the tracks were saved from {meta.get('source')}, not "
                            f"from {Path(source).name}")
        if meta.get("sampling") != asdict(sampling):
            raise UserError(f"{path}: the tracks were saved with sampling "
                            f"{meta.get('sampling')}; give the same --fps/--start/--end")
        self.path, self.face = path, face
        self.frames = set(arrays["frames"].tolist())
        self.by_frame: dict[int, list[tuple[TrackedFace, int | None, str | None]]] = \
            defaultdict(list)
        for k, frame_index in enumerate(arrays["face_frame"].tolist()):
            person_id = int(arrays["person_id"][k])
            self.by_frame[frame_index].append((TrackedFace(
                int(arrays["face_id"][k]), tuple(float(v) for v in arrays["box"][k]),
                arrays["landmarks"][k], float(arrays["confidence"][k]),
                bool(arrays["detected"][k])), None if person_id == _NO_PERSON else person_id,
                str(arrays["person"][k]) or None))

    def process(self, frame: Frame) -> list[Face]:
        if frame.index not in self.frames:
            raise UserError(f"{self.path}: frame {frame.index} is not in the saved tracks "
                            "(another recording or frame selection?)")
        return [align_tracked(frame, tracked, self.face.aligned_size, self.face.align_method,
                              person_id, person)
                for tracked, person_id, person in self.by_frame.get(frame.index, [])]
