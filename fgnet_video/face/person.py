"""Person ids that survive gaps: the face tracks of one recording grouped by identity.

A face track (`face_id`) ends when its face is lost for longer than the tracker remembers it
(it left the picture, a cut, an occlusion); when the person comes back, a new track starts.
`PersonIdentifier` gives each track a `person_id` with dlib's face-recognition embedding
(ResNet, 128-d descriptor; faces of one person lie within Euclidean distance ~0.6):

- a track is identified on its first frame, from that frame's descriptor d alone: it takes
  the person p whose mean descriptor m_p is nearest, when ||d - m_p|| < `same_person_distance`,
  p is not already in this frame (two faces of one frame are never one person) and p is
  clearly the nearest (every other person not in this frame at least CLEAR_MARGIN farther:
  two people are never given one id on a near tie); else a new person id (0, 1, 2, ... in
  order of appearance). The decision is final: rows already
  written are never changed;
- the descriptors of the track's first `EMBED_FRAMES` frames (its first frame included), and
  then of every REFERENCE_EVERY-th frame of it, join the person's reference: m_p is the mean
  of every descriptor a track of p contributed, so later tracks are compared with a steadier
  reference than one frame, which also covers the poses and sizes the person was seen in
  over the whole track (a man seen at 137 px, then turning to 95-115 px, is 0.516 from his
  first three frames when he comes back after a cut, 0.382 from the mean over his track:
  benchmarks/real_footage, friends_poker).

The same rule lets the tracker resume a lost track by appearance (`resumable`, the
tracker's `reidentify`): a new face clearly of the person of a recently lost track continues
that track, with the descriptor computed then (and kept for its first frame here).

Named people (`FaceSettings.people`, `--people NAME=PHOTO`) are the first persons of every
recording, ids 0, 1, ... in the order given, each with the descriptor of the largest face of
its photo (dlib HOG with upsample 1 and 68 landmarks: the still-photo recipe of
`fgnet_video.face.still`) as its reference; a track matching one gets its id and name.

Cost: one descriptor per track frame embedded (EMBED_FRAMES per track, then one every
REFERENCE_EVERY frames), the faces of a frame in one batch on the model's device: about
16 ms for one face on one core of the development machine, 5.7 ms each in a batch of 16
(dlib's own: 75 ms; `python benchmarks/descriptor_parity.py`), so under 1 ms per face and
frame once a track is older than its first frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fgnet_video.errors import UserError
from fgnet_video.face.landmarks import Box, model_file
from fgnet_video.face.still import ReleaseAligner
from fgnet_video.face.track import TrackedFace
from fgnet_video.media.images import read_rgb
from fgnet_video.options import parse_person

if TYPE_CHECKING:
    import torch

FACE_DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
EMBED_FRAMES = 3  # a track's first frames whose descriptors join its person's reference
# then one analysed frame of the track in this many (about once a second at 25 fps; every 5 s
# with --fps 5)
REFERENCE_EVERY = 25
# A track joins the nearest person only when the next nearest is at least this much farther
# (Euclidean, descriptor units): an audience member 0.525 from a pianist and 0.542 from
# another person is no one's for sure (benchmarks/real_footage, hamilton_whitehouse).
CLEAR_MARGIN = 0.1


def descriptor_reader(device: str | torch.device = "cpu"
                      ) -> Callable[[np.ndarray], np.ndarray]:
    """dlib's ResNet in PyTorch on `device` (`fgnet_video.face.descriptor_net`, within 1.4e-6
    of dlib's numbers in fp32) as a function: (N, 150, 150, 3) uint8 chips -> (N, 128)
    float64 descriptors, in one batch."""
    from fgnet_video.face.descriptor_net import FaceDescriptorNet

    net = FaceDescriptorNet.from_file(model_file(FACE_DESCRIPTOR_MODEL)).to(device)
    return lambda chips: net.describe(chips).cpu().numpy().astype(np.float64)


class FaceEmbedder:
    """dlib's 128-d face descriptor of faces given by their 68 landmarks: dlib's 150x150
    face chip (`fgnet_video.face.face_chip`, pixel-exact, cut here) read by `read_chips`
    (default: `descriptor_reader(device)`; a study's worker process passes the network its
    main process runs on the model's device, `fgnet_video.study.face_server`), the faces of
    a frame in one batch. One instance per thread."""

    def __init__(self, device: str | torch.device = "cpu",
                 read_chips: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.read_chips = read_chips or descriptor_reader(device)

    def describe(self, image: np.ndarray, faces: Sequence[tuple[Box, np.ndarray]]
                 ) -> np.ndarray:
        """(N, 128) float64 descriptors of N faces, each (box, (68, 2) landmarks), of a uint8
        RGB image. The landmarks place the chip; dlib reads them as integer points, so they
        are rounded first."""
        from fgnet_video.face.face_chip import chip_transform, extract_chips

        if not faces:
            return np.zeros((0, 128))
        transforms = [chip_transform(np.round(points)) for _, points in faces]
        return self.read_chips(extract_chips(np.ascontiguousarray(image), transforms))

    def __call__(self, image: np.ndarray, box: Box, landmarks: np.ndarray) -> np.ndarray:
        """(128,) float64 descriptor of one face."""
        return self.describe(image, [(box, landmarks)])[0]


# A reference photo is searched for its face at most this large (longer side, px): a camera's
# 110-megapixel photo would otherwise take minutes and gigabytes; a face in a photo this
# size still spans hundreds of pixels.
PHOTO_MAX_SIDE = 4000


def named_references(people: Sequence[str],
                     embedder: FaceEmbedder) -> list[tuple[str, np.ndarray]]:
    """(name, descriptor of the largest face of the photo) of each 'NAME=PHOTO'."""
    if not people:
        return []
    aligner = ReleaseAligner()
    references = []
    for name, photo in map(parse_person, people):
        image = read_rgb(photo, max_side=PHOTO_MAX_SIDE)
        face = aligner.largest_face(image)
        if face is None:
            raise UserError(f"{photo}: no face found in the photo of {name}")
        references.append((name, embedder(image, *face)))
    return references


@dataclass
class _Person:
    total: np.ndarray  # sum of the descriptors contributed so far
    count: int
    name: str | None = None

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count


@dataclass
class _TrackState:
    person_id: int
    frames: int = 0  # frames of this track seen so far

    def joins_reference(self) -> bool:
        """Whether the track's next frame's descriptor joins its person's reference."""
        return self.frames < EMBED_FRAMES or self.frames % REFERENCE_EVERY == 0


@dataclass
class PersonIdentifier:
    """The person id (and name) of each tracked face of one recording, frame by frame (see
    module doc); `named` are the (name, descriptor) of the named people."""

    embedder: FaceEmbedder
    same_person_distance: float = 0.6
    named: list[tuple[str, np.ndarray]] = field(default_factory=list)
    people: list[_Person] = field(default_factory=list)
    tracks: dict[int, _TrackState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new recording (person ids restart after the named people)."""
        self.people = [_Person(descriptor, 1, name) for name, descriptor in self.named]
        self.tracks.clear()
        # `resumable`'s descriptors: (the image they hold for, {box: descriptor})
        self._described: tuple[np.ndarray, dict[tuple[float, ...], np.ndarray]] | None = None

    def _nearest(self, descriptor: np.ndarray, taken: set[int]) -> int | None:
        """The person a descriptor is: the nearest person not in this frame (`taken`), when
        it is near (under `same_person_distance`) and clearly the nearest (every other such
        person at least CLEAR_MARGIN farther); else None."""
        distances = sorted((float(np.linalg.norm(descriptor - person.mean)), person_id)
                           for person_id, person in enumerate(self.people)
                           if person_id not in taken)
        if distances and distances[0][0] < self.same_person_distance and (
                len(distances) == 1 or distances[1][0] - distances[0][0] >= CLEAR_MARGIN):
            return distances[0][1]
        return None

    def _identify(self, descriptor: np.ndarray, taken: set[int]) -> int:
        """The person of a new track's first descriptor (`_nearest`), or a new person."""
        found = self._nearest(descriptor, taken)
        if found is not None:
            return found
        self.people.append(_Person(np.zeros_like(descriptor), 0))
        return len(self.people) - 1

    def resumable(self, image: np.ndarray, faces: list[tuple[Box, np.ndarray]],
                  lost: list[int], present: list[int]) -> list[int | None]:
        """The tracker's `reidentify` (`fgnet_video.face.track`): for each new face (box,
        landmarks) of `image`, the lost track (of the face ids `lost`, the most recently
        seen first) of the person it is (`_nearest`, persons of the `present` face ids
        excluded), or None. Two faces never resume tracks of one person. The descriptors
        are kept for `update` of the same image, which then does not compute them again;
        nothing is computed when no lost track has been identified here."""
        lost = [i for i in lost if i in self.tracks]  # tracks this identifier has seen
        if not lost:
            return [None] * len(faces)
        descriptors = self.embedder.describe(image, faces)
        self._described = (image, {tuple(box): d for (box, _), d in zip(faces, descriptors,
                                                                        strict=True)})
        taken = {self.tracks[i].person_id for i in present if i in self.tracks}
        resumed: list[int | None] = []
        for descriptor in descriptors:
            person = self._nearest(descriptor, taken)
            track = next((i for i in lost if self.tracks[i].person_id == person), None)
            if track is not None:
                taken.add(person)
            resumed.append(track)
        return resumed

    def update(self, image: np.ndarray,
               faces: list[TrackedFace]) -> list[tuple[int, str | None]]:
        """(person id, name or None) of each face of the next frame (uint8 RGB), in the order
        of `faces`.

        Descriptors are computed only for the frames whose descriptors join a reference
        (`_TrackState.joins_reference`; a new track's first frame is one).
        """
        taken = {self.tracks[f.face_id].person_id for f in faces if f.face_id in self.tracks}
        wanted = [f for f in faces if f.face_id not in self.tracks
                  or self.tracks[f.face_id].joins_reference()]
        described, self._described = self._described, None
        known = described[1] if described is not None and described[0] is image else {}
        missing = [f for f in wanted if tuple(f.box) not in known]
        computed = iter(self.embedder.describe(image, [(f.box, f.landmarks) for f in missing]))
        descriptors = [known[tuple(f.box)] if tuple(f.box) in known else next(computed)
                       for f in wanted]
        for face, descriptor in zip(wanted, descriptors, strict=True):
            state = self.tracks.get(face.face_id)
            if state is None:
                state = _TrackState(self._identify(descriptor, taken))
                self.tracks[face.face_id] = state
                taken.add(state.person_id)
            person = self.people[state.person_id]
            person.total = person.total + descriptor  # a new array: `named` stays as it was
            person.count += 1
        states = [self.tracks[f.face_id] for f in faces]
        for state in states:
            state.frames += 1
        return [(state.person_id, self.people[state.person_id].name) for state in states]
