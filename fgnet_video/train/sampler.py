"""Deterministic, resumable, rank-sharded batch order.

An epoch of the release is a fixed number of iterations, not a pass over the data. The
global order of epoch e is a stream of permutations of the N frames drawn from a generator
seeded by (seed, e), concatenated until it covers `iterations * batch_size` frames. Global
batch i is stream[i*B : (i+1)*B]; with W processes, rank r reads that batch's frames
r, r+W, r+2W, ... (as torch's DistributedSampler strides its indices). The order is a pure
function of (seed, epoch, iteration, rank, world size), so a run resumes mid-epoch exactly.
A second data stream (the unlabeled frames of auxiliary tasks) passes `stream` > 0 and gets
an order of its own from the generator seeded by (seed, epoch, stream).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from fgnet_video.errors import UserError


def epoch_order(n_frames: int, n_needed: int, seed: int, epoch: int,
                stream: int = 0) -> np.ndarray:
    """The first `n_needed` frame indices of epoch `epoch`'s permutation stream."""
    rng = np.random.default_rng([seed, epoch] if stream == 0 else [seed, epoch, stream])
    n_perms = -(-n_needed // n_frames)
    return np.concatenate([rng.permutation(n_frames) for _ in range(n_perms)])[:n_needed]


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of this rank for iterations `start .. iterations-1` of one epoch."""

    def __init__(
        self,
        n_frames: int,
        batch_size: int,
        iterations: int,
        seed: int,
        epoch: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        stream: int = 0,
    ):
        if n_frames <= 0:
            raise UserError("no training frames left to sample from")
        if batch_size % world_size:
            raise UserError(
                f"the batch size {batch_size} must be divisible by the {world_size} processes"
            )
        self.batch_size = batch_size
        self.iterations = iterations
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self._order = epoch_order(n_frames, iterations * batch_size, seed, epoch, stream)

    def __len__(self) -> int:
        return max(self.iterations - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(self.start, self.iterations):
            batch = self._order[i * self.batch_size : (i + 1) * self.batch_size]
            yield batch[self.rank :: self.world_size].tolist()


def shard(n_frames: int, rank: int, world_size: int) -> list[int]:
    """This rank's share of an evaluation set: frames rank, rank+W, ... (disjoint, no padding)."""
    return list(range(rank, n_frames, world_size))
