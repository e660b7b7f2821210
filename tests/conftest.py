"""Shared fixtures: a tiny corpus config and a helper that runs the project's commands as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# small enough for 2 CPU cores: 256-token documents, a handful of steps
TINY = [
    "data.synthetic.n_train=32",
    "data.synthetic.n_validation=8",
    "data.synthetic.n_test=4",
    "data.synthetic.doc_tokens=256",
    "seq_len=128",
    "batch_size=4",
    "trainer.max_steps=3",
    "data.val_every_steps=2",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run_cli(script: str, *overrides: str, out: Path, cache: Path, check: bool = True, env: dict | None = None, timeout: int = 600):
    """Run `python <script> <overrides>` from the repository root with outputs under `out`."""
    cmd = [sys.executable, str(ROOT / script), *overrides, f"paths.output_dir={out}", f"paths.cache_dir={cache}"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def records(directory: Path, kind: str | None = None) -> dict[Path, dict]:
    """Every metrics.json under a directory, by its run directory."""
    out = {}
    for p in sorted(directory.rglob("metrics.json")):
        data = json.loads(p.read_text())
        if kind is None or data.get("kind") == kind:
            out[p.parent] = data
    return out
