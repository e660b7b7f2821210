"""benchmarks/bench_families.py on the decoder-only family: a CPU dry run (prompt and answer as one sequence)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_on_cpu_benchmarks_the_decoder_only_lm_and_refuses_its_fast_path(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_families.py"), "--tiny", "--device", "cpu",
           "--models", "qwen3_0_6b", "--lengths", "128", "--plan", "train:stock32,gen:best,train:fast",
           "--steps", "1", "--warmup", "1", "--gen-reps", "1", "--gen-tokens", "3", "--target-len", "8",
           "--min-time", "0", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
    assert [(r["config"], r["mode"], r["ran_as"], r["status"]) for r in rows] == [
        ("qwen3_tiny", "train", "stock32", "ok"),
        ("qwen3_tiny", "gen", "stock16", "ok"),  # no fast path: the best is bf16 autocast
        ("qwen3_tiny", "train", None, "n/a: family qwen3 has no fast path"),
    ]
    for r in rows[:2]:
        assert r["samples_per_s"] > 0 and r["model_flops_per_sample"] > 0 and r["j_per_sample"] is None
        assert r["flops_source"] == "lightning_modules/families/qwen3.py (analytic)"
