"""How far a faster inference mode (reduced precision, another computation order) strays
from fp32: AU decision agreement on confident pairs and the largest heatmap difference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgnet_video.inference.engine import Prediction

CONFIDENT_MARGIN = 0.02  # a (face, AU) pair counts when the reference |score| exceeds this
REQUIRED_AGREEMENT = 0.995


@dataclass(frozen=True)
class Agreement:
    """decisions: share of confident (face, AU) pairs (reference |score| > margin) with the
    same decision (score > 0); pairs: their number; max_heatmap_diff and max_score_diff:
    largest absolute differences over all faces and AUs."""

    decisions: float
    pairs: int
    max_heatmap_diff: float
    max_score_diff: float

    @property
    def acceptable(self) -> bool:
        """The accuracy guard: at least 99.5% of the confident decisions agree."""
        return self.pairs > 0 and self.decisions >= REQUIRED_AGREEMENT


def compare_predictions(reference: Prediction, other: Prediction,
                        margin: float = CONFIDENT_MARGIN) -> Agreement:
    """Agreement of `other` with `reference` (both with heatmaps kept, same faces)."""
    if reference.heatmaps is None or other.heatmaps is None:
        raise ValueError("compare_predictions needs predictions made with keep_heatmaps=True")
    if reference.scores.shape != other.scores.shape:
        raise ValueError(f"score shapes differ: {reference.scores.shape} vs {other.scores.shape}")
    confident = np.abs(reference.scores) > margin
    same = (reference.scores > 0) == (other.scores > 0)
    pairs = int(confident.sum())
    return Agreement(
        decisions=float(same[confident].mean()) if pairs else float("nan"),
        pairs=pairs,
        max_heatmap_diff=float(np.abs(reference.heatmaps - other.heatmaps).max()),
        max_score_diff=float(np.abs(reference.scores - other.scores).max()),
    )
