"""The PyTorch MMOD face detector against dlib's own (dlib.cnn_face_detection_model_v1),
and the dlib DNN file reader on both of face_recognition_models' networks.

Frames come from the real recordings in ../shared/media (skipped when absent), scaled to at
most 640 px wide. Parity: every dlib face has a torch box whose edges are within 1 px and
whose confidence is within 0.01, and torch finds nothing else above the threshold.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fgnet_video.face.dlib_format import read_network

from .conftest import shared_path

pytestmark = pytest.mark.slow

BOX_TOLERANCE_PX = 1
SCORE_TOLERANCE = 0.01
# (clip, frame index): one face each, a half face at the left edge (disfa), a tight crop
# touching the borders (vox), a lamp-lit webcam face, a phone face and the phone clip's
# faceless title card
FRAMES = [("sample_disfa.avi", 10), ("vox_talking.mp4", 60), ("webcam_lamp.wmv", 40),
          ("phone_cut_vfr.mov", 30), ("phone_cut_vfr.mov", 150)]


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@pytest.fixture(scope="module")
def models() -> Path:
    return _models_dir()


@pytest.fixture(scope="module")
def dlib_detector(models):
    dlib = pytest.importorskip("dlib")
    return dlib.cnn_face_detection_model_v1(str(models / "mmod_human_face_detector.dat"))


@pytest.fixture(scope="module")
def torch_detector(models):
    import torch

    from fgnet_video.face.mmod import MmodDetector

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    return MmodDetector.from_file(models / "mmod_human_face_detector.dat").eval()


def _frame(clip: str, index: int, max_width: int = 640) -> np.ndarray:
    """Frame `index` of a clip in ../shared/media as RGB uint8, at most max_width wide."""
    cv2 = pytest.importorskip("cv2")
    capture = cv2.VideoCapture(str(shared_path("media", clip)))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
    finally:
        capture.release()
    assert ok, f"cannot decode frame {index} of {clip}"
    if bgr.shape[1] > max_width:
        height = round(bgr.shape[0] * max_width / bgr.shape[1])
        bgr = cv2.resize(bgr, (max_width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [_frame(clip, index) for clip, index in FRAMES]


def _dlib_faces(detector, image: np.ndarray, upsample: int = 0):
    return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
            for d in detector(image, upsample)]


def _check_parity(expected, actual, where: str) -> None:
    """Each dlib face matched by one torch face (edges <= 1 px, confidence <= 0.01 apart);
    no torch face left over."""
    unmatched = list(actual)
    for box, score in expected:
        match = next((a for a in unmatched
                      if max(abs(p - q) for p, q in zip(a[0], box, strict=True)) <= BOX_TOLERANCE_PX
                      and abs(a[1] - score) <= SCORE_TOLERANCE), None)
        assert match is not None, f"{where}: dlib face {box} {score:.4f} not in {actual}"
        unmatched.remove(match)
    assert not unmatched, f"{where}: torch faces {unmatched} that dlib does not find"


# ----------------------------------------------------------------------------------------
# the reader


def test_reader_parses_the_mmod_detector(models):
    net = read_network(models / "mmod_human_face_detector.dat")
    assert net.kinds() == (["input_rgb_image_pyramid"]
                           + ["con", "bn_con", "relu"] * 6 + ["con", "loss_mmod"])
    cons = [layer.params for layer in net.layers if layer.kind == "con"]
    assert [c["weight"].shape for c in cons] == [
        (16, 3, 5, 5), (32, 16, 5, 5), (32, 32, 5, 5), (45, 32, 5, 5), (45, 45, 5, 5),
        (45, 45, 5, 5), (1, 45, 9, 9)]
    assert [c["bias"].shape for c in cons] == [(c["num_filters"],) for c in cons]
    assert [(c["stride_y"], c["padding_y"]) for c in cons] == [(2, 0)] * 3 + [(1, 2)] * 3 + [(1, 4)]
    assert all(np.isfinite(c["weight"]).all() for c in cons)
    bn = net.layers[2].params
    assert bn["gamma"].shape == bn["running_variances"].shape == (1, 16, 1, 1)
    assert bn["eps"] == pytest.approx(1e-4)
    pyramid = net.input.params
    assert (pyramid["avg_red"], pyramid["avg_green"], pyramid["avg_blue"]) == pytest.approx(
        (122.782, 117.001, 104.298), abs=1e-4)
    assert (pyramid["pyramid_padding"], pyramid["pyramid_outer_padding"]) == (10, 11)
    options = net.loss_options
    assert [(w["width"], w["height"]) for w in options["detector_windows"]] == [(80, 80)]
    assert options["overlaps_nms"]["iou_thresh"] == pytest.approx(0.33828, abs=1e-5)
    assert options["overlaps_nms"]["percent_covered_thresh"] == 1.0
    assert not options["use_bounding_box_regression"]
    assert net.trailing_bytes == 0


def test_reader_parses_the_face_recognition_resnet(models):
    net = read_network(models / "dlib_face_recognition_resnet_model_v1.dat")
    kinds = net.kinds()
    assert len(kinds) == 132
    assert (kinds[0], kinds[-1]) == ("input_rgb_image_sized", "loss_metric")
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "input_rgb_image_sized": 1, "con": 29, "affine": 29, "relu": 29, "max_pool": 1,
        "tag": 18, "skip": 4, "add_prev": 14, "avg_pool": 5, "fc": 1, "loss_metric": 1}
    assert (net.input.params["nr"], net.input.params["nc"]) == (150, 150)
    first = net.layers[1].params
    assert first["weight"].shape == (32, 3, 7, 7) and first["stride_y"] == 2
    assert net.layers[2].params["gamma"].shape == (1, 32, 1, 1)
    assert net.layers[4].params["nr"] == 3 and net.layers[4].params["stride_x"] == 2
    fc = net.layers[-2].params
    assert fc["weight"].shape == (256, 128) and fc["bias"] is None
    assert net.layers[-3].kind == "avg_pool" and net.layers[-3].params["nr"] == 0
    # residual_down: tag, block, tag, skip (to the first tag), avg_pool, add_prev (2nd tag)
    down = kinds.index("skip")
    assert kinds[down - 1] == "tag" and kinds[down + 1:down + 3] == ["avg_pool", "add_prev"]
    skip, add = net.layers[down].params, net.layers[down + 2].params
    assert net.layers[skip["source"]].kind == "tag" and skip["source"] < down - 1
    assert add["source"] == down - 1
    assert net.loss_options["margin"] == pytest.approx(0.04)


def test_reader_rejects_other_files(models, tmp_path):
    with pytest.raises(ValueError, match="shape_predictor_5_face_landmarks.dat"):
        read_network(models / "shape_predictor_5_face_landmarks.dat")
    data = (models / "mmod_human_face_detector.dat").read_bytes()
    for cut in (0, 1, 40, 3000, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.dat"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.dat"):
            read_network(path)


# ----------------------------------------------------------------------------------------
# the detector


def test_pyramid_up_is_dlibs_resize(frames):
    dlib = pytest.importorskip("dlib")
    from fgnet_video.face.mmod import pyramid_up_rgb

    image = np.ascontiguousarray(frames[2][:101, :157])
    up = pyramid_up_rgb(image)
    assert up.shape == (2 * 101 + 1, 2 * 157 + 2, 3)
    np.testing.assert_array_equal(up, dlib.resize_image(image, up.shape[0], up.shape[1]))


def test_detections_match_dlib(frames, dlib_detector, torch_detector):
    found = 0
    for (clip, index), image, actual in zip(FRAMES, frames, torch_detector.detect(frames),
                                             strict=True):
        expected = _dlib_faces(dlib_detector, image)
        found += len(expected)
        _check_parity(expected, actual, f"{clip} frame {index} {image.shape}")
    assert found >= 4  # the four face frames have a face each


def test_batched_frames_match_single_frames(frames, torch_detector):
    pair = [frames[3], np.ascontiguousarray(frames[3][:, ::-1])]
    batched = torch_detector.detect(pair, batch_size=2)
    for image, together in zip(pair, batched, strict=True):
        alone = torch_detector.detect([image])[0]
        assert [box for box, _ in together] == [box for box, _ in alone]
        assert [s for _, s in together] == pytest.approx([s for _, s in alone], abs=1e-4)


def test_upsampled_detections_match_dlib(frames, dlib_detector, torch_detector):
    import cv2

    image = np.ascontiguousarray(cv2.resize(frames[2], (240, 180), interpolation=cv2.INTER_AREA))
    expected = _dlib_faces(dlib_detector, image, upsample=1)
    assert expected
    _check_parity(expected, torch_detector.detect([image], upsample=1)[0], "upsample 1")


def test_frames_too_small_for_the_network_get_no_detection():
    """Under MIN_FRAME_SIDE px the tiled pyramid is smaller than the three stride-2
    convolutions need (dlib itself fails there): no face, no error; from it, the network
    runs."""
    from fgnet_video.face.mmod import MIN_FRAME_SIDE, MmodDetector

    detector = MmodDetector.from_file()
    tiny = [np.zeros((1, 1, 3), np.uint8), np.zeros((MIN_FRAME_SIDE - 1, 40, 3), np.uint8),
            np.zeros((MIN_FRAME_SIDE, MIN_FRAME_SIDE, 3), np.uint8)]
    assert detector.detect(tiny) == [[], [], []]


def test_small_face_levels_find_what_the_whole_pyramid_finds(torch_detector):
    """`detect(..., max_side=160)` scans only the pyramid levels of boxes under 160 px, each
    level alone on its canvas at its tiled position modulo the network's stride (at any
    other position the network scores other windows: boxes 1-5 px off, scores up to 0.1
    apart), and gives the whole tiled pyramid's boxes and scores under that size: a real
    crowd (walk_opera, frame 0, faces of 36-80 px) cropped and upscaled 2x as the
    small-face pass upscales it."""
    cv2 = pytest.importorskip("cv2")
    clip = Path(__file__).resolve().parents[1] / "benchmarks" / "real_footage" / "walk_opera.mp4"
    capture = cv2.VideoCapture(str(clip))
    try:
        ok, bgr = capture.read()
    finally:
        capture.release()
    assert ok
    crop = cv2.cvtColor(bgr[320:680, 100:740], cv2.COLOR_BGR2RGB)
    image = np.ascontiguousarray(cv2.resize(crop, None, fx=2, fy=2,
                                            interpolation=cv2.INTER_LINEAR))
    max_side = 160

    def under(detections):
        return sorted((box, score) for box, score in detections
                      if min(box[2] - box[0], box[3] - box[1]) + 1 < max_side)

    whole = under(torch_detector.detect([image])[0])
    levels = under(torch_detector.detect([image], max_side=max_side)[0])
    assert len(whole) >= 4
    assert [box for box, _ in levels] == [box for box, _ in whole]
    assert [s for _, s in levels] == pytest.approx([s for _, s in whole], abs=1e-4)
    assert torch_detector.levels_under(max_side) == 4
    assert len(torch_detector.layout(*image.shape[:2]).rects) > 4


def test_face_networks_run_inside_exact_fp32(models, monkeypatch):
    """On CUDA, cuDNN would run the detector's and the descriptor's fp32 convolutions in
    TF32 and move their numbers from dlib's: every forward of both runs inside
    `exact_fp32(their device)` (a no-op on this CPU, so it is watched here)."""
    import contextlib

    import torch

    from fgnet_video.face import descriptor_net, mmod

    inside, seen = [], []

    @contextlib.contextmanager
    def watched(device):
        inside.append(device)
        try:
            yield
        finally:
            inside.pop()

    def forward_of(cls):
        original = cls.forward

        def forward(self, x):
            seen.append((cls.__name__, list(inside)))
            return original(self, x)
        return forward

    for module, cls in ((mmod, mmod.MmodDetector),
                        (descriptor_net, descriptor_net.FaceDescriptorNet)):
        monkeypatch.setattr(module, "exact_fp32", watched)
        monkeypatch.setattr(cls, "forward", forward_of(cls))
    detector = mmod.MmodDetector.from_file(models / "mmod_human_face_detector.dat")
    image = np.zeros((120, 160, 3), np.uint8)
    detector.detect([image])
    detector.detect([image], max_side=100)
    net = descriptor_net.FaceDescriptorNet.from_file(
        models / "dlib_face_recognition_resnet_model_v1.dat")
    net.describe(np.zeros((2, 150, 150, 3), np.uint8))
    cpu = torch.device("cpu")
    assert [name for name, _ in seen] == ["MmodDetector"] * 3 + ["FaceDescriptorNet"]
    assert all(devices == [cpu] for _, devices in seen)


def test_a_network_call_holds_at_most_batch_pixels(torch_detector, monkeypatch):
    """Frames go through the network `batch_size` at a time, but never more than
    BATCH_PIXELS of them (one frame however large): 4K frames' small-face pass, 4 a call,
    peaked at 7.2 GB on a CPU (that grouping changes no detection:
    `test_batched_frames_match_single_frames`)."""
    from fgnet_video.face import mmod

    frames = [np.full((100, 120, 3), 40 * i, np.uint8) for i in range(5)]
    calls = []
    for name in ("scores", "scan_levels"):
        original = getattr(torch_detector, name)
        monkeypatch.setattr(torch_detector, name,
                            lambda batch, *a, original=original, **k: calls.append(len(batch))
                            or original(batch, *a, **k))
    monkeypatch.setattr(mmod, "BATCH_PIXELS", 2 * 100 * 120 + 1)
    torch_detector.detect(frames)
    torch_detector.detect(frames, max_side=100)
    monkeypatch.setattr(mmod, "BATCH_PIXELS", 10)  # under one frame: still one a call
    torch_detector.detect(frames[:2])
    assert calls == [2, 2, 1, 2, 2, 1, 1, 1]


def test_detect_many_makes_one_network_call_s_copies_at_a_time(frames, monkeypatch):
    """`FaceDetector.detect_many` rescales its frames run by run, each run's copies within
    one network call's BATCH_PIXELS (a device batch of 16 4K frames' 2x copies would be 1.6
    GB at once), and finds what it finds frame by frame."""
    from fgnet_video.face import mmod
    from fgnet_video.face.detect import FaceDetector

    detector = FaceDetector("cnn", min_face_size=40)
    alone = [detector(frame) for frame in frames]
    budget = 2 * max(frame.shape[0] * frame.shape[1] for frame in frames)
    monkeypatch.setattr(mmod, "BATCH_PIXELS", budget)
    calls = []
    run = detector._run
    monkeypatch.setattr(detector, "_run", lambda copies, largest: calls.append(
        [c.shape[0] * c.shape[1] for c in copies]) or run(copies, largest))
    assert detector.detect_many(frames) == alone
    assert sum(map(len, calls)) == 2 * len(frames)  # every frame, both passes
    assert all(len(c) == 1 or sum(c) <= budget for c in calls)
    assert max(map(len, calls)) == 2 and min(map(len, calls)) == 1
