"""Binary AU detection metrics from confusion counts (summable across batches, folds and ranks).

For one AU with true positives TP, false positives FP, false negatives FN, true negatives TN:

    F1       = 100 * 2 TP / (2 TP + FP + FN)      (0 when the denominator is 0, as sklearn)
    accuracy = 100 * (TP + TN) / (TP + FP + FN + TN)
    support  = TP + FN                              (frames where the AU is present)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AUCounts:
    """Confusion counts per AU: arrays of shape (n_aus,), int64."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @classmethod
    def zeros(cls, n_aus: int) -> AUCounts:
        return cls.from_array(np.zeros((4, n_aus), dtype=np.int64))

    @classmethod
    def from_predictions(cls, predicted: np.ndarray, truth: np.ndarray) -> AUCounts:
        """Counts from boolean (N, n_aus) predictions and ground truth."""
        predicted = np.asarray(predicted, dtype=bool)
        truth = np.asarray(truth, dtype=bool)
        if predicted.shape != truth.shape or predicted.ndim != 2:
            raise ValueError(f"predictions {predicted.shape} and truth {truth.shape} differ")
        return cls(
            tp=(predicted & truth).sum(0, dtype=np.int64),
            fp=(predicted & ~truth).sum(0, dtype=np.int64),
            fn=(~predicted & truth).sum(0, dtype=np.int64),
            tn=(~predicted & ~truth).sum(0, dtype=np.int64),
        )

    @classmethod
    def from_array(cls, array: np.ndarray) -> AUCounts:
        """Inverse of `as_array`: rows tp, fp, fn, tn."""
        tp, fp, fn, tn = np.asarray(array, dtype=np.int64)
        return cls(tp, fp, fn, tn)

    def as_array(self) -> np.ndarray:
        """(4, n_aus) int64, rows tp, fp, fn, tn (for all-reduce across processes)."""
        return np.stack([self.tp, self.fp, self.fn, self.tn])

    def __add__(self, other: AUCounts) -> AUCounts:
        return AUCounts.from_array(self.as_array() + other.as_array())

    @property
    def n_frames(self) -> int:
        return int((self.tp + self.fp + self.fn + self.tn).max(initial=0))

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn

    def f1(self) -> np.ndarray:
        """Per-AU F1 x 100."""
        denominator = 2 * self.tp + self.fp + self.fn
        return np.divide(
            200.0 * self.tp, denominator, out=np.zeros(len(self.tp)), where=denominator > 0
        )

    def accuracy(self) -> np.ndarray:
        """Per-AU accuracy x 100."""
        total = self.tp + self.fp + self.fn + self.tn
        return np.divide(
            100.0 * (self.tp + self.tn), total, out=np.zeros(len(self.tp)), where=total > 0
        )

    def mean_f1(self) -> float:
        return float(self.f1().mean()) if len(self.tp) else 0.0
