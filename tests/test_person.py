"""Person ids: the face tracks of one person share a person_id across gaps; two people never do."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from fgnet_video.analysis.recording import analyze_video
from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.face.person import EMBED_FRAMES, REFERENCE_EVERY, PersonIdentifier
from fgnet_video.face.track import TrackedFace
from fgnet_video.media.video import VideoReader
from fgnet_video.options import FaceSettings

from .conftest import REPO, shared_path

SIDE = 256  # vox_talking.mp4 is 256 x 256


def _frames(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [frame.image for frame in reader]


def _write(path: Path, images: list[np.ndarray]) -> Path:
    """An H.264 clip of uint8 RGB images (25 fps)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "18"}
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def _on_canvas(image: np.ndarray, left: int) -> np.ndarray:
    canvas = np.zeros((SIDE, 2 * SIDE, 3), np.uint8)
    canvas[:, left:left + SIDE] = image
    return canvas


@pytest.fixture(scope="module")
def gap_clip(tmp_path_factory) -> Path:
    """vox frames 0-40 on the left, 15 black frames, vox frames 60-117 on the right: the
    tracker cannot carry the face over (new place, new face_id)."""
    vox = _frames(shared_path("media", "vox_talking.mp4"))
    black = np.zeros((SIDE, 2 * SIDE, 3), np.uint8)
    images = ([_on_canvas(image, 0) for image in vox[:41]] + [black] * 15
              + [_on_canvas(image, SIDE) for image in vox[60:]])
    return _write(tmp_path_factory.mktemp("person") / "gap.mp4", images)


@pytest.fixture(scope="module")
def two_people_clip(tmp_path_factory) -> Path:
    """The astronaut (its face enlarged from ~88 px) beside the vox face, 30 frames."""
    vox = _frames(shared_path("media", "vox_talking.mp4"))[:30]
    astronaut = _frames(REPO / "sample_videos" / "astronaut.mp4")[:30]
    images = []
    for left, right in zip(astronaut, vox, strict=True):
        crop = cv2.resize(np.ascontiguousarray(left[2:194, 194:386]), (SIDE, SIDE))
        images.append(np.concatenate([crop, right], axis=1))
    return _write(tmp_path_factory.mktemp("person") / "two.mp4", images)


def test_a_person_who_leaves_and_comes_back_keeps_the_person_id(gap_clip, tiny_weights):
    table = analyze_video(gap_clip, weights=str(tiny_weights))
    faces = table[table["success"] == 1]
    assert faces["face_id"].nunique() == 2  # two tracks: the face moved across the gap
    assert faces["person_id"].tolist() == [0] * len(faces)
    assert table.loc[table["success"] == 0, "person_id"].isna().all()
    assert table.columns[:6].tolist() == ["frame", "timestamp", "face_id", "person_id",
                                          "person", "success"]
    assert faces["person"].isna().all()  # no named people


def test_two_people_side_by_side_get_two_person_ids(two_people_clip, tiny_weights):
    table = analyze_video(two_people_clip, weights=str(tiny_weights))
    assert (table["success"] == 1).all()
    per_frame = table.groupby("frame")["person_id"].apply(lambda ids: sorted(ids.tolist()))
    assert per_frame.tolist() == [[0, 1]] * 30
    assert (table.groupby("face_id")["person_id"].nunique() == 1).all()
    # a loose enough threshold would call them one person, were they not in one frame
    loose = analyze_video(two_people_clip, weights=str(tiny_weights), same_person_distance=5.0)
    assert loose["person_id"].tolist() == table["person_id"].tolist()


def test_replayed_tracks_keep_the_person_ids(gap_clip, tiny_weights, tmp_path):
    first = tmp_path / "first.csv"
    args = ["analyze", str(gap_clip), "-w", str(tiny_weights), "--same-person-distance", "0.01"]
    result = CliRunner().invoke(main, [*args, "-o", str(first), "--save-tracks"])
    assert result.exit_code == 0, result.output
    saved = pd.read_csv(first)
    assert saved["person_id"].dropna().unique().tolist() == [0, 1]  # too strict to join
    replay = tmp_path / "replay.csv"
    result = CliRunner().invoke(main, [*args[:4], "-o", str(replay), "--tracks",
                                       str(tmp_path / "first.tracks.npz")])
    assert result.exit_code == 0, result.output
    assert replay.read_bytes() == first.read_bytes()


def test_named_people_come_first_and_name_their_rows(two_people_clip, tiny_weights, tmp_path):
    photo = tmp_path / "vox.png"  # a frame of the vox recording the clip does not use
    Image.fromarray(_frames(shared_path("media", "vox_talking.mp4"))[100]).save(photo)
    out = tmp_path / "named.csv"
    args = ["analyze", str(two_people_clip), "-w", str(tiny_weights)]
    result = CliRunner().invoke(main, [*args, "-o", str(out), "--people", f"Vox={photo}",
                                       "--save-tracks"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    right = table["x"] >= SIDE
    assert right.any() and (~right).any()
    assert (table.loc[right, "person_id"] == 0).all()
    assert (table.loc[right, "person"] == "Vox").all()
    assert (table.loc[~right, "person_id"] == 1).all()
    assert table.loc[~right, "person"].isna().all()
    replay = tmp_path / "replay.csv"  # the names come back from the tracks, not from --people
    result = CliRunner().invoke(main, [*args, "-o", str(replay), "--tracks",
                                       str(tmp_path / "named.tracks.npz")])
    assert result.exit_code == 0, result.output
    assert replay.read_bytes() == out.read_bytes()


def test_a_named_person_needs_a_face_in_the_photo(tmp_path):
    from fgnet_video.face.pipeline import FacePipeline

    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(blank)
    with pytest.raises(UserError, match="no face found in the photo of Nobody"):
        FacePipeline(FaceSettings(people=(f"Nobody={blank}",)))
    with pytest.raises(UserError, match="NAME=PHOTO"):
        FaceSettings(people=("just-a-path.png",))
    with pytest.raises(UserError, match="must differ"):
        FaceSettings(people=("a=1.png", "a=2.png"))


class _Lookup:
    """A stand-in embedder: the descriptor of a face is looked up by the x of its box."""

    def __init__(self, descriptors: dict[float, np.ndarray]):
        self.descriptors, self.calls = descriptors, 0

    def describe(self, image, faces) -> np.ndarray:
        self.calls += len(faces)
        return np.array([self.descriptors[box[0]] for box, _ in faces] or np.zeros((0, 2)))


def _face(face_id: int, x: float) -> TrackedFace:
    return TrackedFace(face_id, (x, 0.0, 10.0, 10.0), np.zeros((68, 2)), 1.0, True)


def test_a_track_is_identified_on_its_first_frame_against_the_mean_reference():
    near, far = np.array([0.5, 0.0]), np.array([0.0, 2.0])
    embedder = _Lookup({0.0: np.zeros(2), 1.0: near, 2.0: far, 3.0: np.array([0.8, 0.0])})
    persons = PersonIdentifier(embedder, same_person_distance=0.6)
    image = np.zeros((4, 4, 3), np.uint8)
    for _ in range(EMBED_FRAMES + 2):
        assert persons.update(image, [_face(0, 0.0)]) == [(0, None)]
    assert embedder.calls == EMBED_FRAMES  # descriptors only on a track's first frames
    assert persons.update(image, [_face(1, 1.0)]) == [(0, None)]  # 0.5 < 0.6: same person
    assert persons.update(image, [_face(2, 2.0)]) == [(1, None)]  # 2.0 away: someone new
    # person 0's reference is now the mean of 3 zeros and 3 x `near`, (0.25, 0): a face 0.8
    # from track 0's descriptors but 0.55 from that mean joins person 0
    for _ in range(EMBED_FRAMES):
        persons.update(image, [_face(1, 1.0)])
    assert persons.update(image, [_face(3, 3.0)]) == [(0, None)]
    persons.reset()
    assert persons.update(image, [_face(7, 2.0)]) == [(0, None)]  # ids restart per recording


def test_a_long_track_adds_to_its_person_s_reference_once_every_reference_every_frames():
    """A man seen large, then turned and smaller, comes back after a cut: compared with his
    first frames alone he would be someone new; with the reference taken over his whole
    track he is himself."""
    first, turned, back = np.zeros(2), np.array([0.8, 0.0]), np.array([0.6, 0.0])
    embedder = _Lookup({0.0: first, 1.0: turned, 2.0: back})
    persons = PersonIdentifier(embedder, same_person_distance=0.5)
    image = np.zeros((4, 4, 3), np.uint8)
    frames = 4 * REFERENCE_EVERY
    for k in range(frames):
        persons.update(image, [_face(0, 0.0 if k < EMBED_FRAMES else 1.0)])
    # descriptors on frames 0, 1, 2 (first) and 25, 50, 75 (turned): 6 of 100 frames
    assert embedder.calls == EMBED_FRAMES + frames // REFERENCE_EVERY - 1
    np.testing.assert_allclose(persons.people[0].mean, [0.4, 0.0])  # (3 x 0 + 3 x 0.8) / 6
    assert persons.update(image, [_face(1, 2.0)]) == [(0, None)]  # 0.2 from the mean, 0.6
    # from his first frames: over 0.5


def test_two_faces_of_one_frame_are_never_one_person():
    embedder = _Lookup({0.0: np.zeros(2), 1.0: np.zeros(2)})
    persons = PersonIdentifier(embedder, same_person_distance=0.6)
    faces = [_face(0, 0.0), _face(1, 1.0)]
    assert persons.update(np.zeros((4, 4, 3), np.uint8), faces) == [(0, None), (1, None)]


def test_the_threshold_must_be_positive():
    with pytest.raises(UserError, match="same_person_distance"):
        FaceSettings(same_person_distance=0.0)


def test_named_people_are_kept_across_recordings_and_their_reference_is_not_changed():
    ann = np.array([1.0, 0.0])
    embedder = _Lookup({0.0: np.array([1.3, 0.0]), 1.0: np.array([1.2, 0.0])})
    persons = PersonIdentifier(embedder, same_person_distance=0.6, named=[("Ann", ann)])
    image = np.zeros((4, 4, 3), np.uint8)
    assert persons.update(image, [_face(0, 0.0)]) == [(0, "Ann")]
    persons.reset()
    assert ann.tolist() == [1.0, 0.0]
    assert persons.update(image, [_face(0, 1.0)]) == [(0, "Ann")]
    assert persons.update(image, [_face(0, 1.0), _face(1, 0.0)]) == [(0, "Ann"), (1, None)]


def test_a_track_joins_a_person_only_when_that_person_is_clearly_the_nearest():
    """Near two people (within the threshold of both, less than CLEAR_MARGIN between the
    two distances): a new person, never one of theirs; clearly nearer one: that one."""
    embedder = _Lookup({0.0: np.array([0.0, 0.0]), 1.0: np.array([0.9, 0.0]),
                        2.0: np.array([0.45, 0.1]), 3.0: np.array([0.2, 0.0])})
    persons = PersonIdentifier(embedder, same_person_distance=0.6)
    image = np.zeros((4, 4, 3), np.uint8)
    assert persons.update(image, [_face(0, 0.0), _face(1, 1.0)]) == [(0, None), (1, None)]
    # (0.45, 0.1) is 0.461 from both: a tie, so someone new
    assert persons.update(image, [_face(2, 2.0)]) == [(2, None)]
    # (0.2, 0) is 0.2 from person 0 and 0.7 from person 1 (person 2 is 0.27 away, but
    # 0.07 farther than person 0 only: not a clear choice either)
    assert persons.update(image, [_face(3, 3.0)]) == [(3, None)]
    persons.reset()
    persons.update(image, [_face(0, 0.0), _face(1, 1.0)])
    assert persons.update(image, [_face(3, 3.0)]) == [(0, None)]  # 0.2 against 0.7: clear


def test_a_new_face_resumes_the_lost_track_of_the_person_it_clearly_is():
    """`resumable` (the tracker's reidentify) names the lost track of the new face's person,
    the most recently seen first; not when that person is in the frame, not on a near tie,
    and never one person's tracks for two faces. Its descriptors serve `update` too."""
    embedder = _Lookup({0.0: np.zeros(2), 1.0: np.array([3.0, 0.0]), 2.0: np.array([0.1, 0.0]),
                        3.0: np.array([1.5, 0.0]), 4.0: np.array([0.05, 0.0])})
    persons = PersonIdentifier(embedder, same_person_distance=0.6)
    image = np.zeros((4, 4, 3), np.uint8)
    persons.update(image, [_face(0, 0.0), _face(1, 1.0)])  # persons 0 and 1
    persons.update(image, [_face(5, 0.0)])  # a later track of person 0
    new = [((2.0, 0.0, 10.0, 10.0), np.zeros((68, 2)))]
    assert persons.resumable(image, new, lost=[5, 0, 1], present=[]) == [5]
    assert persons.resumable(image, new, lost=[5, 0, 1], present=[0]) == [None]  # 0 is here
    assert persons.resumable(image, new, lost=[1], present=[]) == [None]  # 0 has none lost
    assert persons.resumable(image, [new[0], ((4.0, 0.0, 10.0, 10.0), np.zeros((68, 2)))],
                             lost=[5, 0], present=[]) == [5, None]  # one person, one face
    calls = embedder.calls
    assert persons.update(image, [_face(9, 2.0), _face(8, 4.0)]) == [(0, None), (2, None)]
    assert embedder.calls == calls  # both descriptors were kept from `resumable`
    tie = PersonIdentifier(_Lookup({0.0: np.zeros(2), 1.0: np.array([1.0, 0.0]),
                                    3.0: np.array([0.5, 0.0])}), same_person_distance=0.6)
    tie.update(image, [_face(0, 0.0), _face(1, 1.0)])
    assert tie.resumable(image, [((3.0, 0.0, 10.0, 10.0), np.zeros((68, 2)))],
                         lost=[0, 1], present=[]) == [None]
