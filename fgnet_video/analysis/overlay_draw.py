"""What the overlay video shows on a frame: each face's box, its id on a tag, and its active
AUs as bars in a panel placed where it covers no face (`place_labels`, `place_panels`: pure
layout, then `draw_faces` draws). A face seen a moment ago but without a box in this frame
(missed, turned away: most likely still there) is kept clear too (`RecentFaces`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fgnet_video.analysis.stream import ScoredFrame
from fgnet_video.aus import au_name
from fgnet_video.face.boxes import overlap

BOX_COLOURS = [(46, 204, 113), (52, 152, 219), (231, 76, 60), (241, 196, 15), (155, 89, 182)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_COLOUR = (255, 255, 255)
BAR_BACKGROUND = (90, 90, 90)


Rect = tuple[int, int, int, int]  # x, y, w, h in pixels: columns [x, x + w), rows [y, y + h)
Size = tuple[int, int]  # w, h

MIN_FONT_SCALE = 0.3  # the smallest text drawn (Hershey capitals 8 px high): still readable
SHRINK = (1.0, 0.8, 0.65, 0.5)  # the panel size levels tried in turn (font and bar length)


@dataclass(frozen=True)
class _Style:
    """Sizes for one frame size: everything scales with the frame's shorter side; `shrink`
    (<= 1) makes the text (down to MIN_FONT_SCALE), rows and bars of a smaller level."""

    font_scale: float
    thickness: int  # of text strokes
    line: int  # of the face box
    pad: int  # space around text and between panel columns
    row: int  # height of one AU row (and of the id label)
    bar: int  # length of a full bar

    @classmethod
    def for_frame(cls, width: int, height: int, shrink: float = 1.0) -> _Style:
        font_scale = max(MIN_FONT_SCALE, max(0.35, min(width, height) / 900) * shrink)
        thickness = max(1, int(font_scale * 2))
        (text_width, text_height), baseline = cv2.getTextSize("AU00 0.00", FONT, font_scale,
                                                              thickness)
        pad = max(2, text_height // 3)
        return cls(font_scale, thickness, line=max(1, round(min(width, height) / 300)),
                   pad=pad, row=text_height + baseline + pad,
                   bar=max(8, round(text_width * min(shrink, 1.0))))

    def text_width(self, text: str) -> int:
        return cv2.getTextSize(text, FONT, self.font_scale, self.thickness)[0][0]

    def text(self, image: np.ndarray, text: str, left: int, top: int,
             colour: tuple[int, int, int]) -> None:
        """Draw `text` in a row whose top edge is at `top` (baseline placed inside it)."""
        (_, text_height), _ = cv2.getTextSize(text, FONT, self.font_scale, self.thickness)
        baseline_y = top + (self.row + text_height) // 2 - 1
        cv2.putText(image, text, (left, baseline_y), FONT, self.font_scale, colour,
                    self.thickness, cv2.LINE_AA)


def _shade(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken a rectangle (clipped to the image) so text on it stays readable."""
    height, width = image.shape[:2]
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * (1 - alpha)).astype(np.uint8)


def _inside(start: int, size: int, limit: int) -> int:
    """`start` moved so that [start, start + size) lies within [0, limit) (0 when too big)."""
    return max(0, min(start, limit - size))


def _union(a: Rect, b: Rect) -> Rect:
    """The smallest rectangle holding both."""
    x, y = min(a[0], b[0]), min(a[1], b[1])
    return x, y, max(a[0] + a[2], b[0] + b[2]) - x, max(a[1] + a[3], b[1] + b[3]) - y


def _in_frame(x: int, y: int, size: Size, frame: Size) -> Rect:
    """A `size` rectangle wanted at (x, y), moved inside the frame and cut to it when larger."""
    (w, h), (width, height) = size, frame
    x, y = _inside(x, w, width), _inside(y, h, height)
    return x, y, min(w, width - x), min(h, height - y)


def _free(rect: Rect, size: Size, taken: Sequence[Rect]) -> bool:
    """Whether `rect` holds all of `size` and overlaps nothing taken."""
    return rect[2:] == tuple(size) and not any(overlap(rect, other) for other in taken)


@dataclass(frozen=True)
class PanelLayout:
    """Where `place_panels` puts each face's AU panel."""

    panels: tuple[Rect | None, ...]  # per face; None: no panel, or the face is in the legend
    level: int  # the size level of every panel (index into the sizes given)
    legend: Rect | None = None  # the compact legend, when some face's panel found no spot
    in_legend: tuple[int, ...] = ()  # the faces listed in it, in order


def place_panels(frame: Size, boxes: Sequence[Rect],
                 sizes: Sequence[Sequence[Size | None]],
                 legend_sizes: Sequence[Size | None], gap: int = 0,
                 keep_clear: Sequence[Rect] = ()) -> PanelLayout:
    """Panel rectangles for the faces `boxes` in a frame of `frame` = (width, height).

    `sizes[level][i]`: face i's panel size at each level, largest first, at least one level
    (None: the face has no panel); `legend_sizes[i]`: its entry in the legend. A spot is free
    when the panel lies whole in the frame and overlaps no box, nothing of `keep_clear` (the
    places of faces without a box) and no panel placed before.
    Each face in turn takes the first free candidate of: right of its box, left, below,
    above (`gap` pixels off the box; top or left edge aligned with the box's), each moved
    inside the frame. The level is the first at which every panel finds a free spot. Past
    the last level the faces without one (the others keep their panels of that level) are
    listed in a legend, their entries stacked in one column, at the frame corner of least
    overlap area with the boxes and `keep_clear`, then with the panels (ties: top-left,
    top-right, bottom-left, bottom-right). Every rectangle returned lies within the frame
    (cut to it when larger)."""
    for level, level_sizes in enumerate(sizes):
        taken = [*boxes, *keep_clear]
        panels: list[Rect | None] = []
        for (x, y, w, h), size in zip(boxes, level_sizes, strict=True):
            spot = None
            if size is not None:
                candidates = ((x + w + gap, y), (x - gap - size[0], y), (x, y + h + gap),
                              (x, y - gap - size[1]))
                rects = (_in_frame(cx, cy, size, frame) for cx, cy in candidates)
                spot = next((rect for rect in rects if _free(rect, size, taken)), None)
            if spot is not None:
                taken.append(spot)
            panels.append(spot)
        left_out = tuple(i for i, size in enumerate(level_sizes)
                         if panels[i] is None and size is not None)
        if not left_out:
            return PanelLayout(tuple(panels), level)
    entries = [legend_sizes[i] for i in left_out]
    size = (max(w for w, _ in entries), sum(h for _, h in entries))
    width, height = frame
    corners = [_in_frame(x, y, size, frame) for y in (0, height - size[1])
               for x in (0, width - size[0])]
    placed = [panel for panel in panels if panel is not None]
    legend = min(corners, key=lambda rect: (sum(overlap(rect, box)
                                                for box in (*boxes, *keep_clear)),
                                            sum(overlap(rect, panel) for panel in placed)))
    return PanelLayout(tuple(panels), level, legend, left_out)


def place_labels(frame: Size, boxes: Sequence[Rect], sizes: Sequence[Size],
                 inset: int = 1, keep_clear: Sequence[Rect] = ()) -> list[Rect]:
    """Id label rectangles: for each face in turn, the first of above its box, below it and
    inside its top edge (`inset` pixels down) that lies whole in the frame and overlaps no
    other box, nothing of `keep_clear` and no label placed before; inside the top edge when
    none does. Left edges are the box's, moved inside the frame; every label lies within
    the frame."""
    labels: list[Rect] = []
    for index, ((x, y, _, h), size) in enumerate(zip(boxes, sizes, strict=True)):
        taken = [*boxes[:index], *boxes[index + 1:], *keep_clear, *labels]
        spots = [_in_frame(x, top, size, frame) for top in (y - size[1], y + h + inset)
                 if 0 <= top <= frame[1] - size[1]]
        inner = _in_frame(x, max(y, 0) + inset, size, frame)
        labels.append(next((spot for spot in spots if _free(spot, size, taken)), inner))
    return labels


def _id_label(canvas: np.ndarray, style: _Style, text: str, spot: Rect,
              colour: tuple[int, int, int]) -> None:
    """The face's id on a shaded tag at `spot`."""
    left, top, tag_width, tag_height = spot
    _shade(canvas, left, top, left + tag_width, top + tag_height)
    style.text(canvas, text, left + style.pad, top, colour)


def _panel_size(style: _Style, rows: Sequence[tuple[str, float]]) -> Size:
    text_column = max(style.text_width(f"{name} {score:.2f}") for name, score in rows)
    return text_column + style.bar + 3 * style.pad, style.row * len(rows) + style.pad


def _panel(canvas: np.ndarray, style: _Style, rows: Sequence[tuple[str, float]], spot: Rect,
           colour: tuple[int, int, int]) -> None:
    """One row per active AU (name and score, then a bar as long as the score) on a shaded
    panel at `spot`. The text column is as wide as its widest row, so text never meets a
    bar."""
    left, top, panel_width, panel_height = spot
    texts = [f"{name} {score:.2f}" for name, score in rows]
    text_column = max(style.text_width(text) for text in texts)
    _shade(canvas, left, top, left + panel_width, top + panel_height)
    bar_left = left + 2 * style.pad + text_column
    bar_height = max(2, style.row // 2)
    for index, (text, (_, score)) in enumerate(zip(texts, rows, strict=True)):
        row_top = top + style.pad // 2 + index * style.row
        style.text(canvas, text, left + style.pad, row_top, TEXT_COLOUR)
        bar_top = row_top + (style.row - bar_height) // 2
        bottom = bar_top + bar_height - 1
        cv2.rectangle(canvas, (bar_left, bar_top), (bar_left + style.bar - 1, bottom),
                      BAR_BACKGROUND, -1)
        filled = int(round(style.bar * min(score, 1.0)))
        if filled:
            cv2.rectangle(canvas, (bar_left, bar_top), (bar_left + filled - 1, bottom), colour,
                          -1)


def _legend_lines(label: str, rows: Sequence[tuple[str, float]]) -> list[str]:
    return [label, *(name for name, _ in rows)]


def _legend_size(style: _Style, label: str, rows: Sequence[tuple[str, float]]) -> Size:
    lines = _legend_lines(label, rows)
    return (max(style.text_width(line) for line in lines) + 2 * style.pad,
            style.row * len(lines) + style.pad)


def _legend(canvas: np.ndarray, style: _Style,
            entries: Sequence[tuple[str, Sequence[tuple[str, float]], tuple[int, int, int]]],
            spot: Rect) -> None:
    """The compact form: per face its id (in its colour), then its active AUs' names, one a
    line, on one shaded column at `spot`."""
    left, top, width, height = spot
    _shade(canvas, left, top, left + width, top + height)
    for label, rows, colour in entries:
        for index, line in enumerate(_legend_lines(label, rows)):
            row_top = top + style.pad // 2 + index * style.row
            style.text(canvas, line, left + style.pad, row_top, colour if index == 0 else
                       TEXT_COLOUR)
        top += _legend_size(style, label, rows)[1]


RECENT_SECONDS = 1.0  # a face seen this recently, without a box now, is kept clear


class RecentFaces:
    """Where the faces of the last RECENT_SECONDS were, frame to frame (one per overlay).

    A face the face stage saw a moment ago but gives no box in this frame (the detector
    missed it, the head turned away, its track was lost for a few frames) is most likely
    still there: the overlay keeps its last box clear of tags, panels and the legend. A face
    the face stage never found cannot be kept clear: nothing says where it is."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Rect, float]] = {}  # face id: (last box, time)

    def unboxed(self, scored: ScoredFrame) -> list[Rect]:
        """The last boxes of the faces seen within RECENT_SECONDS before this frame but not
        in it; then this frame's faces are remembered."""
        now = scored.frame.time
        here = {face.face_id for face in scored.faces}
        self._seen = {face_id: (box, time) for face_id, (box, time) in self._seen.items()
                      if 0 <= now - time <= RECENT_SECONDS}
        clear = [box for face_id, (box, _) in sorted(self._seen.items())
                 if face_id not in here]
        for face in scored.faces:
            self._seen[face.face_id] = (_rect(face.box), now)
        return clear


def _rect(box) -> Rect:
    """A float (x, y, w, h) box as whole pixels."""
    return tuple(int(round(v)) for v in box)


def face_tag(face) -> str:
    """The label of a face, as the table names it: the person's name, else "person P"
    (its person_id), with the track's face id: "Ann, id 3", "person 0, id 3"; "id 3" when
    the face stage gives no person."""
    if face.person is not None:
        return f"{face.person}, id {face.face_id}"
    if face.person_id is not None:
        return f"person {face.person_id}, id {face.face_id}"
    return f"id {face.face_id}"


def _colour_key(face) -> int:
    """One colour per person (per track when the face stage gives no person)."""
    return face.person_id if face.person_id is not None else face.face_id


def draw_faces(image: np.ndarray, scored: ScoredFrame, aus: Sequence[int],
               keep_clear: Sequence[Rect] = ()) -> np.ndarray:
    """A copy of the frame with, per face, its box, its label (`face_tag`) and a panel with
    one bar per active AU (score > 0; bar length = min(score, 1) x a full bar, the score
    printed beside its name). Sizes scale with the frame; everything drawn lies within it.

    Placement, so that nothing covers a face where that can be avoided, neither the boxed
    ones nor those at `keep_clear` (faces without a box in this frame: `RecentFaces`; exact
    rules: `place_labels`, then `place_panels`):
    - tag: above its box, else below it, else inside its top edge: the first whole in the
      frame that overlaps no other face box and no earlier tag.
    - panel: a face's obstacle is its box (strokes included) united with its tag. Candidates
      right of it, left, below, above, each moved inside the frame; a panel takes the first
      that overlaps no obstacle and no earlier panel. All panels of a frame share one size:
      the first level of SHRINK (text down to MIN_FONT_SCALE, rows and bars with it) at
      which every panel finds a spot.
    - fallback, past the smallest level: the faces still without a spot are listed (id, then
      AU names, one column) at the frame corner whose overlap area with the obstacles is
      least; the other faces keep their smallest panels."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    frame = (width, height)
    styles = [_Style.for_frame(width, height, shrink) for shrink in SHRINK]
    style = styles[0]
    boxes = [_rect(face.box) for face in scored.faces]
    colours = [BOX_COLOURS[_colour_key(face) % len(BOX_COLOURS)] for face in scored.faces]
    tags = [face_tag(face) for face in scored.faces]
    rows = [[(au_name(au), float(score)) for au, score in zip(aus, scores, strict=True)
             if score > 0] for scores in scored.scores]
    labels = place_labels(frame, boxes, [(style.text_width(tag) + 2 * style.pad, style.row)
                                         for tag in tags], inset=style.line,
                          keep_clear=keep_clear)
    line = style.line
    drawn = [_union((x - line, y - line, w + 2 * line + 1, h + 2 * line + 1), label)
             for (x, y, w, h), label in zip(boxes, labels, strict=True)]
    sizes = [[_panel_size(level, r) if r else None for r in rows] for level in styles]
    entries = [_legend_size(styles[-1], tag, r) if r else None
               for tag, r in zip(tags, rows, strict=True)]
    layout = place_panels(frame, drawn, sizes, entries, gap=style.pad, keep_clear=keep_clear)
    for (x, y, w, h), colour in zip(boxes, colours, strict=True):
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, line)
    for label, tag, colour in zip(labels, tags, colours, strict=True):
        _id_label(canvas, style, tag, label, colour)
    for spot, face_rows, colour in zip(layout.panels, rows, colours, strict=True):
        if spot is not None:
            _panel(canvas, styles[layout.level], face_rows, spot, colour)
    if layout.legend is not None:
        _legend(canvas, styles[-1], [(tags[i], rows[i], colours[i]) for i in layout.in_legend],
                layout.legend)
    return canvas
