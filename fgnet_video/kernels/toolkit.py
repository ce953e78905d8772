"""The CUDA toolkit the kernels are built with: where it is, which version, and whether it
fits the installed torch.

Search order (`find_cuda_home`): $CUDA_HOME, then $CUDA_PATH; then the `nvcc` on PATH, asked
where it really lives (`nvcc --dryrun` prints its own folder, which also sees through wrapper
scripts such as a /usr/local/bin/nvcc that execs the real one); then /usr/local/cuda. The
toolkit's major version must equal the one torch was built for (`torch.version.cuda`);
`toolkit_problem` says in one line what to install when it does not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_HOME = Path("/usr/local/cuda")
_HERE = re.compile(r"^#\$ _HERE_=(.+)$", re.MULTILINE)
_RELEASE = re.compile(r"release (\d+)\.(\d+)")
NVCC_TIMEOUT_S = 30


@dataclass(frozen=True)
class Toolkit:
    """A CUDA toolkit: its folder, how it was found, and its version ('13.0', None when
    its nvcc could not tell)."""

    home: Path
    found_by: str
    version: str | None


def _run_nvcc(nvcc: str | os.PathLike, *args: str) -> str:
    try:
        done = subprocess.run([str(nvcc), *args], capture_output=True, text=True,
                              timeout=NVCC_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout + done.stderr


def nvcc_home(nvcc: str | os.PathLike) -> Path | None:
    """The toolkit folder of an nvcc, as nvcc itself reports it (`--dryrun`)."""
    match = _HERE.search(_run_nvcc(nvcc, "--dryrun", "-E", "-x", "cu", os.devnull))
    return Path(match.group(1).strip()).parent if match else None


def nvcc_version(home: Path) -> str | None:
    """'13.0' from `<home>/bin/nvcc --version`, None when there is no usable nvcc."""
    nvcc = home / "bin" / "nvcc"
    if not nvcc.is_file():
        return None
    match = _RELEASE.search(_run_nvcc(nvcc, "--version"))
    return f"{match.group(1)}.{match.group(2)}" if match else None


def find_cuda_home() -> Toolkit | None:
    """The CUDA toolkit to build with (see the module docstring), None when there is none."""
    candidates: list[tuple[Path | None, str]] = [
        (Path(os.environ[name]) if os.environ.get(name) else None, name)
        for name in ("CUDA_HOME", "CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        candidates.append((nvcc_home(nvcc), f"nvcc on PATH ({nvcc})"))
    candidates.append((DEFAULT_HOME, str(DEFAULT_HOME)))
    for home, found_by in candidates:
        if home is not None and (home / "bin" / "nvcc").is_file():
            return Toolkit(home.resolve(), found_by, nvcc_version(home))
    return None


def toolkit_problem(toolkit: Toolkit | None, torch_cuda: str | None = None) -> str | None:
    """Why the kernels cannot be built with `toolkit` for a torch built for CUDA
    `torch_cuda` (default: the installed torch's), in one line; None when they can."""
    torch_cuda = torch.version.cuda if torch_cuda is None else torch_cuda
    if not torch_cuda:
        return ("this torch build has no CUDA (CPU-only): install a CUDA build of torch to "
                "build the kernels")
    if toolkit is None:
        return (f"no CUDA toolkit found (CUDA_HOME, CUDA_PATH, nvcc on PATH, "
                f"{DEFAULT_HOME}): install the CUDA {torch_cuda.split('.')[0]} toolkit and set "
                "CUDA_HOME to it")
    if toolkit.version is None:
        return f"{toolkit.home}/bin/nvcc does not report its version"
    if toolkit.version.split(".")[0] != torch_cuda.split(".")[0]:
        return (f"the CUDA toolkit at {toolkit.home} is {toolkit.version}, but torch is built "
                f"for CUDA {torch_cuda}: install the CUDA {torch_cuda.split('.')[0]} toolkit "
                f"(and set CUDA_HOME to it), or a torch build for CUDA "
                f"{toolkit.version.split('.')[0]}")
    return None
