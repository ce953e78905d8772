"""Face pipeline: FFHQ alignment parity, detection, landmarks and tracking on real media."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from fgnet_video.errors import UserError
from fgnet_video.face.align import ffhq_align, ffhq_quad, gaussian_blur, transform_points
from fgnet_video.face.detect import FaceDetector
from fgnet_video.face.landmarks import LandmarkPredictor
from fgnet_video.face.pipeline import FacePipeline, FaceSettings
from fgnet_video.face.track import FaceTracker
from fgnet_video.media.video import Frame, read_frames

from .conftest import shared_path

REFERENCE_NAMES = ["celeb-2", "celeb-4", "disfa_frame00"]
# Eye centres in a 256 FFHQ crop of a typical face: the quad side is 4x the eye distance, so
# the eyes sit 64 px apart around the centre, raised by 0.1 x eye-to-mouth (~7 px).
FFHQ_LEFT_EYE, FFHQ_RIGHT_EYE = np.array([96.0, 120.0]), np.array([160.0, 120.0])


def load_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.fixture(scope="module")
def reference():
    folder = shared_path("reference", "ffhq_align")
    landmarks = np.load(folder / "landmarks.npz")
    return {name: (load_rgb(folder / f"{name}.png"), landmarks[name],
                   load_rgb(folder / f"{name}_aligned.png")) for name in REFERENCE_NAMES}


@pytest.fixture(scope="module")
def vox_frames():
    return list(read_frames(shared_path("media", "vox_talking.mp4")))


@pytest.fixture(scope="module")
def disfa_frames():
    return list(read_frames(shared_path("media", "sample_disfa.avi")))


@pytest.fixture(scope="module")
def predictor():
    return LandmarkPredictor()


# -- alignment ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_exact_alignment_reproduces_the_release_and_fast_stays_close(reference, name):
    source, landmarks, expected = reference[name]
    exact = ffhq_align(source, landmarks, size=256, method="exact")
    fast = ffhq_align(source, landmarks, size=256, method="fast")
    assert exact.image.shape == (256, 256, 3) and exact.image.dtype == np.uint8
    assert mad(exact.image, expected) <= 1.0
    assert mad(fast.image, exact.image) <= 3.0
    np.testing.assert_allclose(fast.matrix, exact.matrix, atol=1e-9)  # no shrink here


def test_matrix_maps_landmarks_onto_the_face_in_the_crop(reference, predictor):
    source, landmarks, _ = reference["celeb-2"]
    aligned = ffhq_align(source, landmarks, method="exact")
    np.testing.assert_allclose(aligned.landmarks, transform_points(aligned.matrix, landmarks))
    # Independent check: landmarks refitted on the crop agree with the mapped ones.
    refit = predictor(aligned.image, (46.0, 81.0, 156.0, 156.0))  # dlib's box for FFHQ crops
    assert np.abs(refit - aligned.landmarks).mean() < 2.0
    np.testing.assert_allclose(aligned.landmarks[36:42].mean(axis=0), FFHQ_LEFT_EYE, atol=4)
    np.testing.assert_allclose(aligned.landmarks[42:48].mean(axis=0), FFHQ_RIGHT_EYE, atol=4)


def test_exact_shrink_path_keeps_geometry(reference):
    source, landmarks, _ = reference["celeb-4"]
    h, w = source.shape[:2]
    big = np.asarray(Image.fromarray(source).resize((w * 3, h * 3), Image.Resampling.LANCZOS))
    big_landmarks = (landmarks + 0.5) * 3 - 0.5
    original = ffhq_align(source, landmarks, method="exact")
    enlarged = ffhq_align(big, big_landmarks, method="exact")  # the recipe shrinks by 3 here
    fast = ffhq_align(big, big_landmarks, method="fast")
    np.testing.assert_allclose(enlarged.landmarks, original.landmarks, atol=0.5)
    assert mad(enlarged.image, original.image) < 3.0
    assert mad(fast.image, enlarged.image) <= 3.0


@pytest.mark.parametrize("frame_index", [0, 60, 117])
def test_fast_alignment_with_padding_stays_close_to_exact(vox_frames, predictor, frame_index):
    image = vox_frames[frame_index].image  # tight crop: the quad leaves the frame -> padding
    landmarks = predictor(image, (72.0, 33.0, 173.0, 173.0))
    quad = ffhq_quad(landmarks)
    assert quad.min() < 0 or quad.max() > 255
    exact = ffhq_align(image, landmarks, method="exact")
    fast = ffhq_align(image, landmarks, method="fast")
    assert mad(fast.image, exact.image) <= 3.0


def test_fast_alignment_of_a_face_cut_by_the_edge(reference):
    source, landmarks, _ = reference["celeb-2"]
    cut = np.ascontiguousarray(source[150:, 180:])  # face cut at the top and left
    shifted = landmarks - [180, 150]
    exact = ffhq_align(cut, shifted, method="exact")
    fast = ffhq_align(cut, shifted, method="fast")
    assert mad(fast.image, exact.image) <= 3.0


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32) * 255
    for sigma in (0.8, 3.3):
        expected = ndimage.gaussian_filter(image, [sigma, sigma, 0])
        np.testing.assert_allclose(gaussian_blur(image, sigma), expected, atol=1e-3)


def test_alignment_rejects_bad_input(reference):
    source, landmarks, _ = reference["celeb-2"]
    with pytest.raises(ValueError, match="method"):
        ffhq_align(source, landmarks, method="nearest")
    with pytest.raises(ValueError, match="68x2"):
        ffhq_align(source, landmarks[:5])
    with pytest.raises(ValueError, match="uint8"):
        ffhq_align(source.astype(np.float32), landmarks)


# -- detection, landmarks, tracking ---------------------------------------------------------

def test_every_vox_frame_has_its_face_with_one_id(vox_frames, predictor):
    pipeline = FacePipeline(FaceSettings(), predictor=predictor)
    per_frame = [pipeline.process(frame) for frame in vox_frames]
    assert all(len(faces) == 1 for faces in per_frame)
    assert {faces[0].face_id for faces in per_frame} == {0}
    detected = sum(faces[0].detected for faces in per_frame)
    assert 12 <= detected < len(vox_frames)  # detection every 10 frames, tracking between
    for faces in per_frame[::13]:
        face = faces[0]
        assert face.aligned.shape == (256, 256, 3) and face.aligned.dtype == np.uint8
        assert face.landmarks.shape == (68, 2) and face.confidence > 0
        eyes = face.aligned_landmarks[36:42].mean(axis=0), face.aligned_landmarks[42:48].mean(0)
        np.testing.assert_allclose(eyes, [FFHQ_LEFT_EYE, FFHQ_RIGHT_EYE], atol=6)


def test_tracked_landmarks_follow_per_frame_detection(vox_frames, predictor):
    detector = FaceDetector("hog", min_face_size=100)
    tracker = FaceTracker(detector, predictor, detect_every=10)
    for frame in vox_frames[::3]:
        tracked = tracker.update(frame.image)[0]
        fresh = predictor(frame.image, detector(frame.image)[0].box)
        assert np.abs(tracked.landmarks - fresh).mean() < 3.0


def test_disfa_full_face_keeps_one_id_and_the_cut_face_does_not_crash(disfa_frames, predictor):
    pipeline = FacePipeline(FaceSettings(), predictor=predictor)
    per_frame = [pipeline.process(frame) for frame in disfa_frames]
    full_face_ids = set()
    for faces in per_frame:
        central = [f for f in faces if f.box[0] > 200]
        assert len(central) == 1
        full_face_ids.add(central[0].face_id)
    assert len(full_face_ids) == 1
    # The half face at the left edge, cut further: a box reaching past the frame edge must
    # give finite landmarks and an aligned crop in both alignment paths.
    image = np.ascontiguousarray(disfa_frames[0].image[:, 500:])
    box = (-60.0, 380.0, 300.0, 300.0)
    landmarks = predictor(image, box)
    assert np.isfinite(landmarks).all()
    for method in ("fast", "exact"):
        assert ffhq_align(image, landmarks, method=method).image.shape == (256, 256, 3)


def test_cnn_detector_finds_the_face(vox_frames):
    detections = FaceDetector("cnn", min_face_size=160)(vox_frames[0].image)
    assert len(detections) == 1
    x, y, w, h = detections[0].box
    assert 40 < x + w / 2 < 216 and 40 < y + h / 2 < 216 and w > 120


def two_face_clip(tmp_path, vox_frames, n=12):
    """Two copies of a real face side by side (the right one drifting), written with PyAV."""
    path = tmp_path / "two_faces.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 256, "yuv420p"
        for i in range(n):
            canvas = np.full((256, 640, 3), 40, np.uint8)
            canvas[:, :256] = vox_frames[i].image
            canvas[:, 300 + 3 * i:556 + 3 * i] = vox_frames[40 + i].image
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_two_faces_keep_two_ids(tmp_path, vox_frames, predictor):
    path = two_face_clip(tmp_path, vox_frames)
    pipeline = FacePipeline(FaceSettings(detect_every=4), predictor=predictor)
    left_ids, right_ids = set(), set()
    for frame in read_frames(path):
        faces = pipeline.process(frame)
        assert len(faces) == 2
        left, right = sorted(faces, key=lambda f: f.box[0])
        left_ids.add(left.face_id)
        right_ids.add(right.face_id)
    assert len(left_ids) == 1 and len(right_ids) == 1 and left_ids != right_ids
    single = FacePipeline(FaceSettings(max_faces=1), predictor=predictor)
    assert [len(single.process(f)) for f in read_frames(path)] == [1] * 12


def test_id_survives_a_short_miss_and_blank_frames_report_no_face(vox_frames, predictor):
    """A face hidden for two frames (a grey card over it, the shot unchanged) keeps its id;
    two blank frames are a hard change of the whole frame, a cut: no face there, and the face
    after them is a new track."""
    def run(gap: list[np.ndarray]) -> list[list]:
        tracker = FaceTracker(FaceDetector("hog", min_face_size=100), predictor,
                              detect_every=10)
        sequence = [f.image for f in vox_frames[:6]] + gap + [f.image for f in vox_frames[6:12]]
        return [tracker.update(image) for image in sequence]

    hidden = []
    for frame in vox_frames[6:8]:
        card = frame.image.copy()
        card[40:200, 80:210] = 128
        hidden.append(card)
    results = run(hidden)
    assert all(len(r) == 1 and r[0].face_id == 0 for r in results[:6])
    assert results[6] == [] and results[7] == []  # the checks catch the vanished face
    assert all(len(r) == 1 and r[0].face_id == 0 for r in results[8:])
    blank = np.full_like(vox_frames[0].image, 128)
    results = run([blank, blank])
    assert results[6] == [] and results[7] == []
    assert all(len(r) == 1 and r[0].face_id == 1 for r in results[8:])


def test_pipeline_timestamps_and_settings(vox_frames, predictor):
    frame = Frame(7, 0.28, vox_frames[7].image)
    settings = FaceSettings(align_method="exact", aligned_size=128)
    face = FacePipeline(settings, predictor=predictor).process(frame)[0]
    assert (face.frame_index, face.time) == (7, 0.28) and face.aligned.shape == (128, 128, 3)
    for bad in ({"detector": "yolo"}, {"detect_every": 0}, {"align_method": "nearest"},
                {"min_face_size": 0}, {"max_faces": 0}, {"downscale": -1.0}):
        with pytest.raises(UserError):
            FaceSettings(**bad)



def test_a_signal_during_the_dlib_import_stops_the_run_not_a_missing_dlib(monkeypatch):
    """SIGTERM while dlib's extension initialises comes back as its ImportError
    ("initialization failed", raised from Terminated): the run must stop as terminated,
    not fail with "dlib could not be imported"."""
    import builtins
    import sys

    from fgnet_video.errors import Terminated
    from fgnet_video.face.landmarks import dlib_module

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "dlib":
            try:
                raise Terminated()
            except Terminated as stop:
                raise ImportError("initialization failed") from stop
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "dlib", raising=False)
    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(Terminated):
        dlib_module()
    def broken(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("libfoo.so: cannot open")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(UserError, match="could not be imported .libfoo.so"):
        dlib_module()
