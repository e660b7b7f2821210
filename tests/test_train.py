"""train.py and infer.py end to end, as a user runs them: outputs, multirun, resumption, reproducibility, bad input."""

import json
import shutil

import pytest

from conftest import records, run_cli

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


def test_resume_from_last_checkpoint_continues_the_same_run(tmp_path, cache_dir):
    run = tmp_path / "run"
    run_cli("train.py", *SMOKE, "trainer.max_steps=2", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 2
    # a finished run is never trained over by accident
    refused = run_cli("train.py", *SMOKE, f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir, check=False)
    assert refused.returncode == 2 and "holds a finished run" in refused.stderr
    run_cli("train.py", *SMOKE, "trainer.max_steps=4", "ckpt_path=last", f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["global_step"] == 4


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
    assert proc.returncode == 0
    statuses = sorted((r["status"], r.get("seq_len")) for r in records(tmp_path, kind="train").values())
    assert statuses == [("failed", None), ("ok", 160)]
