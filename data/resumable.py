"""A training loader that can resume inside an epoch.

Each epoch's order is a permutation drawn from (seed, epoch) alone, so it does not depend on how many epochs
this process has run. Lightning saves the loader's `state_dict()` in every checkpoint and hands it back through
`load_state_dict()` on resume; the loader then skips the batches the run had already trained on in that
epoch. The position comes from the trainer's own progress (batches completed in the epoch), not from what the
loader has yielded, because Lightning fetches one batch ahead of the one it trains on.
Exact for one process; under DDP Lightning shards this sampler's order after the skip.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffle(Sampler):
    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.skip = n, int(seed), 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at each epoch's start
        self.epoch = int(epoch)

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)).tolist()
        skip, self.skip = self.skip, 0  # only the first pass after a resume starts late
        return iter(order[skip:])

    def __len__(self) -> int:
        return self.n


class ResumableLoader(DataLoader):
    """`position` reports the batches already trained on in the current epoch (set by the datamodule)."""

    position = None

    def state_dict(self) -> dict:
        done = int(self.position()) if self.position is not None else 0
        return {"epoch": self.sampler.epoch if isinstance(self.sampler, EpochShuffle) else None, "batches_done": done}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.sampler, EpochShuffle):
            self.sampler.skip = int(state.get("batches_done", 0)) * int(self.batch_size)
