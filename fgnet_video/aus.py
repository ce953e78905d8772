"""Action unit sets of the datasets FG-Net was trained on, and their column names.

A checkpoint's output channels are read in the order of its AU set: BP4D uses
the first 12 of the 32 heatmaps, DISFA the first 8.
"""

from __future__ import annotations

from fgnet_video.errors import UserError

BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
AU_SETS: dict[str, tuple[int, ...]] = {"bp4d": BP4D_AUS, "disfa": DISFA_AUS}
CROSS_DATASET_AUS: tuple[int, ...] = (1, 2, 4, 6, 12)
DEFAULT_DATASET = "bp4d"  # the AU set of a release checkpoint when none is named
CUSTOM_DATASET = "custom"  # labeled data with any AU set (training and evaluation)
LABEL_DATASETS: tuple[str, ...] = (*AU_SETS, CUSTOM_DATASET)


def names(choices) -> str:
    """'a, b or c': choices for a message or a help text."""
    choices = sorted(choices)
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


def au_set(dataset: str) -> tuple[int, ...]:
    """The AU numbers of a known dataset, in output-channel order."""
    try:
        return AU_SETS[dataset.lower()]
    except KeyError:
        known = ", ".join(sorted(AU_SETS))
        raise UserError(f"unknown dataset {dataset!r} (known: {known})") from None


def au_name(au: int) -> str:
    """Column name of an AU, zero-padded as OpenFace does: 1 -> 'AU01'."""
    return f"AU{au:02d}"
