"""Make sample_videos/astronaut.mp4 from the public-domain astronaut photo (NASA, shipped
with scikit-image as skimage/data/astronaut.png).

    python sample_videos/make_sample.py path/to/astronaut.png sample_videos/astronaut.mp4

A 4 s, 25 fps, 640x360 H.264 clip: a slow zoom and pan across the photo with a small
head-like sway (rotation), plus a 440 Hz AAC tone, so the README's first command and the
overlay's audio copy-through have a redistributable input.
"""

from __future__ import annotations

import math
import sys

import av
import cv2
import numpy as np
from PIL import Image

FPS, SECONDS, WIDTH, HEIGHT, SAMPLE_RATE = 25, 4, 640, 360, 44100


def frame_at(photo: np.ndarray, t: float) -> np.ndarray:
    """The photo under a similarity transform that zooms 1.0 -> 1.25 and sways +-4 degrees."""
    zoom = 1.0 + 0.25 * t / SECONDS
    angle = 4.0 * math.sin(2 * math.pi * t / 2.0)
    centre = (256.0, 170.0 + 20.0 * t / SECONDS)  # around the face
    matrix = cv2.getRotationMatrix2D(centre, angle, zoom * HEIGHT / 380.0)
    matrix[:, 2] += np.array([WIDTH / 2, HEIGHT / 2.6]) - np.array(centre)
    return cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def main(source: str, target: str) -> None:
    photo = np.asarray(Image.open(source).convert("RGB"))
    with av.open(target, "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "26", "preset": "slow"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        for i in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(frame_at(photo, i / FPS), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = 0.2 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE * SECONDS) / SAMPLE_RATE)
        pcm = samples.astype(np.float32)[None, :]
        for start in range(0, pcm.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 1024]),
                                               format="fltp", layout="mono")
            chunk.sample_rate = SAMPLE_RATE
            chunk.pts = start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
