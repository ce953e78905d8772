"""Re-create the real-footage excerpts from bare git mirrors of their source repositories.

    python benchmarks/real_footage/make_excerpts.py --mirrors /work/.mirror
    python benchmarks/real_footage/make_excerpts.py --mirrors /work/.mirror \
        --restricted-out /some/dir/outside/the/repo          # also the licence-restricted ones

Not run by the tests. Each clip in CLIPS names a public GitHub repository, a commit and a path;
the source file is read from a bare mirror with `git show <commit>:<path>` (a mirror of
`owner/name` is looked for at `<mirrors>/<owner>+<name>/repo` and `<mirrors>/<owner>+<name>`,
or pass a plain clone, any git directory holding the commit, as `--repo owner/name=PATH`).
Any clone of the repository that holds the commit works the same way.

The excerpt is the decoded source frames [first_frame, first_frame + frames): every decoded
frame in that range, in order, none dropped or repeated, so frame index k of the excerpt is
source frame first_frame + k, whatever the source's timestamps say. Frames are scaled to
`width` x `height` when the source is wider than 1280 px, and written as H.264 (libx264,
yuv420p, CRF 18, preset medium, constant frame rate `fps`) with PyAV. The frame count of every
written file is checked by decoding it again.

Clips whose licence allows redistribution (`redistribute: True`) are written next to this
script, where ground_truth.json expects them. The others (academic-only licence, broadcast
television) are written only when --restricted-out is given, and only there; keep them out of
the repository. Their annotations in ground_truth.json are for the files this script writes.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av

HERE = Path(__file__).resolve().parent

# name: source and excerpt. first_frame/frames count decoded source frames from 0.
CLIPS = {
    "walk_opera": dict(
        repo="timesler/facenet-pytorch",
        commit="787da06156087cd6b616fe6608213722bddc30cd",
        path="examples/video.mp4",
        first_frame=0, frames=105, fps=Fraction(25), width=1280, height=720,
        redistribute=True,
    ),
    "hamilton_whitehouse": dict(
        repo="ageitgey/face_recognition",
        commit="2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
        path="examples/short_hamilton_clip.mp4",
        first_frame=0, frames=275, fps=Fraction(2997, 100), width=640, height=360,
        redistribute=True,
    ),
    "headpose_pair": dict(
        repo="intel-iot-devkit/sample-videos",
        commit="57978890822836f2b4743852f04f62fc511757e4",
        path="preview/head-pose-face-detection-female-and-male.gif",
        first_frame=0, frames=56, fps=Fraction(25, 2), width=480, height=270,
        redistribute=True,
    ),
    "walking_trio": dict(
        repo="intel-iot-devkit/sample-videos",
        commit="57978890822836f2b4743852f04f62fc511757e4",
        path="preview/face-demographics-walking-and-pause.gif",
        first_frame=0, frames=41, fps=Fraction(25, 2), width=480, height=270,
        redistribute=True,
    ),
    "openface_multi": dict(
        # a copy of TadasBaltrusaitis/OpenFace samples/multi_face.avi (that repository's
        # snapshot is over the fetch size limit); git blob 9863cf178f234148a12818310c2113379eb95f60
        repo="Soontosh/DepScopeAIDeployment",
        commit="12c82c5f91ef2b8019d4d096269c9d7dd1f08143",
        path="OpenFace/samples/multi_face.avi",
        first_frame=330, frames=300, fps=Fraction(30), width=640, height=480,
        redistribute=False,
    ),
    "friends_poker": dict(
        repo="yakhyo/face-reidentification",
        commit="709b3903fc9503ddbec3436e712c08e4ce56ddbf",
        path="assets/in_video.mp4",
        first_frame=250, frames=240, fps=Fraction(24000, 1001), width=1280, height=720,
        redistribute=False,
    ),
    "friends_cards": dict(
        # removed from the repository after this commit (the newest holding it: dfdd190b)
        repo="distant-viewing/dvt",
        commit="a8e90bb2b9c635a8263e8e61f64104c083159bb7",
        path="tests/test-data/video-clip.mp4",
        first_frame=0, frames=300, fps=Fraction(30000, 1001), width=708, height=480,
        redistribute=False,
    ),
}


def mirror_dir(repo: str, mirrors: Path, overrides: dict[str, Path]) -> Path:
    if repo in overrides:
        return overrides[repo]
    base = mirrors / repo.replace("/", "+")
    for cand in (base / "repo", base):
        if cand.is_dir():
            return cand
    raise SystemExit(f"no mirror of {repo} under {mirrors} (fetch github:{repo}, or pass --repo)")


def read_source(spec: dict, mirrors: Path, overrides: dict[str, Path]) -> bytes:
    git_dir = mirror_dir(spec["repo"], mirrors, overrides)
    blob = subprocess.run(
        ["git", "-C", str(git_dir), "show", f"{spec['commit']}:{spec['path']}"],
        check=True, capture_output=True,
    ).stdout
    if blob.startswith(b"version https://git-lfs"):
        raise SystemExit(f"{spec['repo']}:{spec['path']} is a Git LFS pointer, not the video")
    return blob


def write_excerpt(data: bytes, spec: dict, out_path: Path) -> int:
    src = av.open(io.BytesIO(data))
    first, count = spec["first_frame"], spec["frames"]
    out = av.open(str(out_path), "w")
    stream = out.add_stream("libx264", rate=spec["fps"])
    stream.width, stream.height = spec["width"], spec["height"]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "18", "preset": "medium"}
    stream.codec_context.time_base = 1 / Fraction(spec["fps"])
    written = 0
    for index, frame in enumerate(src.decode(video=0)):
        if index < first:
            continue
        if written == count:
            break
        img = frame.reformat(width=spec["width"], height=spec["height"], format="yuv420p")
        img.pts = written
        img.time_base = stream.codec_context.time_base
        for packet in stream.encode(img):
            out.mux(packet)
        written += 1
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    src.close()
    if written != count:
        raise SystemExit(f"{out_path.name}: source has only {first + written} frames")
    with av.open(str(out_path)) as check:
        decoded = sum(1 for _ in check.decode(video=0))
    if decoded != count:
        raise SystemExit(f"{out_path.name}: wrote {count} frames but {decoded} decode back")
    return decoded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"),
                        help="folder of bare mirrors named owner+name (default /work/.mirror)")
    parser.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH",
                        help="git directory to read one repository from")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where the redistributable excerpts go (default: this folder)")
    parser.add_argument("--restricted-out", type=Path, default=None,
                        help="also write the licence-restricted excerpts, into this folder")
    parser.add_argument("clips", nargs="*", help="only these clips (default: all that apply)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.repo:
        name, _, path = item.partition("=")
        overrides[name] = Path(path)
    for name, spec in CLIPS.items():
        if args.clips and name not in args.clips:
            continue
        if spec["redistribute"]:
            folder = args.out
        elif args.restricted_out is not None:
            folder = args.restricted_out
        else:
            print(f"{name}: skipped (licence does not allow redistribution; see --restricted-out)")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        out_path = folder / f"{name}.mp4"
        frames = write_excerpt(read_source(spec, args.mirrors, overrides), spec, out_path)
        print(f"{name}: {frames} frames -> {out_path} ({out_path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
