"""One trainer per job directory: a lock file (`<run>/.train.lock`, the filelock package) held while a job
trains. A second process that finds it held skips the job (multirun) or refuses (single run). The OS releases
the lock when its holder dies, so a killed run never leaves a stale lock behind."""

from __future__ import annotations

import contextlib
from pathlib import Path

from filelock import FileLock, Timeout

LOCKFILE = ".train.lock"


class Held(Exception):
    pass


@contextlib.contextmanager
def job_lock(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / LOCKFILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise Held(f"{directory} is being trained by another process (lock {directory / LOCKFILE} is held)") from None
    try:
        yield
    finally:
        lock.release()
