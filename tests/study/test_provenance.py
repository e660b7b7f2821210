"""provenance: which hardware, libraries and commit produced a run, in every train and infer metrics.json."""

import json
import subprocess

import pytest

from conftest import run_cli
from study import provenance

SMOKE = ["experiment=smoke", "model=led_tiny"]


def _check_block(p: dict) -> None:
    assert set(p) == {"gpu_names", "gpu_count", "gpu_memory_gib", "driver", "cpu_model", "host", "cuda", "versions", "git_commit", "git_dirty"}
    assert isinstance(p["gpu_names"], list) and isinstance(p["gpu_memory_gib"], list) and isinstance(p["gpu_count"], int)
    assert isinstance(p["cpu_model"], str) and p["cpu_model"] and isinstance(p["host"], str) and p["host"]
    assert p["driver"] is None or isinstance(p["driver"], str)
    assert p["cuda"] is None or isinstance(p["cuda"], str)
    assert set(p["versions"]) == {"torch", "transformers", "pytorch_lightning", "codecarbon"}
    assert all(isinstance(v, str) and v[0].isdigit() for v in p["versions"].values())
    assert p["git_commit"] is None or (len(p["git_commit"]) == 40 and isinstance(p["git_dirty"], bool))


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache_dir):
    """One finished tiny train run (infer.py's provenance: tests/test_train.py's infer test)."""
    out = tmp_path_factory.mktemp("prov")
    run_dir = out / "run"
    run_cli("train.py", *SMOKE, "callbacks.speed.warmup_steps=2", "callbacks.energy.tracking_mode=process",
            f"hydra.run.dir={run_dir}", out=out, cache=cache_dir)
    return run_dir


def check_cpu_run(p: dict) -> None:
    """A CPU run's provenance block: typed, no GPU (an empty list, not an unknown one), this machine's CPU and torch."""
    import torch

    _check_block(p)
    assert p["gpu_count"] == 0 and p["gpu_names"] == [] and p["driver"] is None
    assert p["versions"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert p["cpu_model"] == provenance.cpu_model()


def test_a_train_run_records_its_provenance(run):
    train = json.loads((run / "metrics.json").read_text())
    check_cpu_run(train["provenance"])
    head = subprocess.run(["git", "-C", str(provenance.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert train["provenance"]["git_commit"] == head.stdout.strip()


def test_the_run_records_its_cpu_share_and_its_one_time_and_steady_costs(run):
    rec = json.loads((run / "metrics.json").read_text())
    a = rec["cpu_attribution"]
    assert a["tracking_mode"] == "process"
    assert a["contended"] is None or isinstance(a["contended"], bool)
    c = rec["costs"]
    assert c["warmup_samples"]["value"] == 8  # 2 warm-up steps of batch 4; the smoke run has 4 steps
    warm, train = c["warmup_energy_kwh"]["value"], c["energy_train_kwh"]["value"]
    steady = c["steady_joules_per_sample"]["value"] * (rec["samples_seen"] - 8)
    assert warm * 3.6e6 + steady == pytest.approx(train * 3.6e6, rel=1e-6)
    assert c["steady_avg_power_w"]["value"] > 0 and c["steady_power_efficiency"]["value"] > 0


def test_unknown_parts_are_null_and_never_stop_a_run(monkeypatch):
    """No git, a broken /proc, no GPU properties: null, not a crash."""
    import torch

    def boom(*a, **k):
        raise OSError("no such thing")

    monkeypatch.setattr(subprocess, "run", boom)
    monkeypatch.setattr(torch.cuda, "get_device_properties", boom)
    p = provenance.collect(gpu_devices=[0, 1], gpu_count=2)
    assert p["git_commit"] is None and p["git_dirty"] is None
    assert p["gpu_names"] == [None, None] and p["gpu_memory_gib"] == [None, None] and p["gpu_count"] == 2
    _check_block(p)


def test_git_that_hangs_is_cut_short(monkeypatch):
    def hang(*a, timeout=None, **k):
        assert timeout is not None and timeout <= 10  # never waits on git without a limit
        raise subprocess.TimeoutExpired(a[0], timeout)

    monkeypatch.setattr(subprocess, "run", hang)
    assert provenance.git_state() == (None, None)


def test_a_copied_tree_takes_its_commit_from_the_environment(monkeypatch):
    # a copy of the tree whose .git is missing or stale (seen on the lent GPU machine: a .git at an older commit):
    # STUDY_GIT_COMMIT names the commit and wins over git; whether the copy is dirty is then unknown
    monkeypatch.setattr(provenance, "_git", lambda *a: "e91aedd" if a[0] == "rev-parse" else "")
    monkeypatch.setenv("STUDY_GIT_COMMIT", "abc123")
    assert provenance.git_state() == ("abc123", None)
    monkeypatch.delenv("STUDY_GIT_COMMIT")
    assert provenance.git_state() == ("e91aedd", False)
