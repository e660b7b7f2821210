"""The SCROLLS score as a `torchmetrics.Metric`: `update(ids, predictions, references)` per batch, `compute()` the
score over every id seen by every rank (Rgm and ROUGE-1/2/L, or F1), through `lightning_modules.metrics.score`.

torchmetrics syncs tensors only, so each (id, prediction, references) record is kept as its UTF-8 JSON bytes in
one `uint8` list state and its length in another, both gathered with `dist_reduce_fx="cat"` (rank order is kept,
so lengths and bytes line up). A DistributedSampler pads the last batch with repeated ids: one score per id.
"""

from __future__ import annotations

import json

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_modules.metrics import score


class ScrollsScore(Metric):
    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, task: str, **kwargs):
        super().__init__(**kwargs)
        self.task = task
        self.add_state("records", default=[], dist_reduce_fx="cat")  # uint8: the records' bytes, end to end
        self.add_state("lengths", default=[], dist_reduce_fx="cat")  # int64: each record's byte length
        self.predictions: dict[str, str] = {}  # every rank's predictions, one per id, as of the last compute()

    def update(self, ids, predictions, references) -> None:
        if not (len(ids) == len(predictions) == len(references)):
            raise ValueError(f"update() got {len(ids)} ids, {len(predictions)} predictions, {len(references)} reference lists")
        for doc_id, text, refs in zip(ids, predictions, references):
            data = json.dumps([str(doc_id), text, list(refs)]).encode()
            self.records.append(torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device))
            self.lengths.append(torch.tensor([len(data)], dtype=torch.long, device=self.device))

    def gathered(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        """The states as predictions and references by id (after a sync: every rank's)."""
        # a list of tensors before a sync, one tensor after it (an empty list: nothing seen)
        lengths = dim_zero_cat(self.lengths).cpu().tolist() if len(self.lengths) else []
        data = dim_zero_cat(self.records).cpu().numpy().tobytes() if lengths else b""
        predictions, references, start = {}, {}, 0
        for n in lengths:
            doc_id, text, refs = json.loads(data[start : start + n])
            predictions[doc_id], references[doc_id] = text, refs
            start += n
        return predictions, references

    def _sync_dist(self, *args, **kwargs) -> None:
        # torchmetrics stands a float32 tensor in for a rank's empty list state; the other ranks send uint8 / int64,
        # and the collective fails on the mismatch (gloo aborts). An empty tensor of the right dtype gathers cleanly.
        if not len(self.lengths):
            self.records = [torch.zeros(0, dtype=torch.uint8, device=self.device)]
            self.lengths = [torch.zeros(0, dtype=torch.long, device=self.device)]
        super()._sync_dist(*args, **kwargs)

    def compute(self) -> dict[str, float]:
        predictions, references = self.gathered()
        self.predictions = predictions
        return score(self.task, predictions, references)
