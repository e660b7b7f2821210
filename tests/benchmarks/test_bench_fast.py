"""benchmarks/bench_fast.py: a CPU dry run end to end, and the largest-batch extrapolation (ran on the GPU only)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_fast import max_batch, paper_batch

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30


def dry_run(out, plan):
    """bench_fast.py on CPU with the tiny LED at 256 tokens, one timed step a cell -> its results.jsonl rows."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_fast.py"), "--tiny", "--device", "cpu", "--models", "led_base",
           "--lengths", "256", "--plan", plan, "--steps", "1", "--min-time", "0", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in open(out / "results.jsonl")]


def test_dry_run_on_cpu_writes_records_and_table(tmp_path):
    rows = dry_run(tmp_path, "train:paper:stock32,train:paper:fasteg")
    assert [(r["impl"], r["status"]) for r in rows] == [("stock32", "ok"), ("fasteg", "ok")]
    assert all(r["samples_per_s"] > 0 for r in rows)
    assert "step_graphs" not in rows[0]  # the stock cell is not a graph cell (on CPU the option is inert)
    table = (tmp_path / "table.md").read_text()
    assert "| led_base | train | 256 | 4 (paper) | fasteg |" in table


def test_largest_batch_extrapolation():
    P = 1 * GIB  # parameter bytes
    eager = dict(peak_bytes=10 * GIB, static_bytes=3 * GIB)  # params + AdamW moments at rest; + grads at the peak
    assert max_batch(eager, 6, P, None, cap=80 * GIB) == int((0.85 * 80 - 4) / ((10 - 4) / 6))
    # a graph cell: its allocated peak is the eager warm-up's (params, grads, activations; no moments yet), and
    # its end-of-cell allocated bytes include the graph's gradient buffers: extrapolating from those as for an
    # eager cell divided by ~0 (the H100 run asked for 6e10 samples)
    graph = dict(peak_bytes=7 * GIB, static_bytes=4 * GIB, peak_reserved_bytes=15 * GIB, step_graphs=1)
    assert max_batch(graph, 6, P, None, cap=80 * GIB) == int((0.85 * 80 - 4) / ((7 - 2) / 6))
    assert max_batch(dict(graph, peak_bytes=2 * GIB), 6, P, None, cap=80 * GIB) == 6 * 64  # capped


def test_paper_batch_past_the_papers_lengths():
    assert paper_batch("led_base", 4096) == 6 and paper_batch("led_base", 1024) == 24  # Table 5
    assert paper_batch("led_base", 8192) == 3 and paper_batch("led_base", 16384) == 1  # 6 x 4096 / S, at least 1
    assert paper_batch("led_large", 16384) == 1


def test_eos_cells_stop_on_the_chosen_token_on_cpu(tmp_path):
    # BigBird's tiny random model emits a token every row shares: both paths stop on it, and record where
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_fast.py"), "--tiny", "--device", "cpu", "--models",
           "bigbird_large", "--lengths", "512", "--plan", "gen:eos:stock32,gen:eos:fast", "--gen-tokens", "16",
           "--gen-batch", "4", "--steps", "1", "--min-time", "0", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
    assert [(r["impl"], r["status"]) for r in rows] == [("stock32", "ok"), ("fast", "ok")]
    stock, fast = rows
    assert stock["eos_id"] == fast["eos_id"] is not None  # one choice shared by both paths
    for r in rows:
        assert 1 <= r["decoded_steps"] <= 16 and r["rows_finished"] >= 1
        assert 1 <= r["mean_tokens_to_eos"] <= 16
    assert fast["decode_graphed"] is False  # no CUDA graph on the CPU, and the record says so


def test_lever_variants_parse_and_run_at_a_given_batch(tmp_path):
    from benchmarks.bench_fast import parse_impl

    assert parse_impl("fastcg") == ("fastcg", {"fl", "t64"})
    assert parse_impl("fastcg+bf16+copy-fl-t64") == ("fastcg", {"bf16", "copy"})
    for bad in ("fastcg+fp8", "stock32+bf16", "fastx", "fastcg+"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            parse_impl(bad)
    rows = dry_run(tmp_path, "train:3:fasteg+copy-fl,train:3:fasteg+bf16")
    assert [(r["impl"], r["batch"], r["status"]) for r in rows] == [("fasteg+copy-fl", 3, "ok"), ("fasteg+bf16", 3, "ok")]
