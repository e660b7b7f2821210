"""One trainer per job directory: a second process is refused while the first holds the lock, and a holder
that dies (even by SIGKILL) leaves no stale lock."""

import signal
import subprocess
import sys
import time

import pytest

from study.lock import LOCKFILE, Held, job_lock

HOLD = "import sys, time; from pathlib import Path; from study.lock import job_lock\n" \
       "with job_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"


def test_a_held_job_is_refused_and_a_killed_holder_releases_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Held, match="being trained by another process"):
            with job_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.1)
    with job_lock(tmp_path):  # the OS released the dead holder's lock
        assert (tmp_path / LOCKFILE).exists()
