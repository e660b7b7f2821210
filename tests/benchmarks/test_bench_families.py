"""benchmarks/bench_families.py: a CPU dry run of stock against each family's best implementation."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_on_cpu_covers_a_family_with_and_without_a_fast_path(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_families.py"), "--tiny", "--device", "cpu",
           "--models", "led_base,longt5_base", "--lengths", "256", "--plan", "train:stock32,train:best,gen:best,train:fast",
           "--steps", "1", "--warmup", "1", "--gen-reps", "1", "--gen-tokens", "3", "--target-len", "8",
           "--min-time", "0", "--best", "fasteg,fast", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
    got = [(r["model"], r["config"], r["mode"], r["impl"], r["ran_as"], r["status"]) for r in rows]
    assert got == [
        ("led_base", "led_tiny", "train", "stock32", "stock32", "ok"),
        ("led_base", "led_tiny", "train", "best", "fasteg", "ok"),  # the GPU default, fastcg, compiles: minutes on a CPU
        ("led_base", "led_tiny", "gen", "best", "fast", "ok"),
        ("led_base", "led_tiny", "train", "fast", "fast", "ok"),
        ("longt5_base", "longt5_tiny", "train", "stock32", "stock32", "ok"),
        ("longt5_base", "longt5_tiny", "train", "best", "stock16", "ok"),
        ("longt5_base", "longt5_tiny", "gen", "best", "stock16", "ok"),
        ("longt5_base", "longt5_tiny", "train", "fast", None, "n/a: family longt5 has no fast path"),
    ]
    for r in rows:
        if r["status"] == "ok":
            assert r["samples_per_s"] > 0 and r["tflops"] > 0 and r["model_flops_per_sample"] > 0
            assert r["j_per_sample"] is None and r["energy_source"] is None  # no NVML on a CPU: unknown, not zero
            assert r["warmup_s"] > 0 and r["flops_source"].startswith("lightning_modules/families/")
    assert "| longt5_base | longt5 | train | 256 | 1 | best | stock16 | ok |" in (tmp_path / "table.md").read_text()
