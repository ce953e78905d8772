"""dlib's face chip and 128-d face descriptor, reimplemented (fgnet_video.face.face_chip and
descriptor_net), against dlib itself on real faces: chips identical to the pixel,
descriptors within 1e-4 (L2) of compute_face_descriptor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import REPO, shared_path

dlib = pytest.importorskip("dlib", reason="dlib is not installed (pip install dlib-bin)")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models is not installed (pip install "
                "face-recognition-models)", allow_module_level=True)

cv2 = pytest.importorskip("cv2")

from fgnet_video.face.descriptor_net import FaceDescriptorNet, default_model_path  # noqa: E402
from fgnet_video.face.face_chip import (  # noqa: E402
    chip_rect,
    chip_transform,
    extract_chips,
    extract_chips_torch,
    plan_chips,
)
from fgnet_video.face.landmarks import LANDMARKS_MODEL, model_file  # noqa: E402

# (clip, frame indices): a tight crop whose face touches the borders (out-of-image pixels),
# a 1024x768 lab frame (pyramid level 0), a webcam frame under a moving lamp
CLIPS = {"vox_talking.mp4": (0, 60), "sample_disfa.avi": (0, 19), "webcam_lamp.wmv": (40,)}
TOLERANCE = 1e-4  # L2 distance to dlib's descriptor (observed ~1.5e-6 in float32)


def _frames(path: Path, wanted: tuple[int, ...]) -> list[np.ndarray]:
    """RGB frames `wanted` of a clip, decoded with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    try:
        while index <= max(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    assert frames, f"{path}: no frames decoded"
    return frames


def _shapes(image: np.ndarray, detector, predictor) -> list:
    return [predictor(image, rect) for rect in detector(image, 1)]


def _points(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


@pytest.fixture(scope="module")
def faces() -> list[tuple[np.ndarray, object]]:
    """(RGB frame, dlib 68-point shape) of every face found in the frames of CLIPS and of
    the repository's astronaut sample (two faces in one frame)."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file(LANDMARKS_MODEL)))
    found = []
    paths = [(shared_path("media", name), wanted) for name, wanted in CLIPS.items()]
    paths.append((REPO / "sample_videos" / "astronaut.mp4", (20,)))
    for path, wanted in paths:
        for image in _frames(path, wanted):
            found += [(image, shape) for shape in _shapes(image, detector, predictor)]
    assert len(found) >= 6
    return found


@pytest.fixture(scope="module")
def recognizer():
    return dlib.face_recognition_model_v1(str(default_model_path()))


@pytest.fixture(scope="module")
def net() -> FaceDescriptorNet:
    return FaceDescriptorNet.from_file()


def test_chips_are_dlibs_to_the_pixel(faces) -> None:
    for image, shape in faces:
        expected = dlib.get_face_chip(image, shape, size=150, padding=0.25)
        transform = chip_transform(_points(shape))
        np.testing.assert_array_equal(extract_chips(image, transform)[0], expected)
        np.testing.assert_array_equal(extract_chips_torch(image, transform)[0].numpy(),
                                      expected)


@pytest.mark.parametrize("scale, levels", [(3.5, [0, -1]), (6.0, [1, 0])])
def test_chips_of_large_faces_go_through_dlibs_pyramid(faces, scale, levels) -> None:
    """The astronaut frame's two faces, turned 17 degrees and enlarged: the larger face is
    read from a shrunk copy (pyramid level + 1 halvings); extracted one by one and in one
    call (where dlib crops and shrinks once for both faces)."""
    image = next(im for im, _ in faces if sum(other is im for other, _ in faces) == 2)
    shapes_in = [shape for im, shape in faces if im is image]
    h, w = image.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 17.0, scale)
    big = cv2.warpAffine(image, turn, (int(w * scale), int(h * scale)))
    shapes = dlib.full_object_detections()
    transforms = []
    for shape in shapes_in:
        points = np.round(_points(shape) @ turn[:, :2].T + turn[:, 2])
        shapes.append(dlib.full_object_detection(
            dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in points]))
        transforms.append(chip_transform(points))
    plans = plan_chips(big.shape, [chip_rect(t) for t in transforms])
    assert sorted(p.level for p in plans) == sorted(levels)
    for shape, transform in zip(shapes, transforms, strict=True):
        one = dlib.get_face_chip(big, shape, size=150, padding=0.25)
        np.testing.assert_array_equal(extract_chips(big, transform)[0], one)
    together = np.stack(dlib.get_face_chips(big, shapes, size=150, padding=0.25))
    np.testing.assert_array_equal(extract_chips(big, transforms, shared_pyramid=True),
                                  together)
    np.testing.assert_array_equal(
        extract_chips_torch(big, transforms, shared_pyramid=True).numpy(), together)


def test_descriptors_are_dlibs(faces, recognizer, net) -> None:
    chips, expected = [], []
    for image, shape in faces:
        expected.append(np.array(recognizer.compute_face_descriptor(image, shape)))
        chips.append(extract_chips(image, chip_transform(_points(shape)))[0])
    got = net.describe(np.stack(chips)).double().numpy()
    distances = np.linalg.norm(got - np.stack(expected), axis=1)
    assert distances.max() < TOLERANCE, distances
    one = net.describe(chips[0]).double().numpy()[0]  # batch of one: the same numbers
    assert np.linalg.norm(one - expected[0]) < TOLERANCE


def test_the_network_is_dlibs_resnet(net) -> None:
    """29 convs (1 stem + 2 per block), 14 residual blocks of which 4 down, 256 -> 128."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 29 and len(net.blocks) == 14
    assert sum(not isinstance(b.skip, torch.nn.Identity) for b in net.blocks) == 4
    assert (net.fc.in_features, net.fc.out_features) == (256, 128)
