"""DDP on CPU (gloo, 2 processes): under Hydra multirun each job runs once, in its own directory; evaluation
split across ranks scores every id once and equals the single-process result; ddp_spawn keeps working."""

import json
import time

import pytest

from conftest import records, run_cli

SMOKE = ["experiment=smoke", "module.generation.min_new_tokens=3"]  # non-empty predictions to compare


def test_ddp_inside_a_multirun_runs_each_job_once_in_its_own_directory(tmp_path, cache_dir):
    started = time.time()
    run_cli("train.py", "-m", *SMOKE, "strategy=ddp_cpu", "seq_len=160,192", out=tmp_path, cache=cache_dir)
    elapsed = time.time() - started
    runs = records(tmp_path)
    assert len(runs) == 2, sorted(map(str, runs))
    for run, rec in runs.items():
        assert rec["status"] == "ok" and rec["world_size"] == 2 and rec["strategy"] == "ddp_cpu"
        assert rec["samples_seen"] == 2 * 4 * 4  # both ranks' batches: 2 ranks x 4 steps x batch 4
        # rank 0 logged the job, rank 1 ran in the same directory as a single run (its own log, no .hydra of its own)
        assert (run / "train.log").exists() and (run / "train_rank1.log").exists()
        assert len(list(run.glob("**/.hydra"))) == 1
        # one CodeCarbon tracker for the node, not one per rank
        assert len((run / "emissions.csv").read_text().strip().splitlines()) == 2
    # nothing else was written: no second sweep started by the children, no stray run directories
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweeps"]
    assert sorted(p.name for p in (tmp_path / "sweeps").iterdir()) == ["smoke"]
    jobs = sorted(p.name for p in (tmp_path / "sweeps" / "smoke").iterdir() if p.is_dir())
    assert [j.rsplit("_", 1)[0] for j in jobs] == ["led_tiny_synthetic_160", "led_tiny_synthetic_192"]
    print(f"two DDP jobs in {elapsed:.0f} s")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("ckpt")
    run = out / "run"
    # 9 validation ids: two ranks get 5 each, one of them a repeat the sampler pads with
    run_cli("train.py", *SMOKE, "data.synthetic.n_validation=9", f"hydra.run.dir={run}", out=out, cache=cache_dir)
    return run


def _predictions(path):
    return {r["id"]: r["prediction"] for r in map(json.loads, path.read_text().splitlines())}


def test_evaluation_under_ddp_equals_the_single_process_result(checkpoint, tmp_path, cache_dir):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_cli("infer.py", f"run_dir={checkpoint}", f"hydra.run.dir={single}", out=tmp_path, cache=cache_dir)
    run_cli("infer.py", f"run_dir={checkpoint}", "strategy=ddp_cpu", f"hydra.run.dir={ddp}", out=tmp_path, cache=cache_dir)
    a, b = json.loads((single / "metrics.json").read_text()), json.loads((ddp / "metrics.json").read_text())
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert a["n_scored"] == b["n_scored"] == 9  # each id scored once, the sampler's repeat dropped
    for key in ("rouge1", "rouge2", "rougeL", "rgm"):
        assert a[key] == pytest.approx(b[key])
    preds = _predictions(single / "predictions.jsonl")
    assert preds == _predictions(ddp / "predictions.jsonl") and any(preds.values())


def test_ddp_spawn_still_works(tmp_path, cache_dir):
    run = tmp_path / "spawn"
    run_cli("train.py", *SMOKE, "strategy=ddp_cpu", "strategy.backend=ddp_spawn", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["world_size"] == 2 and rec["samples_seen"] == 32
    assert rec["rgm"] is not None and rec["costs"]["train_samples_per_s"]["value"] > 0
