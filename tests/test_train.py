"""train.py and infer.py end to end, as a user runs them: outputs, multirun, resumption, reproducibility, bad input."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, records, run_cli

SMOKE = ["experiment=smoke"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """One finished smoke run per tiny model."""
    out = tmp_path_factory.mktemp("trained")
    runs = {}
    for model in ("led_tiny", "bigbird_tiny", "longt5_tiny"):
        run = out / model
        run_cli("train.py", *SMOKE, f"model={model}", f"hydra.run.dir={run}", out=out, cache=cache_dir)
        runs[model] = run
    return runs


ATTENTION = {"led_tiny": "sliding_window+global", "bigbird_tiny": "block_sparse", "longt5_tiny": "transient_global"}


@pytest.mark.parametrize("model", ["led_tiny", "bigbird_tiny", "longt5_tiny"])
def test_a_train_run_directory_holds_everything_it_produced(trained, model):
    run = trained[model]
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["kind"] == "train" and rec["error"] is None
    assert rec["model"] == model and rec["seq_len"] == 160 and rec["batch_size"] == 4 and rec["data"] == "synthetic"
    assert rec["metric"] == "rgm" and all(0 <= rec[k] <= 100 for k in ("rouge1", "rouge2", "rougeL", "rgm"))
    assert rec["global_step"] == 4 and rec["samples_seen"] == 16 and rec["best_step"] in (2, 4)
    assert rec["parameters"] > 100_000
    assert rec["encoder_attention"] == ATTENTION[model]
    for path in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "model/config.json", ".hydra/config.yaml", "logs/metrics.csv"):
        assert (run / path).exists(), path
    # writing them is timed apart from the training steps, and counted in the fit's time
    c = rec["costs"]
    assert c["checkpoint_time_s"]["value"] > 0
    assert c["train_time_s"]["value"] == pytest.approx(
        sum(c[k]["value"] for k in ("train_time_excl_validation_s", "validation_time_s", "checkpoint_time_s"))
    )


def test_switching_off_both_checkpoint_callbacks_writes_no_checkpoint(tmp_path, cache_dir):
    run = tmp_path / "run"
    run_cli("train.py", *SMOKE, "~callbacks.best_checkpoint", "~callbacks.last_checkpoint", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["best_checkpoint"] is None
    assert not list(run.rglob("*.ckpt"))  # not even Lightning's default checkpoint


@pytest.mark.parametrize("model", ["led_tiny", "bigbird_tiny", "longt5_tiny"])
def test_infer_evaluates_the_best_checkpoint_and_its_predictions_rescore_identically(trained, model, tmp_path, cache_dir):
    run = trained[model]
    run_cli("infer.py", f"run_dir={run}", out=tmp_path, cache=cache_dir)
    rec = json.loads((run / "infer" / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["kind"] == "infer" and rec["eval_batch_size"] == 16
    assert rec["n_scored"] == 8 and rec["costs"]["inference_samples_per_s"]["value"] > 0
    p = rec["provenance"]  # infer runs record their hardware and versions too (tests/study/test_provenance.py)
    assert p["gpu_count"] == 0 and p["cpu_model"] and all(p["versions"][k] for k in ("torch", "transformers", "pytorch_lightning", "codecarbon"))
    predictions = [json.loads(line) for line in (run / "infer" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 8 and {"id", "prediction"} <= set(predictions[0])
    # the same predictions scored with no model, through the scoring mode
    scored = tmp_path / "scored"
    run_cli("infer.py", *SMOKE, f"predictions={run / 'infer' / 'predictions.jsonl'}", f"hydra.run.dir={scored}", out=tmp_path, cache=cache_dir)
    again = json.loads((scored / "metrics.json").read_text())
    assert again["kind"] == "score" and again["rgm"] == pytest.approx(rec["rgm"]) and again["rouge1"] == pytest.approx(rec["rouge1"])


def test_global_attention_on_the_question_trains_and_infers_and_is_its_own_experiment(tmp_path, cache_dir):
    """module.global_attention=question (Longformer's QA setting) end to end on the tiny LED: train, infer, report."""
    from omegaconf import OmegaConf

    from report.collect import experiment

    run = tmp_path / "qa_question"
    run_cli("train.py", *SMOKE, "model=led_tiny", "data=synthetic_qa", "module.global_attention=question",
            f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    run_cli("infer.py", f"run_dir={run}", out=tmp_path, cache=cache_dir)  # infer reads the run's global attention
    assert json.loads((run / "infer" / "metrics.json").read_text())["status"] == "ok"
    cfg = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"))
    assert experiment(cfg)["training_budget"].endswith("global attention on the question")
    cfg["module"]["global_attention"] = "first_token"
    assert "global attention" not in experiment(cfg)["training_budget"]
    proc = run_cli("train.py", *SMOKE, "model=led_tiny", "module.global_attention=question", out=tmp_path,
                   cache=cache_dir, check=False)
    assert proc.returncode == 2 and "module.global_attention=question needs a QA task" in proc.stderr


def test_multirun_over_two_models_and_two_lengths_writes_one_directory_per_job_and_skips_them_on_rerun(tmp_path, cache_dir):
    args = ["-m", *SMOKE, "model=led_tiny,bigbird_tiny", "seq_len=160,192"]
    run_cli("train.py", *args, out=tmp_path, cache=cache_dir)
    runs = records(tmp_path, kind="train")
    assert len(runs) == 4 and all(r["status"] == "ok" for r in runs.values())
    assert {(r["model"], r["seq_len"]) for r in runs.values()} == {(m, s) for m in ("led_tiny", "bigbird_tiny") for s in (160, 192)}
    assert len({p.parent for p in runs}) == 1  # all jobs in the one sweep directory
    before = {p: (p / "metrics.json").stat().st_mtime_ns for p in runs}
    proc = run_cli("train.py", *args, out=tmp_path, cache=cache_dir)
    assert proc.stderr.count("already holds a finished run") + proc.stdout.count("already holds a finished run") == 4
    assert {p: (p / "metrics.json").stat().st_mtime_ns for p in runs} == before
    # infer.py over the sweep evaluates each run once; a second pass leaves the finished evaluations alone
    sweep = next(iter(runs)).parent
    run_cli("infer.py", f"run_dir={sweep}", out=tmp_path, cache=cache_dir)
    evaluated = {p: (p / "infer" / "metrics.json").stat().st_mtime_ns for p in runs}
    assert all(json.loads((p / "infer" / "metrics.json").read_text())["status"] == "ok" for p in runs)
    proc = run_cli("infer.py", f"run_dir={sweep}", out=tmp_path, cache=cache_dir)
    assert (proc.stderr + proc.stdout).count("already holds a finished evaluation") == 4
    assert {p: (p / "infer" / "metrics.json").stat().st_mtime_ns for p in runs} == evaluated
    run_cli("infer.py", f"run_dir={sweep}", "overwrite=true", out=tmp_path, cache=cache_dir)  # asked to: redone
    for p in runs:
        assert (p / "infer" / "metrics.json").stat().st_mtime_ns != evaluated[p]
        assert json.loads((p / "infer" / "metrics.json").read_text())["status"] == "ok"


def test_same_seed_gives_the_same_losses_and_metrics(tmp_path, cache_dir):
    out = []
    for i in range(2):
        run = tmp_path / f"r{i}"
        run_cli("train.py", *SMOKE, "seed=7", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
        rec = json.loads((run / "metrics.json").read_text())
        losses = [line.split(",") for line in (run / "logs" / "metrics.csv").read_text().splitlines()]
        out.append((rec["rgm"], rec["rouge1"], losses))
    assert out[0] == out[1]
    assert len(out[0][2]) > 4  # losses were logged at every step




def _one_line_error(proc, *fragments):
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    for f in fragments:
        assert f in err[0]


def test_unknown_model_lists_the_choices_and_writes_nothing(tmp_path, cache_dir):
    proc = run_cli("train.py", "model=led_bas", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, "unknown model 'led_bas'", "led_base", "bigbird_large")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["model=bigbird_tiny", "seq_len=5000"], ["seq_len=5000: family bigbird_pegasus (model=bigbird_tiny) runs at most 4096 input tokens"]),
        (["seq_len=-1"], ["seq_len=-1 must be a positive"]),
        (["data=gov_report", "data.path=/nonexistent/gov_report.zip"], ["data.path=/nonexistent/gov_report.zip does not exist"]),
        (["batch_size=big"], ["batch_size=big must be a positive whole number, paper or auto"]),
        # the config checks (study/checks.py; every key is covered in tests/study/test_checks.py)
        (["trainer.max_steps=abc"], ["trainer.max_steps=abc must be a whole number >= -1"]),
        (["strategy.devices=0"], ["strategy.devices=0 must be a positive whole number, -1 (all), auto"]),
        (["module.lr=0"], ["module.lr=0 must be a positive number"]),
        (["ckpt_path=/nonexistent/last.ckpt"], ["ckpt_path=/nonexistent/last.ckpt must be null, last, or the path of an existing"]),
    ],
)
def test_bad_input_is_one_line_and_marks_only_its_own_run(overrides, fragments, trained, tmp_path, cache_dir):
    before = {p: p.read_bytes() for p in trained["led_tiny"].rglob("*") if p.is_file()}
    proc = run_cli("train.py", *SMOKE, *overrides, f"hydra.run.dir={tmp_path / 'bad'}", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, *fragments)
    rec = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert rec["status"] == "failed" and fragments[0] in rec["error"]
    assert {p: p.read_bytes() for p in trained["led_tiny"].rglob("*") if p.is_file()} == before


def test_malformed_jsonl_names_file_and_line(tmp_path, cache_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    good = json.dumps({"id": "1", "pid": "1", "input": "the report", "output": "red"})
    (folder / "train.jsonl").write_text(good + "\n" + good + "\n{broken\n")
    shutil.copy(folder / "train.jsonl", folder / "validation.jsonl")
    proc = run_cli("train.py", *SMOKE, "data=gov_report", f"data.path={folder}", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, "train.jsonl line 3: not valid JSON")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b'{"id": "2", "pid": "2", "input": "caf\xe9", "output": "red"}\n', "train.jsonl line 3: not UTF-8 text (byte 0xe9 at column 38)"),
        (b'{"id": "2", "pid": "2", "input": "the report", "output": 7}\n', "train.jsonl line 3: 'output' must be a string, not a number"),
    ],
)
def test_bad_data_names_file_and_line(content, fragment, tmp_path, cache_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    good = json.dumps({"id": "1", "pid": "1", "input": "the report", "output": "red"}).encode() + b"\n"
    (folder / "train.jsonl").write_bytes(good + good + content)
    (folder / "validation.jsonl").write_bytes(good)
    proc = run_cli("train.py", *SMOKE, "data=gov_report", f"data.path={folder}", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, fragment)


def test_a_failing_job_does_not_stop_the_multirun(tmp_path, cache_dir):
    proc = run_cli("train.py", "-m", *SMOKE, "seq_len=5000,160", "model=bigbird_tiny", out=tmp_path, cache=cache_dir, check=False)
    assert proc.returncode == 1  # the sweep went on, and its exit code says that a job failed
    statuses = sorted((r["status"], r.get("seq_len")) for r in records(tmp_path, kind="train").values())
    assert statuses == [("failed", None), ("ok", 160)]


# a multirun in one process whose first job fails inside fit (validation raises, as a validation that runs out of
# GPU memory does); after each job: whether that job's module is still alive, and what handles SIGUSR1/SIGUSR2
LEAK_DRIVER = """
import gc, json, signal, sys, weakref
sys.path.insert(0, sys.argv[1])
import study.run as run
from lightning_modules.seq2seq import Seq2SeqModule
made, calls = [], {"validation": 0}
init = Seq2SeqModule.__init__
def track(self, *a, **k):
    init(self, *a, **k)
    made.append(weakref.ref(self))
Seq2SeqModule.__init__ = track
validate = Seq2SeqModule.validation_step
def fail_first(self, *a, **k):
    calls["validation"] += 1
    if calls["validation"] == 1:
        raise RuntimeError("CUDA out of memory. Tried to allocate 3.00 GiB")
    return validate(self, *a, **k)
Seq2SeqModule.validation_step = fail_first
release = run.release_device_memory
def checked():
    release()
    handlers = [type(getattr(signal.getsignal(s), "__self__", None)).__name__ for s in (signal.SIGUSR1, signal.SIGUSR2)]
    print("JOB " + json.dumps({"alive": sum(r() is not None for r in made), "handlers": handlers}), flush=True)
run.release_device_memory = checked
sys.argv = ["train.py", *sys.argv[2:]]
import runpy
runpy.run_path(run.__file__.replace("study/run.py", "train.py"), run_name="__main__")
"""


def test_a_job_that_fails_inside_fit_leaves_nothing_alive_for_the_next_job(tmp_path, cache_dir):
    """H200, 2026-12-02: LED-large at 4096 ran out of memory in its validation; the SIGUSR1/SIGUSR2 handlers its
    GracefulStop had installed were never given back (Lightning calls no callback teardown when fit fails), so they
    kept its trainer, model and 34 GiB of captured step alive, and the multirun's next two jobs ran out of memory
    at their first step. Every job, failed or not, must leave its module collectable and the handlers as it found them."""
    driver = tmp_path / "driver.py"
    driver.write_text(LEAK_DRIVER)
    proc = subprocess.run([sys.executable, str(driver), str(ROOT), "-m", *SMOKE, "seq_len=128,160",
                           f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    jobs = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("JOB ")]
    assert proc.returncode == 1 and len(jobs) == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert jobs == [{"alive": 0, "handlers": ["NoneType", "NoneType"]}] * 2
    statuses = sorted((r["status"], r["seq_len"]) for r in records(tmp_path, kind="train").values())
    assert statuses == [("ok", 160), ("oom", 128)]


# ---- runs that survive: real faults (kill, signals, refusals, divergence, concurrency, corruption, full disk) --------
FAULT = [*SMOKE, "trainer.max_steps=6", "data.val_every_steps=2"]  # validations (and saved states) at steps 2, 4, 6


def _start(*overrides, out, cache, env=None):
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"paths.output_dir={out}", f"paths.cache_dir={cache}"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _wait_for(proc, text: str, timeout: float = 300) -> str:
    """Read the process's output until a line holds `text`; returns what was read."""
    seen, deadline = [], time.time() + timeout
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
        assert time.time() < deadline, "".join(seen)[-3000:]
    raise AssertionError(f"exited {proc.wait()} before {text!r}:\n{''.join(seen)[-3000:]}")


def _losses(run) -> dict[int, float]:
    """step -> train/loss from logs/metrics.csv (a later row for a step wins: the resumed segment's)."""
    out = {}
    with open(run / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def _files(run) -> dict:
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".train.lock"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_cli("train.py", *FAULT, f"hydra.run.dir={out / 'run'}", out=out, cache=cache_dir)
    return out / "run"


def test_a_run_killed_after_its_second_validation_resumes_on_the_same_loss_curve(uninterrupted, tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = _start(*FAULT, f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    try:
        _wait_for(proc, "step 4: validation")
        # the ledger snapshot (global_step 4) is written just before the state; wait for the state's rename
        while json.loads((run / "metrics.json").read_text()).get("global_step") != 4:
            time.sleep(0.05)
        snapshot = (run / "metrics.json").stat().st_mtime_ns
        while not (run / "checkpoints" / "last.ckpt").exists() or (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns < snapshot:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert json.loads((run / "metrics.json").read_text())["status"] == "running"  # what a SIGKILL leaves
    resumed = run_cli("train.py", *FAULT, "ckpt_path=last", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    assert "resumed from step 4" in resumed.stdout + resumed.stderr
    rec, base = json.loads((run / "metrics.json").read_text()), json.loads((uninterrupted / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["global_step"] == 6 and rec["samples_seen"] == 6 * 4 == base["samples_seen"]
    segs = rec["segments"]
    assert [(s["ended"], s["start_step"], s["steps"]) for s in segs] == [("killed", 0, 4), ("finished", 4, 2)]
    assert sum(s["samples"] for s in segs) == rec["samples_seen"]
    for key in ("train_time_s", "train_time_excl_validation_s", "validation_time_s"):
        assert rec["costs"][key]["value"] == pytest.approx(sum(s["costs"][key]["value"] for s in segs))
    # the killed segment's energy is its last snapshot's (step 4, just before the state it resumed from was saved)
    killed = segs[0]["costs"]
    for key in ("energy_kwh", "energy_train_kwh", "energy_validation_kwh", "energy_cpu_kwh", "energy_ram_kwh"):
        assert killed[key]["value"] > 0, (key, killed[key])
        assert "up to the validation at step 4 (the last saved state; the segment was killed" in killed[key]["source"]
        assert rec["costs"][key]["value"] == pytest.approx(sum(s["costs"][key]["value"] for s in segs), rel=1e-9)
    assert killed["energy_train_kwh"]["value"] + killed["energy_validation_kwh"]["value"] + killed["energy_checkpoint_kwh"]["value"] \
        == pytest.approx(killed["energy_kwh"]["value"], rel=1e-3)  # split by phase as at a segment's end (gaps between phases aside)
    assert "segment(s) 0 killed: counted up to their last saved state" in rec["costs"]["energy_kwh"]["source"]
    assert segs[1]["costs"]["energy_kwh"]["value"] > 0 and rec["costs"]["joules_per_sample"]["value"] > 0
    # the loss curve: every step of both segments equals the uninterrupted run's (no dropout in led_tiny)
    assert _losses(run) == _losses(uninterrupted) and len(_losses(run)) == 6
    assert rec["rgm"] == base["rgm"]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_signal_saves_the_state_records_interrupted_and_exits_128_plus_the_signal(sig, code, tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = _start(*FAULT, f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    _wait_for(proc, "step 2: validation")
    proc.send_signal(sig)
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == code, rest[-3000:]
    rec = json.loads((run / "metrics.json").read_text())
    step = rec["global_step"]
    assert rec["status"] == "interrupted" and rec["error"] == f"{sig.name} at step {step}" and step >= 2
    assert rec["segments"][-1]["ended"] == "interrupted" and rec["segments"][-1]["costs"]["energy_kwh"]["value"] > 0
    assert (run / "checkpoints" / "last.ckpt").exists()
    # and it resumes from there
    resumed = run_cli("train.py", *FAULT, "ckpt_path=last", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    assert f"resumed from step {step}" in resumed.stdout + resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"


def test_refused_commands_leave_the_run_byte_identical(uninterrupted, tmp_path, cache_dir):
    before = _files(uninterrupted)
    for args, fragment in [
        ([], "holds a finished run"),
        (["seq_len=192"], "holds a finished run"),
        (["ckpt_path=last"], "there is nothing to resume"),
    ]:
        proc = run_cli("train.py", *FAULT, *args, f"hydra.run.dir={uninterrupted}", out=tmp_path, cache=cache_dir, check=False)
        _one_line_error(proc, fragment)
        after = _files(uninterrupted)
        assert {k: v for k, v in after.items() if k.name != "train.log"} == {k: v for k, v in before.items() if k.name != "train.log"}
        assert after[Path("train.log")].startswith(before[Path("train.log")])  # logs are appended to, never rewritten
    # an unfinished run resumed with other overrides: refused, naming the keys
    unfinished = tmp_path / "unfinished"
    shutil.copytree(uninterrupted, unfinished)
    rec = json.loads((unfinished / "metrics.json").read_text())
    (unfinished / "metrics.json").write_text(json.dumps({**rec, "status": "interrupted"}))
    before = _files(unfinished)
    proc = run_cli("train.py", *FAULT, "seq_len=192", "ckpt_path=last", f"hydra.run.dir={unfinished}", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, "overrides that differ from the run's own", "seq_len (run: <unset>, now: 192)")
    assert {k: v for k, v in _files(unfinished).items() if k.name != "train.log"} == {k: v for k, v in before.items() if k.name != "train.log"}
    # a truncated training state: one line naming it, the run's files as they were
    ckpt = unfinished / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:4096])
    before = _files(unfinished)
    proc = run_cli("train.py", *FAULT, "ckpt_path=last", f"hydra.run.dir={unfinished}", out=tmp_path, cache=cache_dir, check=False)
    assert proc.returncode == 1 and [ln for ln in proc.stderr.splitlines() if ln.strip()] == [
        f"error: checkpoint {ckpt} is unreadable (truncated or corrupt: BadZipFile); the run's other files are untouched"]
    assert {k: v for k, v in _files(unfinished).items() if k.name != "train.log"} == {k: v for k, v in before.items() if k.name != "train.log"}


def test_a_diverging_run_is_failed_with_the_step_where_its_loss_went_nan(tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = run_cli("train.py", *FAULT, "module.lr=1e6", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir, check=False)
    rec = json.loads((run / "metrics.json").read_text())
    assert proc.returncode == 1 and rec["status"] == "failed", proc.stderr[-2000:]
    assert re.fullmatch(r"loss (nan|inf) at step \d+", rec["error"]), rec["error"]


def test_two_concurrent_sweeps_train_each_job_once_and_a_rerun_reports_a_corrupt_record(tmp_path, cache_dir):
    args = ["-m", *SMOKE, "trainer.max_steps=2", "seq_len=160,192"]
    procs = [_start(*args, out=tmp_path, cache=cache_dir) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = records(tmp_path, kind="train")
    assert len(runs) == 2 and all(r["status"] == "ok" and len(r["segments"]) == 1 for r in runs.values())
    for d in runs:  # trained once: one validation at step 2 in its log, from one process
        assert (d / "train.log").read_text().count("step 2: validation") == 1
    assert sum(o.count("skipped") + o.count("already holds a finished run") for o in outs) >= 2
    # a corrupt record and a finished job's truncated last.ckpt: the re-run reports the first, skips the second
    corrupt, finished = sorted(runs)
    (corrupt / "metrics.json").write_text('{"schema": 1, "kind"')
    ckpt = finished / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = {d: _files(d) for d in runs}
    proc = run_cli("train.py", *args, out=tmp_path, cache=cache_dir, check=False)
    assert proc.returncode == 1  # the sweep went on, and says that something failed
    assert f"error: {corrupt / 'metrics.json'} is not valid JSON" in proc.stderr
    for d in runs:
        assert {k: v for k, v in _files(d).items() if k.name != "train.log"} == {k: v for k, v in before[d].items() if k.name != "train.log"}
    assert json.loads((finished / "metrics.json").read_text())["status"] == "ok"


def test_a_full_disk_fails_the_run_and_leaves_no_truncated_checkpoint(tmp_path, cache_dir):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk path is also tested with a patched save")
    try:
        proc = run_cli("train.py", *SMOKE, f"hydra.run.dir={disk / 'run'}", out=tmp_path, cache=cache_dir, check=False)
        rec = json.loads((disk / "run" / "metrics.json").read_text())
        assert proc.returncode == 1 and rec["status"] == "failed" and rec["error"].startswith("no space left on device: ")
        assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [f"error: {rec['error']}"]
        assert not list((disk / "run" / "checkpoints").iterdir())  # no partial checkpoint, no temporary file
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.slow
def test_a_pre_timeout_signal_under_slurm_requeues_and_the_rerun_resumes(tmp_path, cache_dir):
    """SLURM on CPU: the scheduler's pre-timeout SIGUSR1 and `scontrol` are simulated."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    args = ["-m", *FAULT]
    proc = _start(*args, out=tmp_path, cache=cache_dir, env=env)
    _wait_for(proc, "step 2: validation")
    proc.send_signal(signal.SIGUSR1)
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGUSR1, rest[-3000:]
    calls = (tmp_path / "scontrol.log").read_text().splitlines()  # CodeCarbon asks `scontrol show job` too
    assert [c for c in calls if c.startswith("requeue")] == ["requeue 4242"]
    (run, rec), = records(tmp_path, kind="train").items()
    assert rec["status"] == "interrupted" and rec["error"].startswith("SIGUSR1 at step") and rec["error"].endswith("requeued")
    again = run_cli("train.py", *args, out=tmp_path, cache=cache_dir, env=env)  # what the requeued job runs
    assert f"resumed from step {rec['global_step']}" in again.stdout + again.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"


def test_pretrain_then_finetune_starts_each_job_from_its_models_pretrained_run(tmp_path, cache_dir):
    # the H200 study's two steps (experiment=pretrain_synthetic, then experiment=finetune_synthetic), at CPU size
    small = ["strategy=cpu", "data.synthetic.n_train=16", "data.synthetic.n_validation=4", "data.synthetic.n_test=4",
             "batch_size=4", "trainer.max_steps=2", "data.val_every_steps=2"]
    run_cli("train.py", "-m", "experiment=pretrain_synthetic", "model=led_tiny,bigbird_tiny", "seq_len=128",
            "data.synthetic.doc_tokens=128", *small, out=tmp_path, cache=cache_dir)
    pretrained = records(tmp_path / "sweeps" / "pretrain", "train")
    assert sorted(p.name for p in pretrained) == ["bigbird_tiny_summarization", "led_tiny_summarization"]
    led = pretrained[tmp_path / "sweeps" / "pretrain" / "led_tiny_summarization"]
    assert led["weights"] == "random" and led["status"] == "ok"
    cfg = (tmp_path / "sweeps" / "pretrain" / "led_tiny_summarization" / ".hydra" / "config.yaml").read_text()
    assert "lr: 0.002" in cfg and "dropout: 0.0" in cfg  # model.scratch, resolved into the run's config
    run_cli("train.py", "-m", "experiment=finetune_synthetic", "model=led_tiny,bigbird_tiny", "seq_len=128,256", "seed=1",
            "data.synthetic.doc_tokens=256", *small, out=tmp_path, cache=cache_dir)
    tuned = records(tmp_path / "sweeps" / "finetune_synthetic", "train")
    assert len(tuned) == 4 and all(r["status"] == "ok" and r["pretrained"] for r in tuned.values())
    for r in tuned.values():
        source = tmp_path / "sweeps" / "pretrain" / f"{r['model']}_summarization"
        assert r["weights"] == f"run: {source.resolve()} (best checkpoint)"


def test_finetune_before_pretrain_and_a_model_without_a_scratch_recipe_are_one_line_each(tmp_path, cache_dir):
    proc = run_cli("train.py", "experiment=finetune_synthetic", "model=led_tiny", "seq_len=128", "strategy=cpu",
                   out=tmp_path, cache=cache_dir, check=False)
    assert proc.returncode == 2
    assert re.search(r"model\.local_path=\S+/sweeps/pretrain/led_tiny_summarization does not exist: .*run that first", proc.stderr)
    proc = run_cli("train.py", "experiment=pretrain_synthetic", "model=longt5_tiny", "strategy=cpu", out=tmp_path,
                   cache=cache_dir, check=False)
    assert proc.returncode == 2
    assert "model=longt5_tiny has no from-scratch recipe (model.scratch.lr, model.scratch.dropout)" in proc.stderr
    assert not records(tmp_path, "train") or all(r["status"] == "failed" for r in records(tmp_path, "train").values())
