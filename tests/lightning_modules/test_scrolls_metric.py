"""The SCROLLS score as a torchmetrics Metric: the same numbers as `score`, one score per id, and its state
gathered across two real (gloo) processes by torchmetrics."""

import os
import random

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_modules.metrics import score
from lightning_modules.scrolls_metric import ScrollsScore


def _corpus(n=12, seed=0):
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "the", "ünïcode", "naïve", "«quoted»", "1", "2"]
    text = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
    ids = [f"doc{i}" for i in range(n)]
    preds = {i: text(rng.randint(0, 20)) for i in ids}
    refs = {i: [text(rng.randint(1, 20)) for _ in range(rng.randint(1, 3))] for i in ids}
    return ids, preds, refs


@pytest.mark.parametrize("task", ["summarization", "qa"])
def test_equals_score_in_one_process_with_repeated_ids_counted_once(task):
    ids, preds, refs = _corpus()
    metric = ScrollsScore(task)
    for start in range(0, len(ids), 5):
        chunk = ids[start : start + 5]
        metric.update(chunk, [preds[i] for i in chunk], [refs[i] for i in chunk])
    metric.update(ids[:2], [preds[i] for i in ids[:2]], [refs[i] for i in ids[:2]])  # a padded last batch repeats ids
    assert metric.compute() == pytest.approx(score(task, preds, refs))
    assert metric.predictions == preds


def test_reset_forgets_and_bad_update_is_refused():
    ids, preds, refs = _corpus(4)
    metric = ScrollsScore("qa")
    metric.update(ids, [preds[i] for i in ids], [refs[i] for i in ids])
    metric.reset()
    metric.update(ids[:1], ["x"], [["x"]])
    assert metric.compute() == {"f1": 100.0}
    with pytest.raises(ValueError, match="2 ids, 1 predictions"):
        metric.update(ids[:2], ["x"], [["x"], ["y"]])


def _rank(rank, world, init_file, out_file, empty_rank=None):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ids, preds, refs = _corpus(7)  # 7 ids over 2 ranks: rank 1 gets a repeat, as DistributedSampler pads
    mine = (ids + ids[:1])[rank::world]
    metric = ScrollsScore("summarization")
    if rank == 0:  # rank 1 sees no batch before its one: uneven state sizes across ranks
        metric.update(mine[:2], [preds[i] for i in mine[:2]], [refs[i] for i in mine[:2]])
        mine = mine[2:]
    if rank != empty_rank:
        metric.update(mine, [preds[i] for i in mine], [refs[i] for i in mine])
    result = metric.compute()
    torch.save({"result": result, "n": len(metric.predictions), "local": len(metric.records)}, f"{out_file}.{rank}")
    dist.destroy_process_group()


def test_state_is_gathered_across_ranks_by_torchmetrics(tmp_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    _, preds, refs = _corpus(7)
    expected = score("summarization", preds, refs)
    for rank in range(2):
        got = torch.load(tmp_path / f"out.{rank}")
        assert got["result"] == pytest.approx(expected)  # every rank scores the union
        assert got["n"] == 7
        assert got["local"] == 4  # after compute, each rank's own state is back (torchmetrics unsyncs)


def test_a_rank_that_saw_nothing_still_gets_everyones_score(tmp_path):
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(tmp_path / "out"), 1), nprocs=2, join=True)
    _, preds, refs = _corpus(7)
    seen = (list(preds) + list(preds)[:1])[0::2]
    expected = score("summarization", {i: preds[i] for i in seen}, {i: refs[i] for i in seen})
    for rank in range(2):
        assert torch.load(tmp_path / f"out.{rank}")["result"] == pytest.approx(expected)
