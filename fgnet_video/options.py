"""The options of an analysis, with every default and its help text (one place each).

    AnalyzeOptions
      sampling: SamplingSettings   which frames (fps, start, end)
      face:     FaceSettings       how faces are found, followed and aligned
      model:    ModelOptions       which weights, on which device, how fast
      table_format, columns, overlay, overwrite, jobs, ray

    EventSettings                  what counts as an AU event (`summarize`)

`analyze_video(path, **options)`, `fgnet_video.study.run.analyze_inputs(...)` and the
`analyze` / `predict` commands all take these; `AnalyzeOptions.from_kwargs` builds one from
flat keyword arguments (the names of the fields of any of the four classes), which is what
the CLI does with the options a user gave. Imports nothing heavy (the CLI reads it before
torch is loaded).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from fgnet_video.aus import AU_SETS, DEFAULT_DATASET, names
from fgnet_video.errors import UserError
from fgnet_video.settings import setting, split_settings

DetectorKind = Literal["hog", "cnn", "auto"]
DETECTOR_KINDS: tuple[str, ...] = ("hog", "cnn", "auto")
# What `--detector auto` runs, on every device (the measurements behind it: docs/analyze.md,
# "Which detector").
AUTO_DETECTOR = "cnn"


def detector_for(kind: str) -> str:
    """The detector that runs for `kind`: "hog", "cnn", or for "auto" AUTO_DETECTOR."""
    return AUTO_DETECTOR if kind == "auto" else kind


AlignMethod = Literal["exact", "fast"]
ALIGN_METHODS: tuple[str, ...] = ("exact", "fast")
PRECISION_NAMES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
TABLE_FORMATS: tuple[str, ...] = ("csv", "parquet")
TABLE_LAYOUTS: tuple[str, ...] = ("fgnet", "openface")
# The files of one analysed recording beside its table NAME.csv (`fgnet_video.analysis.sidecar`)
SIDECAR_SUFFIX = ".json"  # the run record
FAILED_SUFFIX = ".failed.json"  # why the last run of the input failed (studies)
OVERLAY_SUFFIX = ".overlay.mp4"
TRACKS_SUFFIX = ".tracks.npz"
# The known weights are the released models, one per AU set; `-w` defaults to this one.
DEFAULT_WEIGHTS = DEFAULT_DATASET
KNOWN_WEIGHTS_HELP = f"known name ({', '.join(sorted(AU_SETS))}: downloaded once into the cache)"
# dlib's detectors find faces from this box side (px) up; smaller ones need an upscaled pass.
DETECTOR_MIN_FACE = 80
# The smallest --min-face: the small-face pass scans frames upscaled DETECTOR_MIN_FACE /
# min_face, so this bounds it at 4x (a 1080p frame becomes 7680x4320); FG-Net's crop of a
# 20 px face is already upsampled about 5.6x.
SMALLEST_MIN_FACE = 20.0
# Rows of faces under this box side (px) are flagged small_face: FG-Net's 256 px crop of them
# is upsampled (the FFHQ crop spans about 2.3 box sides: 1.4x at 80 px, 2.8x at 40 px), so
# their scores rest on less detail. It is the detector's limit, so the flag marks exactly
# the faces of the upscaled pass.
SMALL_FACE_SIDE = float(DETECTOR_MIN_FACE)


@dataclass(frozen=True)
class SamplingSettings:
    """Which frames are analysed: every frame, or `fps` per second, between start and end (s).

    Selection works on timestamps (see `fgnet_video.media.video.FrameSelector`)."""

    fps: float | None = setting(
        None, "Analyse this many frames per second (by timestamp); default every frame.")
    start: float | None = setting(None, "Start time (s).")
    end: float | None = setting(None, "End time (s).")

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise UserError(f"--fps must be a positive number, got {self.fps}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise UserError(f"--{name} must be a number of seconds >= 0, got {value}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise UserError(f"--end ({self.end}) must be after --start ({self.start})")


def parse_person(text: str) -> tuple[str, str]:
    """(name, photo path) of a named person given as 'NAME=PHOTO'; UserError when malformed."""
    name, sep, photo = text.partition("=")
    if not sep or not name.strip() or not photo:
        raise UserError(f"--people takes NAME=PHOTO, not {text!r}")
    return name.strip(), photo


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found, followed and aligned.

    downscale: factor of the frame copy the detector scans; None = the passes of
    `fgnet_video.face.detect.detection_passes` (a full-size pass for faces of
    DETECTOR_MIN_FACE px and more, an upscaled one for smaller faces down to min_face_size).
    aligned_size: side of the aligned crop (FG-Net reads 256).
    """

    detector: DetectorKind = setting(
        "auto", "Face detector: hog (dlib's frontal HOG, CPU), cnn (dlib's MMOD CNN in "
                "PyTorch on the model's device: sees turned faces) or auto (cnn).")
    detect_every: int = setting(10, "Run the detector on every Nth frame (frames 0, N, 2N, "
                                    "...) and whenever tracking is unsure; track in between.")
    downscale: float | None = setting(None, "Factor of the one frame copy the detector scans "
                                            "(default: full size, plus an upscaled pass for "
                                            f"faces under {DETECTOR_MIN_FACE} px).")
    min_face_size: float = setting(40.0, "Smallest face side in pixels (faces under "
                                   f"{DETECTOR_MIN_FACE} px take a second, upscaled "
                                   "detection pass).")
    max_faces: int | None = setting(None, "At most this many faces per frame (largest first).")
    min_confidence: float = setting(
        0.0, "Detector score a face needs (HOG margin or CNN confidence; 0 is dlib's default; "
             "0.3-0.5 drops face-like patterns such as badges).")
    align_method: AlignMethod = setting("fast", "Alignment: one warp (fast) or the release's "
                                                "PIL recipe (exact, slow).")
    aligned_size: int = setting(256, "Side of the aligned crop (FG-Net reads 256).")
    face_workers: int | str = setting(
        "auto", "Face detection processes per recording: N >= 2 runs the detector ahead in N "
                "processes beside the tracking thread, 1 in that thread (same results for "
                "any number; auto: one per 4 cores, of each recording's share with --jobs, "
                "1-4).")
    same_person_distance: float = setting(
        0.5, "Face tracks are one person (person_id) when their dlib face descriptors are "
             "closer than this (Euclidean; dlib's 0.6 is for frontal photos: video faces "
             "turn; lower: fewer merges).")
    people: tuple[str, ...] = setting(
        (), "A named person, NAME=PHOTO (repeatable): tracks whose face matches the largest "
            "face of PHOTO get that person's id, and NAME in the person column.")

    def __post_init__(self) -> None:
        if self.detector not in DETECTOR_KINDS:
            raise UserError(f"unknown face detector {self.detector!r} (use hog, cnn or auto)")
        if self.align_method not in ALIGN_METHODS:
            raise UserError(f"unknown alignment method {self.align_method!r} (use fast or exact)")
        if self.detect_every < 1:
            raise UserError(f"detect_every must be at least 1, got {self.detect_every}")
        if self.downscale is not None and not self.downscale > 0:
            raise UserError(f"downscale must be positive, got {self.downscale}")
        if not (math.isfinite(self.min_face_size)
                and self.min_face_size >= SMALLEST_MIN_FACE):
            raise UserError(
                f"--min-face must be a number of pixels from {SMALLEST_MIN_FACE:g} up, got "
                f"{self.min_face_size:g}: the detector sees faces from {DETECTOR_MIN_FACE} px, "
                f"so --min-face {SMALLEST_MIN_FACE:g} already scans frames upscaled "
                f"{DETECTOR_MIN_FACE / SMALLEST_MIN_FACE:g}x")
        if not math.isfinite(self.min_confidence):
            raise UserError(f"--min-confidence must be a finite number, got {self.min_confidence}")
        if self.downscale is not None and not math.isfinite(self.downscale):
            raise UserError(f"--downscale must be a finite number, got {self.downscale}")
        if self.max_faces is not None and self.max_faces < 1:
            raise UserError(f"max_faces must be at least 1, got {self.max_faces}")
        object.__setattr__(self, "face_workers", parse_count(self.face_workers,
                                                             "--face-workers"))
        if self.aligned_size < 8:
            raise UserError(f"aligned_size must be at least 8, got {self.aligned_size}")
        if not (math.isfinite(self.same_person_distance) and self.same_person_distance > 0):
            raise UserError("same_person_distance must be a positive number, got "
                            f"{self.same_person_distance}")
        object.__setattr__(self, "people", tuple(self.people))
        names = [parse_person(text)[0] for text in self.people]
        if len(set(names)) != len(names):
            raise UserError(f"--people names must differ, got {names}")


MAX_COUNT = 4096  # the most faces per batch or worker processes anyone can mean


def parse_count(value: int | str, option: str) -> int | str:
    """An int from 1 to MAX_COUNT, or 'auto'; UserError (naming `option`) otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit():
            raise UserError(f"{option} must be a positive integer or 'auto', not {value!r}")
        value = int(text)
    if not 1 <= value <= MAX_COUNT:
        raise UserError(f"{option} must be from 1 to {MAX_COUNT} (or auto), not {value}")
    return int(value)


def parse_batch_size(value: int | str) -> int | str:
    """A positive int, or 'auto'; UserError otherwise."""
    return parse_count(value, "--batch-size")


def face_worker_count(value: int | str, cores: int | None = None, recordings: int = 1) -> int:
    """The face detection processes of a recording (1: detection in the tracking thread):
    `value`, or for 'auto' one per 4 CPU cores of the recording's share of them (`cores` /
    `recordings` analysed at once), 1 to 4 (1 on a 2-core machine, where the model and
    decoding want the cores too)."""
    if value != "auto":
        return int(value)
    cores = cores or os.cpu_count() or 1
    return max(1, min(4, cores // (4 * max(1, recordings))))


@dataclass(frozen=True)
class ModelOptions:
    """Which FG-Net weights run, where and how (the keywords of
    `InferenceEngine.from_weights`)."""

    weights: str = setting(DEFAULT_WEIGHTS, f"K{KNOWN_WEIGHTS_HELP[1:]}, a converted .safetensors "
                           "file, or the release's model.pth (with --psp).")
    psp: str | None = setting(None, "pSp encoder.pt: supplies latent_avg for a release "
                                    "model.pth.")
    dataset: str | None = setting(None, f"AU set of a release model.pth (default "
                                        f"{DEFAULT_DATASET}); a converted file carries its "
                                        "own.")
    features: str | None = setting(None, "Feature groups to use, e.g. 'early,middle' (the "
                                         "paper's '- Late' ablation, faster).")
    offline: bool | None = setting(None, "Never download weights (also FGNET_VIDEO_OFFLINE=1).")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    precision: str = setting("auto", "Inference precision (auto: bf16 on GPU, fp32 on CPU).")
    batch_size: int | str = setting(
        "auto", "Faces per forward pass, or auto: on a GPU the largest batch (up to 64) that "
                "fits its free memory; on the CPU up to 16, as many as fit in the available "
                "memory (about 0.6 GB per face for the full-size model).")
    channels_last: bool = setting(False, "NHWC memory format for the encoder and interpreter "
                                         "convolutions.")
    cuda_graphs: bool = setting(False, "Replay captured CUDA graphs instead of launching every "
                                       "kernel (CUDA only; a graph per batch-size bucket).")
    compile: bool = setting(False, "torch.compile the model (slow first batch per batch-size "
                                   "bucket).")

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", parse_batch_size(self.batch_size))
        if self.precision.lower() not in PRECISION_NAMES:
            raise UserError(f"unknown precision {self.precision!r} (use "
                            f"{', '.join(PRECISION_NAMES)})")
        if self.dataset is not None and self.dataset.lower() not in AU_SETS:
            raise UserError(f"unknown dataset {self.dataset!r} (use {names(AU_SETS)})")

    def files(self) -> list[Path]:
        """The model files these options name that exist (inputs no output may replace)."""
        return [Path(f) for f in (self.weights, self.psp) if f is not None and Path(f).is_file()]

    def engine_kwargs(self) -> dict[str, Any]:
        """These options as keywords of `InferenceEngine.from_weights`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class AnalyzeOptions:
    """Everything about an analysis except its inputs and output paths."""

    sampling: SamplingSettings = setting(factory=SamplingSettings)
    face: FaceSettings = setting(factory=FaceSettings)
    model: ModelOptions = setting(factory=ModelOptions)
    table_format: str | None = setting(
        None, "Table format: csv or parquet (default: parquet for an -o FILE.parquet, else "
              "csv).")
    columns: str = setting(
        "fgnet", "Table columns: fgnet (scores and 0/1 decisions, AU01_score, AU01) or openface "
                 "(OpenFace's layout: frame, face_id, timestamp, confidence, success, AU01_c, "
                 "...; decisions only).")
    overlay: bool = setting(False, "Also write an overlay video (boxes, ids, AU bars).")
    overwrite: bool = setting(False, "Redo inputs whose outputs are complete.")
    shard: str | None = setting(
        None, "Analyse only shard K of N of the inputs (K/N, e.g. 3/10; by a hash of each "
              "output name, so N array jobs cover every input once).")
    save_tracks: bool = setting(False, "Also save each recording's face tracks "
                                       f"(NAME{TRACKS_SUFFIX}) for a later --tracks run.")
    tracks: str | None = setting(
        None, "Replay face tracks saved by --save-tracks (a file for one input, a folder of "
              f"NAME{TRACKS_SUFFIX} for --out-dir): no detection, tracking or landmarks, the "
              "same faces as the run that saved them.")
    jobs: int = setting(1, "Recordings analysed at once, each in a worker process (decode, "
                           "faces, outputs), all feeding one model loaded once on the "
                           "device.")
    ray: str | None = setting(
        None, "Run the study on a Ray cluster, one task per recording: ADDRESS as ray.init "
              "takes it (auto, HOST:6379, ray://HOST:10001); a bare --ray connects to "
              "RAY_ADDRESS or a cluster started here, else starts a local one. With --out-dir; "
              "needs pip install 'fgnet-video[ray]'.")
    smooth: float | None = setting(
        None, "Smooth each face's 0/1 AU decisions with a centred majority window of this many "
              "seconds (scores unchanged; ties keep the frame's own decision); default off.")

    def __post_init__(self) -> None:
        if self.table_format is not None and self.table_format not in TABLE_FORMATS:
            raise UserError(f"unknown format {self.table_format!r} (use csv or parquet)")
        if self.columns not in TABLE_LAYOUTS:
            raise UserError(f"unknown columns {self.columns!r} (use fgnet or openface)")
        if self.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {self.jobs}")
        if self.ray is not None and self.jobs > 1:
            raise UserError("--jobs goes without --ray: on Ray every recording is a task, and "
                            "the cluster's CPUs and GPUs set how many run at once")
        if self.smooth is not None and not (math.isfinite(self.smooth) and self.smooth >= 0):
            raise UserError(f"--smooth must be a number of seconds >= 0, got {self.smooth}")

    @classmethod
    def from_kwargs(cls, **values: Any) -> AnalyzeOptions:
        """Options from flat keywords: any field name of SamplingSettings, FaceSettings,
        ModelOptions or AnalyzeOptions (e.g. fps=5, min_face_size=60, weights='disfa',
        overlay=True); unknown names are a UserError."""
        nested = {"sampling", "face", "model"}
        own_fields = [f.name for f in fields(cls) if f.name not in nested]
        sampling, face, model, own = split_settings(
            values, SamplingSettings, FaceSettings, ModelOptions, own_fields)
        return cls(SamplingSettings(**sampling), FaceSettings(**face), ModelOptions(**model),
                   **own)



@dataclass(frozen=True)
class EventSettings:
    """What counts as an event of an AU (`fgnet_video.reports.summary`): a run of active frames;
    runs separated by at most `bridge` seconds are joined first, then events shorter than
    `min_event` seconds are dropped."""

    min_event: float = setting(0.0, "Drop events shorter than this many seconds (after "
                                    "bridging).")
    bridge: float = setting(0.0, "Join events separated by at most this many seconds of "
                                 "inactive or missing frames.")

    def __post_init__(self) -> None:
        for name in ("min_event", "bridge"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"--{name.replace('_', '-')} must be a number of seconds >= 0, "
                                f"got {value}")
