"""benchmarks/decode_probe.py: a CPU dry run of every decode attention, and the floor's byte count."""

import json
import subprocess
import sys
from pathlib import Path

from lightning_modules.fast.flops import decode_step_bytes

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_times_every_decode_attention(tmp_path):
    out = tmp_path / "probe.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "decode_probe.py"), "--tiny", "--models", "led_base", "--batch",
           "2", "--length", "256", "--new", "4", "--compiled", "", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in open(out)]
    decode = [r for r in rows if r["kind"] == "decode"]
    assert sorted({r["attn"] for r in decode}) == ["bmm", "flash", "flex", "sdpa"]
    assert {r["padded"] for r in decode} == {True, False}
    assert all(r["status"] == "ok" and r["step_ms"] > 0 and r["pct_of_floor"] > 0 for r in decode)
    # every attention decodes the same tokens (fp32 on the CPU)
    assert len({json.dumps(r["tokens"]) for r in decode if not r["padded"]}) == 1
    assert "| led_base | False | flash |" in proc.stdout


def test_decode_step_bytes_counts_cross_kv_weights_and_cache():
    arch = dict(d_model=8, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=16, decoder_ffn_dim=32, vocab_size=100)
    B, S, new = 3, 64, 4
    cross = 2 * 2 * B * S * 8  # layers x (k, v) x B x S x d_model
    weights = 2 * (6 * 8 * 8 + 2 * 8 * 32) + 100 * 8  # self q,k,v,o + cross q,o; fc1, fc2; the LM head
    cache = 2 * 2 * B * 8 * (new + 1) / 2  # the self-attention cache, half full on average
    assert decode_step_bytes(arch, B, S, new) == 2 * (cross + weights + cache)
