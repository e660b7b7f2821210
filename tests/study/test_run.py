"""Run status bookkeeping: every way a run can end leaves a clear record in its own directory."""

import errno
import json
import signal

import pytest
import torch

from study import record
from study.errors import Interrupted, RunFailed, StudyError
from study.run import _job_dir, check_argv, guarded


def _status(d):
    return json.loads((d / "metrics.json").read_text())


def test_ok(tmp_path):
    assert guarded(tmp_path, "train", lambda d: None) == 0
    rec = _status(tmp_path)
    assert rec["status"] == "ok" and rec["error"] is None and rec["wall_time_s"] >= 0


def test_bad_input_is_failed_with_its_one_line(tmp_path, capsys):
    def body(d):
        raise StudyError("seq_len=0 must be\n positive")

    assert guarded(tmp_path, "train", body) == 2
    assert _status(tmp_path)["error"] == "seq_len=0 must be positive"
    assert capsys.readouterr().err.strip() == "error: seq_len=0 must be positive"


def test_out_of_memory_is_oom(tmp_path):
    def body(d):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert guarded(tmp_path, "train", body) == 1
    rec = _status(tmp_path)
    assert rec["status"] == "oom" and rec["error"].startswith("OutOfMemoryError: CUDA out of memory")


def test_any_other_failure_is_failed_with_one_line(tmp_path, capsys):
    def body(d):
        raise RuntimeError("shape mismatch\nmore detail\neven more")

    assert guarded(tmp_path, "train", body) == 1
    assert _status(tmp_path)["error"] == "RuntimeError: shape mismatch"
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_interrupt_is_recorded_then_stops_the_command(tmp_path):
    def body(d):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        guarded(tmp_path, "train", body)
    assert e.value.code == 130 and _status(tmp_path)["status"] == "interrupted"


def test_a_signal_is_recorded_with_its_step_then_exits_128_plus_its_number(tmp_path, capsys):
    def body(d):
        raise Interrupted(signal.SIGTERM, step=7)

    with pytest.raises(SystemExit) as e:
        guarded(tmp_path, "train", body)
    rec = _status(tmp_path)
    assert e.value.code == 143 and rec["status"] == "interrupted" and rec["error"] == "SIGTERM at step 7"
    # no training state saved (last_checkpoint off, as in the H200 grid): the line does not point at one
    assert "no training state was saved" in capsys.readouterr().err
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"state")
    with pytest.raises(SystemExit):
        guarded(tmp_path, "train", body)
    assert f"its training state is in {tmp_path / 'checkpoints' / 'last.ckpt'} (ckpt_path=last resumes it)" in capsys.readouterr().err


def test_a_run_that_cannot_go_on_is_failed_with_its_line(tmp_path, capsys):
    def body(d):
        raise RunFailed("loss nan at step 4")

    assert guarded(tmp_path, "train", body) == 1
    assert _status(tmp_path)["error"] == "loss nan at step 4" and _status(tmp_path)["status"] == "failed"
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_full_disk_is_failed_no_space_left_on_device(tmp_path, capsys):
    def body(d):
        raise OSError(errno.ENOSPC, "No space left on device", str(d / "checkpoints" / "last.ckpt"))

    assert guarded(tmp_path, "train", body) == 1
    rec = _status(tmp_path)
    assert rec["status"] == "failed" and rec["error"].startswith("no space left on device: ") and "last.ckpt" in rec["error"]
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {rec['error']}"]


def test_a_corrupt_record_is_one_line_naming_it_and_is_left_as_it_is(tmp_path):
    (tmp_path / "metrics.json").write_text('{"schema": 1, "kind": "tr')
    with pytest.raises(record.RecordError, match=f"{tmp_path / 'metrics.json'} is not valid JSON"):
        record.update(tmp_path, status="ok")
    with pytest.raises(record.RecordError, match="is not valid JSON"):
        record.read(tmp_path)
    assert (tmp_path / "metrics.json").read_text() == '{"schema": 1, "kind": "tr'


def test_body_can_report_its_own_outcome(tmp_path):
    guarded(tmp_path, "train", lambda d: "interrupted")
    assert _status(tmp_path)["status"] == "interrupted"


def test_records_are_validated(tmp_path):
    with pytest.raises(ValueError, match="status 'done' is not one of"):
        record.update(tmp_path, kind="train", status="done")
    assert not (tmp_path / "metrics.json").exists()
    record.update(tmp_path, kind="train", status="ok", costs={"energy": record.measurement(None, "kWh", "unknown: no sensor")})
    assert record.read(tmp_path)["costs"]["energy"] == {"value": None, "unit": "kWh", "source": "unknown: no sensor"}


def test_unknown_group_options_list_the_choices():
    with pytest.raises(StudyError, match=r"unknown model 'led_bas'; choose from: bigbird_large, bigbird_tiny, led_base, led_large, led_tiny"):
        check_argv(["model=led_base,led_bas", "seq_len=1024"])
    with pytest.raises(StudyError, match=r"unknown strategy 'tpu'"):
        check_argv(["strategy=tpu"])
    with pytest.raises(StudyError, match=r"unknown data 'arxiv'"):
        check_argv(["data=choice(qasper,arxiv)"])
    check_argv(["model=led_base,bigbird_large", "data=qasper", "model.pretrained=false", "experiment=smoke"])


def test_job_directory_names_are_readable_and_unique_to_the_overrides():
    a = _job_dir("led_base", "gov_report", 1024, "model=led_base,seq_len=1024")
    assert a.startswith("led_base_gov_report_1024_") and a == _job_dir("led_base", "gov_report", 1024, "model=led_base,seq_len=1024")
    assert a != _job_dir("led_base", "gov_report", 1024, "model=led_base,seq_len=1024,trainer.max_steps=5")
    assert "/" not in _job_dir("led/x", "d", 1, "data.path=/tmp/x")


@pytest.mark.parametrize("kind", ["train", "infer"])
@pytest.mark.parametrize("ending", ["ok", "failed", "interrupted"])
def test_a_job_gives_back_its_gpu_memory_however_it_ends(tmp_path, monkeypatch, kind, ending):
    """A multirun's next job starts on a card the last one left (H200: a failed job's 57 GiB, still held to 48 GiB,
    made the next job's model.to(device) run out of memory): every job ends with release_device_memory."""
    import study.run as run

    released = []
    monkeypatch.setattr(run, "run_dir", lambda: tmp_path)
    monkeypatch.setattr(run, "release_device_memory", lambda: released.append(True))

    def body(cfg, d):
        if ending == "failed":
            raise RuntimeError("boom")
        if ending == "interrupted":
            raise Interrupted(signal.SIGTERM)

    if kind == "train":
        monkeypatch.setattr(run, "_train_job", lambda cfg, d, body_, own: run.guarded(d, "train", lambda dd: body_(cfg, dd)))
    if ending == "interrupted":
        with pytest.raises(SystemExit):
            run.run_job({}, kind, body)
    else:
        assert run.run_job({}, kind, body) == (0 if ending == "ok" else 1)
    assert released == [True]


def test_releasing_device_memory_frees_cycles_and_lifts_the_hold(monkeypatch):
    import gc

    import lightning_modules.batch_size as bs
    import study.run as run

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(bs, "hold_to_memory_cap", lambda cap: calls.append(("hold", cap)))
    run.release_device_memory()
    assert calls == ["collect", "empty_cache", ("hold", None)]
    calls.clear()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # a CPU run never touches CUDA
    run.release_device_memory()
    assert calls == ["collect"]
