"""Known FG-Net weights: names, the cache folder and its manifest, fetch and convert on first use.

`--weights` takes a file (loaded as is: a converted `.safetensors`, or a release `model.pth`
with `--psp`) or a known name (`bp4d`, `disfa`). A known name resolves to
`<cache>/<name>.safetensors`; when that is missing, the release's `model.pth` and the pSp FFHQ
`encoder.pt` are downloaded from Google Drive into the cache, converted once, and removed.

Cache (`fgnet_video.cache.cache_dir`): $FGNET_VIDEO_HOME, else $XDG_CACHE_HOME/fgnet-video,
else ~/.cache/fgnet-video. Fetching and converting hold the cache's `.lock` file, so parallel
jobs on one machine wait for the first instead of downloading the same file twice.
Trust on first use: the release publishes no checksums, so the size and sha256 of each file are
recorded in `manifest.json` when it is first downloaded, converted or found in the cache, and
every later load (and any re-download) is checked against that record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from fgnet_video.atomic import atomic_path, file_sha256
from fgnet_video.cache import cache_dir, file_lock
from fgnet_video.errors import OutputClash, UserError
from fgnet_video.options import DEFAULT_WEIGHTS
from fgnet_video.paths import write_target_problem
from fgnet_video.weights.checkpoints import load_model, save_converted
from fgnet_video.weights.download import NotTheFile, download, drive_url, partial_path
from fgnet_video.weights.formats import check_torch_archive
from fgnet_video.weights.loaded import LoadedModel
from fgnet_video.weights.metadata import read_converted_metadata

OFFLINE_ENV = "FGNET_VIDEO_OFFLINE"
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class ReleaseFile:
    """A file of the public release: its name in the cache and its Google Drive id."""

    filename: str
    drive_id: str
    title: str


@dataclass(frozen=True)
class KnownWeights:
    """A known name: which release files make it, converted to `<name>.safetensors`."""

    name: str
    model: ReleaseFile
    psp: ReleaseFile

    @property
    def filename(self) -> str:
        return f"{self.name}.safetensors"

    @property
    def release_files(self) -> tuple[ReleaseFile, ReleaseFile]:
        return self.model, self.psp


PSP_FFHQ = ReleaseFile("psp-ffhq-encoder.pt", "1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0",
                       "pSp FFHQ encoder.pt")
KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    "bp4d": KnownWeights("bp4d", ReleaseFile("fgnet-bp4d-model.pth",
                                             "1mwOq1gceGTKvcxN0EJywY9VTuXvASgUZ",
                                             "FG-Net BP4D model.pth"), PSP_FFHQ),
    "disfa": KnownWeights("disfa", ReleaseFile("fgnet-disfa-model.pth",
                                               "1wTeqUNkhi-ONXXFJ4K6AozyOxyHTHog-",
                                               "FG-Net DISFA model.pth"), PSP_FFHQ),
}


def offline_mode(offline: bool | None = None) -> bool:
    """`offline` when given, else whether FGNET_VIDEO_OFFLINE is set to a true value."""
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# -- manifest ------------------------------------------------------------------------------

class Manifest:
    """`manifest.json` in the cache: {filename: {size, sha256, source, recorded}}."""

    def __init__(self, home: Path):
        self.path = home / MANIFEST_NAME
        self.files: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            return dict(json.loads(self.path.read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.path}: unreadable cache manifest ({exc}); delete it to "
                            "record the cached files afresh") from None

    def _write(self) -> None:
        text = json.dumps({"version": 1, "files": self.files}, indent=2, sort_keys=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text + "\n")

    def record(self, path: Path, source: str) -> None:
        self.files[path.name] = {
            "size": path.stat().st_size,
            "sha256": file_sha256(path),
            "source": source,
            "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write()

    def forget(self, filenames: Iterable[str]) -> None:
        for name in filenames:
            self.files.pop(name, None)
        self._write()

    def mismatch(self, path: Path) -> str | None:
        """How `path` differs from its record (size first, then sha256); None when it
        matches or has no record."""
        entry = self.files.get(path.name)
        if entry is None:
            return None
        size = path.stat().st_size
        if size != entry["size"]:
            return f"{size} bytes, recorded {entry['size']} on {entry['recorded']}"
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            return (f"sha256 {digest[:16]}..., recorded {entry['sha256'][:16]}... "
                    f"on {entry['recorded']}")
        return None


# -- fetch and convert -----------------------------------------------------------------------

def _known(names: Iterable[str]) -> list[KnownWeights]:
    """KnownWeights for each name ('all' means every one), in order, without repeats."""
    chosen: dict[str, KnownWeights] = {}
    for name in names:
        key = name.strip().lower()
        if key == "all":
            chosen |= KNOWN_WEIGHTS
        elif key in KNOWN_WEIGHTS:
            chosen[key] = KNOWN_WEIGHTS[key]
        else:
            raise UserError(f"unknown weights name {name!r} (known: "
                            f"{', '.join(KNOWN_WEIGHTS)}, or all)")
    return list(chosen.values())


def _redownload_hint(known: KnownWeights) -> str:
    return f"download again with: fgnet-video weights download {known.name} --force"


def _check_recorded(manifest: Manifest, path: Path, known: KnownWeights) -> None:
    problem = manifest.mismatch(path)
    if problem is not None:
        raise UserError(f"{path}: changed since it was recorded ({problem}); "
                        f"{_redownload_hint(known)}")


def _import_command(home: Path, known: KnownWeights) -> str:
    """The command that converts hand-fetched release files into the cache."""
    return (f"fgnet-video weights import model.pth --psp encoder.pt --dataset {known.name} "
            f"-o {home / known.filename}")


def _offline_error(home: Path, known: KnownWeights) -> UserError:
    return UserError(
        f"{known.name} weights are not in {home} and downloads are off (--offline or "
        f"{OFFLINE_ENV}=1): put the release's model.pth there as {known.model.filename} and "
        f"the pSp encoder.pt as {known.psp.filename}, or run: {_import_command(home, known)}"
    )


def _download_error(error: UserError, home: Path, known: KnownWeights) -> UserError:
    """A failed download's error, with what to do on a machine without internet access."""
    return UserError(
        f"{error}. Without internet access here: fetch the release's model.pth and the pSp "
        f"encoder.pt on another machine, copy them here, run: {_import_command(home, known)}, "
        f"and use --offline (or {OFFLINE_ENV}=1) so nothing is downloaded"
    )


def _guard_cache_file(path: Path) -> None:
    """A file the cache is about to get must be absent or a regular file: not a link, a
    folder or a device (OutputClash, as the output guard says it)."""
    problem = write_target_problem(path)
    if problem is not None:
        raise OutputClash(f"{path}: {problem}")


def _fetch(home: Path, manifest: Manifest, file: ReleaseFile, known: KnownWeights,
           progress: bool) -> None:
    """Download one release file into the cache (resuming a partial one) and check it
    against its record, or record it when it is new."""
    path = home / file.filename
    source = "placed in the cache"
    if path.exists():
        _check_recorded(manifest, path, known)
    else:
        source = f"gdrive:{file.drive_id}"
        _guard_cache_file(path)
        try:
            download(drive_url(file.drive_id), path, label=file.title, progress=progress,
                     check=check_torch_archive)
        except NotTheFile:
            raise
        except UserError as exc:
            raise _download_error(exc, home, known) from None
        problem = manifest.mismatch(path)
        if problem is not None:
            path.unlink()
            raise UserError(f"{file.title}: the downloaded file differs from the one recorded "
                            f"before ({problem}); if the release changed, trust the new file "
                            f"with: fgnet-video weights download {known.name} --force")
    if path.name not in manifest.files:
        manifest.record(path, source=source)


def _convert(home: Path, known: KnownWeights, progress: bool) -> Path:
    """Release model.pth + pSp encoder.pt -> one converted `<name>.safetensors`."""
    target = home / known.filename
    _guard_cache_file(target)
    console = Console(stderr=True)
    shown = progress and console.is_terminal
    with console.status(f"converting {known.name} weights") if shown else nullcontext():
        try:
            loaded = load_model(home / known.model.filename, psp=home / known.psp.filename,
                                dataset=known.name)
        except UserError as exc:
            raise UserError(f"{exc}; {_redownload_hint(known)}") from None
        sources = loaded.metadata["sources"]
        sources["model"]["drive_id"] = known.model.drive_id
        sources["psp"]["drive_id"] = known.psp.drive_id
        save_converted(target, loaded.model, loaded.dataset, loaded.aus, sources=sources,
                       extra={"kind": "release", "known_name": known.name})
    return target


def _adopt(manifest: Manifest, path: Path, known: KnownWeights) -> None:
    """Record a converted file that was placed in the cache by hand, after checking that it
    holds the AU set its name promises."""
    dataset = read_converted_metadata(path).get("dataset")
    if dataset != known.name:
        raise UserError(f"{path}: holds {dataset} weights, not {known.name}: rename or remove it")
    manifest.record(path, source="placed in the cache")


def _ready(home: Path, known: KnownWeights) -> Path | None:
    """The converted file when it is present and recorded (checked against the record)."""
    path = home / known.filename
    if not path.is_file():
        return None
    manifest = Manifest(home)
    if path.name not in manifest.files:
        return None
    _check_recorded(manifest, path, known)
    return path


def _discard(home: Path, manifest: Manifest, wanted: list[KnownWeights]) -> None:
    """Remove the cached and partial files of `wanted` and their records (for --force)."""
    names = {k.filename for k in wanted} | {f.filename for k in wanted for f in k.release_files}
    for name in names:
        (home / name).unlink(missing_ok=True)
        partial_path(home / name).unlink(missing_ok=True)
    manifest.forget(names)


def ensure_weights(
    names: Iterable[str],
    offline: bool | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """The converted file of each known name ('all' for every one), fetched and converted
    into the cache when missing, checked against the manifest when present.

    `force` discards the cached files and records first. Downloads are off when `offline`
    (default: FGNET_VIDEO_OFFLINE); release files placed in the cache by hand are still used.
    """
    wanted = _known(names)
    home = cache_dir()
    if not force:
        ready = [_ready(home, known) for known in wanted]
        if all(ready):
            return ready
    with file_lock(home / LOCK_NAME):  # creates `home` too
        manifest = Manifest(home)
        if force:
            _discard(home, manifest, wanted)
        todo = [known for known in wanted if not (home / known.filename).exists()]
        needed = {file.filename: (file, known) for known in todo for file in known.release_files}
        absent = [known for file, known in needed.values() if not (home / file.filename).exists()]
        if absent and offline_mode(offline):
            raise _offline_error(home, absent[0])
        for file, known in needed.values():
            _fetch(home, manifest, file, known, progress)
        for known in todo:
            manifest.record(_convert(home, known, progress), source="converted from "
                            f"{known.model.filename} + {known.psp.filename}")
        for filename in needed:
            (home / filename).unlink()
        for known in wanted:
            path = home / known.filename
            if path.name in manifest.files:
                if known not in todo:
                    _check_recorded(manifest, path, known)
            else:
                _adopt(manifest, path, known)
    return [home / known.filename for known in wanted]


# -- public entry points -------------------------------------------------------------------

def resolve_weights(spec: str, psp: str | None = None,
                    offline: bool | None = None) -> tuple[str, str | None]:
    """(checkpoint path, pSp path) for a `--weights` value: an existing file is returned as
    is with `psp`; a known name (bp4d, disfa) gives its converted file from the cache."""
    path = Path(spec).expanduser()
    if path.is_file():
        return str(path), psp
    key = spec.strip().lower()
    if key in KNOWN_WEIGHTS:
        if psp is not None:
            raise UserError(f"--psp goes with a release model.pth, not with the known "
                            f"weights name {key}")
        return str(ensure_weights([key], offline=offline)[0]), None
    if path.exists():
        raise UserError(f"{spec}: a folder, not a checkpoint file")
    raise UserError(f"{spec}: no such file, and not a known weights name "
                    f"({', '.join(KNOWN_WEIGHTS)})")


def load_weights(
    spec: str = DEFAULT_WEIGHTS,
    psp: str | None = None,
    dataset: str | None = None,
    features: str | None = None,
    offline: bool | None = None,
) -> LoadedModel:
    """Resolve a `--weights` value (see resolve_weights) and load it with load_model.

    A cached known checkpoint was just checked against its manifest record, so the recorded
    sha256 is handed on (`LoadedModel.checkpoint_sha256` then need not hash it again)."""
    path, psp_path = resolve_weights(spec, psp=psp, offline=offline)
    loaded = load_model(path, psp=psp_path, dataset=dataset, features=features)
    if not Path(spec).expanduser().is_file():  # a known name, verified by ensure_weights
        entry = Manifest(cache_dir()).files.get(Path(path).name)
        if entry is not None:
            loaded.metadata["sha256"] = entry["sha256"]
    return loaded
