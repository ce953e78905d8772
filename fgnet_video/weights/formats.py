"""Which format a weights file is, and reading PyTorch files safely: `torch_load` uses
`weights_only=True`, so a file that would need code unpickled is refused with the reason."""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

from fgnet_video.errors import UserError


def is_safetensors(path: Path) -> bool:
    """safetensors files start with a little-endian u64 header length, then a JSON '{'."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


# What a file that is no checkpoint may be, by its first bytes: (magic, offset, what).
_SIGNATURES = (
    (b"ftyp", 4, "an MP4/MOV video"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"RIFF", 0, "a RIFF file (AVI video, WAV audio)"),
    (b"\x89PNG", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
)


def sniff(head: bytes) -> str:
    """A guess at what a file that is neither a zip archive nor a pickle holds, from its
    first bytes."""
    for magic, offset, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "text"
    return "unrecognised bytes (random data?)"


# torch.save's legacy (pre-zip) format opens with this number, pickled on its own
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain values only (numbers, strings, containers): no class, no code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"{module}.{name} is not a plain value")


def check_torch_archive(path: str | os.PathLike) -> None:
    """UserError unless `path` is a complete torch.save archive: a zip file whose directory
    (at its end, so a cut-off file has none) lists a data.pkl (the directory only is read),
    or a legacy (pre-zip) torch.save file: its first pickle is torch's LEGACY_MAGIC, and it
    loads whole (`torch_load`: a cut-off one does not)."""
    with open(path, "rb") as handle:
        if handle.read(1) == b"\x80":  # a pickle's protocol mark: the legacy format?
            handle.seek(0)
            try:
                magic = _NoGlobals(handle).load()
            except Exception:  # noqa: BLE001 - any unpickling failure: not torch's header
                magic = None
            if magic != LEGACY_MAGIC:
                raise UserError("not a PyTorch checkpoint: a pickle without torch.save's "
                                "header (random data?)")
            torch_load(path)
            return
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        with open(path, "rb") as handle:
            head = handle.read(64)
        what = "a cut-off zip archive" if head.startswith(b"PK") else sniff(head)
        raise UserError(f"not a complete PyTorch checkpoint: {what}") from None
    if not any(name.endswith("data.pkl") for name in names):
        raise UserError("a zip archive, but not a PyTorch checkpoint (no data.pkl)")


def torch_load(path: str | os.PathLike) -> Mapping:
    """torch.load with weights_only=True, turning every failure into one clear line: a file
    that is neither a zip archive (torch.save's format) nor a pickle (its legacy format) is
    not a PyTorch checkpoint; a pickle that names a class or function outside torch's
    allow-list is refused as pickled code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        raise UserError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    is_zip = head.startswith(b"PK\x03\x04")
    if not is_zip and head[:1] != b"\x80":  # a pickle (protocol 2+) opens with PROTO
        raise UserError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a "
                        f"pickle: {sniff(head)})")
    try:
        with warnings.catch_warnings():  # its advice on pickle protocols is not the user's
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            import torch  # here: sniffing a file's format needs no torch

            data = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        code = re.search(r"GLOBAL (\S+)", str(exc))
        if code:
            raise UserError(
                f"{path}: refused: the file contains pickled code ({code.group(1)}), not plain"
                " tensors (checkpoints are loaded with weights_only=True)"
            ) from None
        raise UserError(f"{path}: not a PyTorch checkpoint (unpickling failed: "
                        f"{unpickler_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails with many types on garbage
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a dict of state dicts, found {type(data).__name__}")
    return data


def unpickler_reason(exc: BaseException) -> str:
    """The reason torch's weights-only unpickler gave ('Unsupported operand 59'), without
    the advice around it."""
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
    return found.group(1)[:200] if found else first_line(exc)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
