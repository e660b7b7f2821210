"""study/fingerprint.py: an evaluation knows which checkpoint file it scored, and tells when that file changed."""

import hashlib
import os

from study.fingerprint import changed, fingerprint


def test_a_fingerprint_names_the_file_its_size_time_and_hash(tmp_path):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights v1")
    fp = fingerprint(ckpt)
    assert fp["checkpoint_file"] == str(ckpt.resolve()) and fp["checkpoint_size"] == 10
    assert fp["checkpoint_mtime_ns"] == ckpt.stat().st_mtime_ns
    assert fp["checkpoint_sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    assert not changed(fp, ckpt)


def test_rewritten_weights_are_a_change_a_touch_is_not(tmp_path):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights v1")
    fp = fingerprint(ckpt)
    later = fp["checkpoint_mtime_ns"] + 5_000_000_000
    os.utime(ckpt, ns=(later, later))  # touched or copied: the same bytes
    assert not changed(fp, ckpt)
    ckpt.write_bytes(b"weights v2")  # same size, other bytes (a resumed run's new best)
    os.utime(ckpt, ns=(later, later))
    assert changed(fp, ckpt)
    ckpt.write_bytes(b"longer weights v3")
    assert changed(fp, ckpt)


def test_another_file_is_a_change_unless_it_holds_the_same_bytes(tmp_path):
    (tmp_path / "best.ckpt").write_bytes(b"w1")
    (tmp_path / "last.ckpt").write_bytes(b"w2")
    assert changed(fingerprint(tmp_path / "last.ckpt"), tmp_path / "best.ckpt")  # evaluated last, now asked for best
    fp = fingerprint(tmp_path / "best.ckpt")
    (tmp_path / "moved").mkdir()
    os.replace(tmp_path / "best.ckpt", tmp_path / "moved" / "best.ckpt")  # the sweep moved elsewhere
    assert not changed(fp, tmp_path / "moved" / "best.ckpt")


def test_an_evaluation_that_never_said_which_checkpoint_it_scored_is_a_change(tmp_path):
    (tmp_path / "best.ckpt").write_bytes(b"w")
    assert changed({"kind": "infer", "status": "ok"}, tmp_path / "best.ckpt")
