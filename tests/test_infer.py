"""infer.py's guarantees: an evaluation stays true to the checkpoint it scored, unfinished or missing runs are
refused before anything is written, and the scoring mode is as strict as the official SCROLLS scorer."""

import json
import os
import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir

import infer
from conftest import records, run_cli
from study import record
from study.errors import StudyError
from study.run import CONF_DIR, guarded, register_resolvers

SMOKE = ["experiment=smoke"]


def _one_line_error(proc, *fragments):
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    for f in fragments:
        assert f in err[0], err[0]


def _tree(directory):
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cache_dir):
    """A finished two-job multirun, evaluated once by infer.py over the sweep."""
    out = tmp_path_factory.mktemp("sweep")
    run_cli("train.py", "-m", *SMOKE, "seq_len=160,192", out=out, cache=cache_dir)
    runs = sorted(records(out, kind="train"))
    assert len(runs) == 2
    run_cli("infer.py", f"run_dir={runs[0].parent}", out=out, cache=cache_dir)
    return runs


# ---- evaluations stay true -----------------------------------------------------------------------------------
def test_an_evaluation_records_the_checkpoint_it_scored(sweep):
    for run in sweep:
        rec = record.read(run / "infer")
        ckpt = run / "checkpoints" / "best.ckpt"
        assert rec["status"] == "ok" and rec["checkpoint"] == "best"
        assert rec["checkpoint_file"] == str(ckpt.resolve()) and rec["checkpoint_size"] == ckpt.stat().st_size
        assert rec["checkpoint_mtime_ns"] == ckpt.stat().st_mtime_ns and len(rec["checkpoint_sha256"]) == 64


def test_a_sweep_re_evaluates_a_run_whose_checkpoint_changed_and_no_other(sweep, tmp_path, cache_dir):
    changed, touched = sweep
    # new weights in one run's best checkpoint, as a resumed training that improved would leave
    ckpt = changed / "checkpoints" / "best.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    name = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    state["state_dict"][name] = state["state_dict"][name] + 1.0
    torch.save(state, ckpt)
    # the other's is only touched (copied back, restored): the same bytes, so its evaluation still holds
    t = touched / "checkpoints" / "best.ckpt"
    later = t.stat().st_mtime_ns + 10**10
    os.utime(t, ns=(later, later))
    before = {run: (run / "infer" / "metrics.json").read_bytes() for run in sweep}
    old_sha = record.read(changed / "infer")["checkpoint_sha256"]

    proc = run_cli("infer.py", f"run_dir={changed.parent}", out=tmp_path, cache=cache_dir)
    log = proc.stdout + proc.stderr
    assert log.count("re-evaluate:") == 1 and log.count("already holds a finished evaluation") == 1
    assert (touched / "infer" / "metrics.json").read_bytes() == before[touched]
    rec = record.read(changed / "infer")
    assert rec["status"] == "ok" and rec["checkpoint_sha256"] != old_sha
    assert rec["checkpoint_mtime_ns"] == ckpt.stat().st_mtime_ns and rec["checkpoint_size"] == ckpt.stat().st_size


def test_a_run_dir_that_does_not_exist_is_refused_and_not_created(tmp_path, cache_dir):
    missing = tmp_path / "no" / "such" / "run"
    proc = run_cli("infer.py", f"run_dir={missing}", out=tmp_path / "out", cache=cache_dir, check=False)
    _one_line_error(proc, f"run_dir={missing} is not a directory")
    assert not (tmp_path / "no").exists() and not (tmp_path / "out").exists()


def test_an_unfinished_run_is_refused_before_anything_is_written_unless_allowed(sweep, tmp_path, cache_dir):
    run = tmp_path / "run"
    shutil.copytree(sweep[1], run, ignore=shutil.ignore_patterns("infer"))
    record.update(run, status="interrupted", error="KeyboardInterrupt")
    before = _tree(run)
    proc = run_cli("infer.py", f"run_dir={run}", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, f"run_dir={run} is a run with status 'interrupted', not ok", "allow_unfinished=true")
    assert _tree(run) == before and not (run / "infer").exists()
    run_cli("infer.py", f"run_dir={run}", "allow_unfinished=true", out=tmp_path, cache=cache_dir)
    assert record.read(run / "infer")["status"] == "ok" and record.read(run)["status"] == "interrupted"


def test_a_sweep_takes_finished_runs_only_unless_allowed(tmp_path):
    for name, status in (("a", "ok"), ("b", "interrupted"), ("c", "failed")):
        (tmp_path / "sweep" / name).mkdir(parents=True)
        record.update(tmp_path / "sweep" / name, kind="train", status=status)
    (tmp_path / "sweep" / "a" / "infer").mkdir()
    record.update(tmp_path / "sweep" / "a" / "infer", kind="infer", status="ok")  # an evaluation is not a train run
    assert infer.train_runs(tmp_path / "sweep") == [tmp_path / "sweep" / "a"]
    assert infer.train_runs(tmp_path / "sweep", allow_unfinished=True) == [tmp_path / "sweep" / n for n in "abc"]


# ---- the scoring mode ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def score_cfg(cache_dir):
    """infer.py's config for the smoke corpus, and that corpus' validation references."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[*SMOKE, f"paths.cache_dir={cache_dir}", "predictions=x"])
    from data.scrolls import group_references, load_rows

    d = cfg.data
    refs = group_references(load_rows(d.source, d.name, d.task, "validation", d.path, d.hub_url, d.synthetic, d.cache_dir))
    return cfg, {i: e["references"][0] for i, e in refs.items()}


def _score(cfg, path, out):
    cfg = cfg.copy()
    cfg.predictions = str(path)
    out.mkdir(exist_ok=True)
    return infer.score_predictions(cfg, out)


def _lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_a_complete_predictions_file_is_scored(score_cfg, tmp_path):
    cfg, refs = score_cfg
    (tmp_path / "p.jsonl").write_text(_lines({"id": i, "prediction": text} for i, text in refs.items()))
    (tmp_path / "out").mkdir()
    assert guarded(tmp_path / "out", "score", lambda d: _score(cfg, tmp_path / "p.jsonl", d)) == 0  # as run_job runs it
    rec = record.read(tmp_path / "out")
    assert rec["kind"] == "score" and rec["n_scored"] == len(refs) == 8 and rec["rgm"] == pytest.approx(100.0)


def _bad_files(refs):
    ids = list(refs)
    rows = [{"id": i, "prediction": "x"} for i in ids]
    return {
        "missing ids": (_lines(rows[3:]), f"3 of its 8 reference ids have no prediction (e.g. '{ids[0]}'"),
        "unknown ids": (_lines([*rows, {"id": "nope", "prediction": "x"}]), "1 predicted ids have no reference (e.g. 'nope')"),
        "both": (_lines([*rows[1:], {"id": "nope", "prediction": "x"}]), "1 of its 8 reference ids have no prediction"),
        "empty": ("", "is empty; it needs one {id, prediction} row per validation id"),
        "blank lines": ("\n\n", "is empty"),
        "null prediction": (_lines([*rows[:2], {"id": ids[2], "prediction": None}, *rows[3:]]), "line 3: 'prediction' must be a string, not null"),
        "number prediction": (_lines([{"id": ids[0], "prediction": 7}, *rows[1:]]), "line 1: 'prediction' must be a string, not a number"),
        "no prediction": (_lines([{"id": ids[0]}, *rows[1:]]), "line 1: a row needs 'id', 'prediction'"),
        "duplicate id": (_lines([*rows, rows[4]]), f"names id '{ids[4]}' more than once"),
        "not utf-8": (_lines(rows[:1]).encode() + b'{"id": "z", "prediction": "\xff"}\n', "line 2: not UTF-8 text"),
    }


@pytest.mark.parametrize("case", list(_bad_files({str(i): "x" for i in range(8)})))
def test_a_predictions_file_the_official_scorer_would_refuse_is_refused(score_cfg, tmp_path, case):
    cfg, refs = score_cfg
    content, fragment = _bad_files(refs)[case]
    path = tmp_path / "p.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StudyError) as e:
        _score(cfg, path, tmp_path / "out")
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "metrics.json").exists()  # no score recorded


def test_the_scoring_command_refuses_missing_ids_in_one_line(score_cfg, tmp_path, cache_dir):
    cfg, refs = score_cfg
    path = tmp_path / "p.jsonl"
    path.write_text(_lines({"id": i, "prediction": "x"} for i in list(refs)[:5]))
    proc = run_cli("infer.py", *SMOKE, f"predictions={path}", f"hydra.run.dir={tmp_path / 'scored'}", out=tmp_path, cache=cache_dir, check=False)
    _one_line_error(proc, f"predictions={path} does not match the validation split of data=synthetic: 3 of its 8 reference ids have no prediction")
    rec = record.read(tmp_path / "scored")
    assert rec["status"] == "failed" and "rgm" not in rec
