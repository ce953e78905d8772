"""AU detection scores of an FG-Net on labeled frames: per-AU F1, accuracy, support.

Output channels are matched to label columns by AU number, never by position, so a BP4D
checkpoint (12 channels) can be scored on DISFA labels (8 columns): on the AUs both define
(1, 2, 4, 6, 12). An AU is predicted active iff the mean of its clamped heatmap is > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from fgnet_video.aus import AU_SETS, au_name
from fgnet_video.errors import UserError
from fgnet_video.inference.precision import autocast, autocast_dtype
from fgnet_video.model.fgnet import FGNet, decode_heatmaps
from fgnet_video.train.data import (
    DataIssues,
    FrameDataset,
    check_frames,
    collate_frames,
    default_csv,
    read_labels,
)
from fgnet_video.train.distributed import (
    DistContext,
    all_reduce_sum,
    pick_device,
)
from fgnet_video.train.metrics import AUCounts
from fgnet_video.train.options import EvaluateOptions
from fgnet_video.train.progress import progress_bar
from fgnet_video.train.sampler import shard
from fgnet_video.weights.metadata import read_converted_metadata
from fgnet_video.weights.store import load_weights


@dataclass(frozen=True)
class ChannelMap:
    """Evaluated AUs, the model output channel of each and the label column of each."""

    aus: tuple[int, ...]
    channels: tuple[int, ...]
    columns: tuple[int, ...]


def channel_map(
    model_aus: Sequence[int], label_aus: Sequence[int], only: Sequence[int] | None = None
) -> ChannelMap:
    """Match model channels to label columns by AU number, in label order; `only` restricts
    the AUs further."""
    shared = [au for au in label_aus if au in model_aus]
    if only is not None:
        unknown = [au for au in only if au not in shared]
        if unknown:
            raise UserError(
                f"AU {', '.join(map(str, unknown))} is not both predicted by the model"
                f" ({', '.join(map(str, model_aus))}) and labeled in the data"
                f" ({', '.join(map(str, label_aus))})"
            )
        shared = [au for au in shared if au in only]
    if not shared:
        raise UserError(
            f"the model's AUs ({', '.join(map(str, model_aus))}) and the labeled AUs"
            f" ({', '.join(map(str, label_aus))}) have none in common"
        )
    return ChannelMap(
        aus=tuple(shared),
        channels=tuple(list(model_aus).index(au) for au in shared),
        columns=tuple(list(label_aus).index(au) for au in shared),
    )


def predicted_active(raw: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """(B, len(channels)) booleans: the mean of each selected clamped heatmap is > 0."""
    _, scores = decode_heatmaps(raw[:, list(channels)], len(channels))
    return scores > 0


@torch.no_grad()
def count_predictions(
    model: FGNet,
    dataset: FrameDataset,
    mapping: ChannelMap,
    *,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    issues: DataIssues | None = None,
    ctx: DistContext | None = None,
    show_progress: bool = True,
    description: str = "evaluate",
) -> AUCounts:
    """Confusion counts of `model` (put in eval mode) over `dataset`; under DDP each rank
    scores its shard and the counts are summed over ranks."""
    ctx = ctx or DistContext()
    issues = issues or DataIssues("fail")
    indices = shard(len(dataset), ctx.rank, ctx.world_size)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_frames,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),  # leaves the global random state alone
    )
    model.eval()
    counts = AUCounts.zeros(len(mapping.aus))
    columns = list(mapping.columns)
    show = show_progress and ctx.is_main
    with progress_bar(description, len(indices), show) as ticker:
        for batch in loader:
            for path, reason in batch.bad:
                issues.report(path, reason)
            if len(batch):
                images = batch.images.to(device, non_blocking=True)
                with autocast(device, amp_dtype):
                    raw = model(images)
                predicted = predicted_active(raw, mapping.channels).cpu().numpy()
                truth = batch.labels[:, columns].numpy() > 0.5
                counts = counts + AUCounts.from_predictions(predicted, truth)
            ticker.advance(len(batch) + len(batch.bad))
    reduced = all_reduce_sum(torch.as_tensor(counts.as_array(), device=device), ctx)
    return AUCounts.from_array(reduced.cpu().numpy())


# -- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation set (one fold's CSV)."""

    name: str
    aus: tuple[int, ...]
    counts: AUCounts
    skipped: int = 0

    def to_dict(self) -> dict:
        f1, accuracy = self.counts.f1(), self.counts.accuracy()
        per_au = {
            au_name(au): {
                "f1": float(f1[k]),
                "accuracy": float(accuracy[k]),
                "support": int(self.counts.support[k]),
                "tp": int(self.counts.tp[k]),
                "fp": int(self.counts.fp[k]),
                "fn": int(self.counts.fn[k]),
                "tn": int(self.counts.tn[k]),
            }
            for k, au in enumerate(self.aus)
        }
        return {
            "name": self.name,
            "n_frames": self.counts.n_frames,
            "skipped": self.skipped,
            "per_au": per_au,
            "mean_f1": float(f1.mean()),
            "mean_accuracy": float(accuracy.mean()),
        }


def average_results(results: Sequence[EvalResult]) -> dict:
    """Per-AU F1 and accuracy averaged over folds (the paper's 3-fold figure), support summed."""
    if not results:
        raise UserError("nothing was evaluated")
    aus = results[0].aus
    if any(r.aus != aus for r in results):
        raise UserError("the folds were scored on different AU sets; cannot average them")
    f1 = np.mean([r.counts.f1() for r in results], axis=0)
    accuracy = np.mean([r.counts.accuracy() for r in results], axis=0)
    support = np.sum([r.counts.support for r in results], axis=0)
    return {
        "name": f"mean of {len(results)} folds",
        "n_frames": int(sum(r.counts.n_frames for r in results)),
        "per_au": {
            au_name(au): {
                "f1": float(f1[k]),
                "accuracy": float(accuracy[k]),
                "support": int(support[k]),
            }
            for k, au in enumerate(aus)
        },
        "mean_f1": float(f1.mean()),
        "mean_accuracy": float(accuracy.mean()),
    }


def results_table(report: dict) -> Table:
    """A rich table: one row per AU, one F1 column per evaluated set (+ their mean), then the
    accuracy and support of the whole."""
    sets = report["sets"]
    summary = report.get("average") or sets[0]
    table = Table(title=report.get("title"), show_footer=True)
    table.add_column("AU", footer="mean")
    for entry in sets:
        table.add_column(f"F1 {entry['name']}", justify="right", footer=f"{entry['mean_f1']:.1f}")
    if report.get("average"):
        table.add_column("F1 mean", justify="right", footer=f"{summary['mean_f1']:.1f}")
    table.add_column("accuracy", justify="right", footer=f"{summary['mean_accuracy']:.1f}")
    table.add_column("support", justify="right")
    for au in summary["per_au"]:
        cells = [f"{entry['per_au'][au]['f1']:.1f}" for entry in sets]
        if report.get("average"):
            cells.append(f"{summary['per_au'][au]['f1']:.1f}")
        au_summary = summary["per_au"][au]
        table.add_row(au, *cells, f"{au_summary['accuracy']:.1f}", str(au_summary["support"]))
    return table


def run_labels(weights: Sequence[str]) -> list[str]:
    """Short column names for checkpoints: '<folder>/<file stem>' ('runs/aux/best.safetensors'
    -> 'aux/best'), the full paths when those collide."""
    short = [f"{Path(w).parent.name}/{Path(w).stem}".lstrip("/") for w in weights]
    return short if len(set(short)) == len(short) else [str(w) for w in weights]


def comparison_table(reports: Sequence[dict]) -> Table:
    """Several checkpoints' reports side by side: one row per AU, the F1 of each checkpoint
    (fold mean when several folds were scored) and, for two, the difference second - first."""
    summaries = [report.get("average") or report["sets"][0] for report in reports]
    aus = list(summaries[0]["per_au"])
    if any(list(s["per_au"]) != aus for s in summaries):
        raise UserError("the checkpoints were scored on different AUs; compare them with --aus")
    table = Table(title=f"F1 on {reports[0]['dataset']}", show_footer=True)
    table.add_column("AU", footer="mean")
    for label, summary in zip(run_labels([r["weights"] for r in reports]), summaries,
                              strict=True):
        table.add_column(label, justify="right", footer=f"{summary['mean_f1']:.1f}")
    two = len(summaries) == 2
    if two:
        delta = summaries[1]["mean_f1"] - summaries[0]["mean_f1"]
        table.add_column("difference", justify="right", footer=f"{delta:+.1f}")
    for au in aus:
        scores = [s["per_au"][au]["f1"] for s in summaries]
        cells = [f"{score:.1f}" for score in scores]
        if two:
            cells.append(f"{scores[1] - scores[0]:+.1f}")
        table.add_row(au, *cells)
    return table


# -- evaluating a checkpoint ---------------------------------------------------------------------

def _release_file(weights: str) -> bool:
    """Whether `weights` names a checkpoint file that does not record its AU set (not a
    converted file, not a known weights name): a release model.pth."""
    if not Path(weights).expanduser().is_file():
        return False
    try:
        read_converted_metadata(weights)
    except UserError:
        return True
    return False


def load_for_evaluation(weights: str, psp: str | None, dataset: str,
                        model_dataset: str | None,
                        offline: bool | None = None) -> tuple[FGNet, tuple[int, ...], str]:
    """(model, its AU set, its dataset name) of a `--weights` value: a file or a known name
    (fgnet_video.weights.store.load_weights; `offline` stops downloads). A converted file or known
    name carries its own AU set; a release model.pth is taken to be trained on
    `model_dataset`, else on the evaluated dataset."""
    release = _release_file(weights)
    if release and model_dataset is None and dataset.lower() in AU_SETS:
        model_dataset = dataset
    loaded = load_weights(weights, psp=psp, dataset=model_dataset if release else None,
                          offline=offline)
    return loaded.model, tuple(loaded.aus), loaded.dataset


def evaluate_weights(weights: str, dataset: str, data: str,
                     options: EvaluateOptions | None = None, **values: Any) -> dict:
    """Score `weights` (a checkpoint file or a known name; `{fold}` in a file name picks a
    checkpoint per fold) on each fold's test CSV (or on each of the `csvs`) of `dataset`
    under `data`. `options`, or its fields as keyword `values` (the two may be combined:
    `values` replace fields of `options`), say which sets, AUs and how. Returns the JSON
    report: {'sets': [per-set scores], 'average': fold means (when several), 'aus', ...}."""
    options = replace(options or EvaluateOptions(), **values)
    dataset = dataset.lower()
    ctx = DistContext()
    torch_device = pick_device(options.device, ctx)
    amp_dtype = autocast_dtype(options.precision, torch_device)
    csvs = options.csvs
    if csvs:
        sets = [(Path(csv).stem if len(csvs) == 1 else csv, None, Path(csv)) for csv in csvs]
    else:
        sets = [(f"fold {k}", k, default_csv(Path(data), dataset, k, "test"))
                for k in options.folds]
    issues = DataIssues(options.on_bad_data)
    results, entries, cache = [], [], {}
    model_info = {}
    for name, fold, csv in sets:
        path = weights.format(fold=fold) if "{fold}" in weights else weights
        if path not in cache:
            cache.clear()  # keep one model in memory
            cache[path] = load_for_evaluation(path, options.psp, dataset, options.model_dataset,
                                              options.offline)
        model, model_aus, model_name = cache[path]
        model.to(torch_device)
        table = read_labels(csv, data, dataset, issues, options.positive_threshold)
        table = check_frames(table, issues, show_progress=options.show_progress,
                             workers=options.num_workers)
        mapping = channel_map(model_aus, table.aus, options.aus)
        before = len(issues.found)
        counts = count_predictions(
            model, FrameDataset(table, model.config.image_size), mapping, device=torch_device,
            batch_size=options.batch_size, num_workers=options.num_workers, amp_dtype=amp_dtype,
            issues=issues, show_progress=options.show_progress, description=name,
        )
        result = EvalResult(name, mapping.aus, counts, skipped=len(issues.found) - before)
        results.append(result)
        entries.append({**result.to_dict(), "csv": str(csv), "weights": str(path)})
        model_info = {"dataset": model_name, "aus": list(model_aus)}
    if len({r.aus for r in results}) > 1:
        raise UserError("the evaluated sets label different AUs; evaluate them separately")
    report = {
        "title": f"{Path(weights).name} on {dataset}",
        "weights": str(weights),
        "dataset": dataset,
        "model": model_info,
        "aus": list(results[0].aus),
        "sets": entries,
        "average": average_results(results) if len(results) > 1 else None,
        "skipped": issues.items(),
    }
    return report
