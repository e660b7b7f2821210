"""Which checkpoint file an evaluation scored, so that an evaluation is never joined to weights it did not see.

infer.py records the file's path, size, modification time and SHA-256 in infer/metrics.json. A later pass over a
sweep re-evaluates a run whose checkpoint changed since (retrained, resumed). Size and modification time decide
cheaply; only when they differ is the file hashed again, so a checkpoint merely touched, copied or moved is not
re-scored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FIELDS = ("checkpoint_file", "checkpoint_size", "checkpoint_mtime_ns", "checkpoint_sha256")


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # ~1-2 GB/s: seconds for a large model's checkpoint


def fingerprint(path: str | Path) -> dict:
    path = Path(path).resolve()
    st = path.stat()
    return {"checkpoint_file": str(path), "checkpoint_size": st.st_size, "checkpoint_mtime_ns": st.st_mtime_ns, "checkpoint_sha256": sha256(path)}


def changed(rec: dict, path: str | Path) -> bool:
    """Whether the checkpoint at `path` holds other bytes than the one an evaluation record scored. A record that
    does not say (written before this was recorded) counts as changed: it cannot be vouched for. The same file with
    the same size and modification time is taken as unchanged; otherwise (touched, copied, the sweep moved) the hash decides."""
    path = Path(path).resolve()
    if not rec.get("checkpoint_sha256"):
        return True
    st = path.stat()
    if rec.get("checkpoint_size") != st.st_size:
        return True
    if rec.get("checkpoint_file") == str(path) and rec.get("checkpoint_mtime_ns") == st.st_mtime_ns:
        return False
    return sha256(path) != rec["checkpoint_sha256"]
