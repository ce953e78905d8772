"""How a tracked face's patch correlates with the one at its last detection (the probe behind
the trials in this folder; benchmarks/RESULTS.md, "The whole source recordings").

    python benchmarks/trials/detection_correlation.py VIDEO [--detector cnn|hog]
        [--track ID]

Runs the face stage over VIDEO as `analyze` does (FacePipeline, default settings but the
detector, one torch thread) and, for every landmark fit between detections
(`FaceTracker._fit`, wrapped here, the tracker unchanged), computes the normalised
cross-correlation of the fit's 32x32 patch with the patch at the face's last detection
(and with the previous frame's, the check the tracker makes). Prints the low quantiles of
both over the fits that pass today's checks, and, with --track, that face's series per
frame (an x marks a fit that failed a check).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--detector", default="cnn")
    parser.add_argument("--track", type=int, default=None)
    args = parser.parse_args()
    import torch

    from fgnet_video.face import track as tracking
    from fgnet_video.face.pipeline import FacePipeline
    from fgnet_video.media.video import read_frames
    from fgnet_video.options import FaceSettings

    torch.set_num_threads(1)
    at_detection: dict[int, np.ndarray] = {}  # id(track) -> its patch at its last detection
    fits: list[tuple[int, int, float, float, bool]] = []  # frame, face id, detection, previous
    tracker = tracking.FaceTracker
    new_track, refresh, fit = tracker._new_track, tracker._refresh, tracker._fit

    def on_new_track(self, image, detection, landmarks):
        track = new_track(self, image, detection, landmarks)
        at_detection[id(track)] = track.patch
        return track

    def on_refresh(self, image, track, detection, landmarks=None):
        refresh(self, image, track, detection, landmarks)
        at_detection[id(track)] = track.patch

    def on_fit(self, image, track):
        result = fit(self, image, track)
        fits.append((self._frame, track.face_id,
                     float((result.patch * at_detection[id(track)]).sum()),
                     float((result.patch * track.patch).sum()), result.consistent))
        return result

    tracker._new_track, tracker._refresh, tracker._fit = on_new_track, on_refresh, on_fit
    pipeline = FacePipeline(FaceSettings(detector=args.detector))
    for frame in read_frames(args.video):
        pipeline.process(frame)
    passed = np.array([(d, p) for _, _, d, p, ok in fits if ok])
    print(f"{args.video.name}, {args.detector}: {len(fits)} fits, {len(passed)} pass the checks")
    for q in (0.001, 0.01, 0.05, 0.5):
        print(f"  quantile {q}: with the detection's patch {np.quantile(passed[:, 0], q):.3f}, "
              f"with the previous frame's {np.quantile(passed[:, 1], q):.3f}")
    if args.track is not None:
        print(f"  face {args.track}: " + " ".join(
            f"{frame}:{d:.2f}{'' if ok else 'x'}" for frame, face, d, _, ok in fits
            if face == args.track))


if __name__ == "__main__":
    main()
