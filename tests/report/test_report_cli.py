"""report.py end to end, on run directories made by really running tiny sweeps through train.py and infer.py.

One module-scoped study (about a minute on 2 CPU cores) serves every test here:
  sweeps/ra   led_tiny and bigbird_tiny at 96 and 128 tokens on the synthetic summarization task, evaluated by infer.py
  sweeps/rb   led_tiny on the synthetic QA task at 128 tokens (not evaluated: accuracy falls back to train's), at 5000
              tokens (over the model's 4096 positions: status failed) and at 4096 tokens, killed mid-way (incomplete)
  notes/      a directory that is not a run
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image as mpimg
import pandas as pd
import pytest
from conftest import ROOT, records, run_cli

from report import collect, frontier

# smaller still than conftest.TINY: two optimizer steps, one validation on 4 documents
BASE = [
    "data.synthetic.n_train=16", "data.synthetic.n_validation=4", "data.synthetic.n_test=4", "data.synthetic.doc_tokens=256",
    "batch_size=4", "trainer.max_steps=2", "data.val_every_steps=2",
    "callbacks.speed.warmup_steps=1",  # the report's rates are steady-state ones: one step of warm-up leaves one to time
]
REQUIRED_COLUMNS = [
    "model", "parameters", "dataset", "seq_len", "batch_size", "effective_batch_size", "strategy", "devices", "precision",
    "attn_impl", "metric", "metric_value", "accuracy_source", "energy_kwh", "power_efficiency", "train_samples_per_s",
    "inference_samples_per_s", "gpu_utilization_pct", "gpu_memory_used_gib", "train_time_s", "energy_source", "status",
]
SVG = "{http://www.w3.org/2000/svg}"
COSTS = {"energy": "energy_kwh", "train_time": "train_time_s", "inference_speed": "inference_samples_per_s"}


def report(*args, check: bool = True):
    proc = subprocess.run([sys.executable, str(ROOT / "report.py"), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"report.py {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _sweep_killed_in_its_last_job(sweep: Path, out: Path, cache: Path, *args: str) -> Path:
    """Run a multirun and kill it once its last job's record says 'running' (the jobs before it have ended): what a
    crash or a pre-empted node leaves behind. Returns the killed job's directory."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *args, f"paths.output_dir={out}", f"paths.cache_dir={cache}"]
    log = out / f"{sweep.name}.log"
    killed = None
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and killed is None:
            states = {}
            for path in sweep.glob("*/metrics.json"):
                try:
                    record = json.loads(path.read_text())
                    states[path.parent] = (record["status"], bool(record.get("provenance")))
                except (OSError, ValueError, KeyError):
                    pass
            # mid-way: its trainer exists (provenance recorded); killed before that, under a loaded CI machine's
            # timing, the report rightly counts it with the runs of unknown hardware, and the test would flake
            running = [d for d, (s, known) in states.items() if s == "running" and known]
            if len(states) == 3 and len(running) == 1:
                killed = running[0]
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert killed is not None, f"the sweep ended before its last job could be killed:\n{log.read_text()[-3000:]}"
    return killed


@pytest.fixture(scope="module")
def study(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("report_study")
    sweep_a, sweep_b = out / "sweeps" / "ra", out / "sweeps" / "rb"
    run_cli("train.py", "-m", "name=ra", *BASE, "model=led_tiny,bigbird_tiny", "seq_len=96,128", out=out, cache=cache_dir)
    run_cli("infer.py", f"run_dir={sweep_a}", out=out, cache=cache_dir)
    # QA at 128 (ok, never evaluated), at 5000 (over led_tiny's 4096 positions: failed), at 4096 (killed: incomplete)
    killed = _sweep_killed_in_its_last_job(sweep_b, out, cache_dir, "name=rb", *BASE, "data=synthetic_qa", "model=led_tiny", "seq_len=128,5000,4096")
    notes = out / "notes"
    notes.mkdir()
    (notes / "README.txt").write_text("not a run\n")
    report_dir = out / "report"
    proc = report(sweep_a, sweep_b, notes, f"out={report_dir}")
    return SimpleNamespace(
        out=out, a=sweep_a, b=sweep_b, killed=killed, notes=notes, dir=report_dir, proc=proc,
        table=pd.read_csv(report_dir / "results.csv"), md=(report_dir / "report.md").read_text(),
        figures=json.loads((report_dir / "figures" / "figures.json").read_text()),
        train=records(out / "sweeps", kind="train"), infer=records(out / "sweeps", kind="infer"),
    )


def row(table, model, seq_len, dataset="synthetic", status=None):
    hit = table[(table["model"] == model) & (table["seq_len"] == seq_len) & (table["dataset"] == dataset)]
    hit = hit[hit["status"] == status] if status else hit[hit["status"] != "incomplete"]
    assert len(hit) == 1, (model, seq_len, dataset, table[["model", "seq_len", "dataset"]])
    return hit.iloc[0]


def test_results_csv_has_one_row_per_train_run_with_the_columns_of_the_issue(study):
    t = study.table
    assert set(REQUIRED_COLUMNS) <= set(t.columns)
    assert len(t) == 7 == len(study.train)  # 4 + 2 swept + the killed one; infer records are joined, not rows
    assert sorted(t["status"]) == ["failed", "incomplete", "ok", "ok", "ok", "ok", "ok"]
    for run_dir, rec in study.train.items():
        r = t[t["run_dir"] == str(run_dir)].iloc[0]
        if rec["status"] == "ok":
            assert (r["model"], r["seq_len"], r["dataset"], r["parameters"]) == (rec["model"], rec["seq_len"], rec["data"], rec["parameters"])
            assert (r["batch_size"], r["effective_batch_size"], r["strategy"], r["devices"]) == (4, 4, "cpu", 1)
            assert r["precision"] == "32-true" and r["attn_impl"] == "hf"
    assert set(t["dataset"]) == {"synthetic", "synthetic_qa"}
    assert set(t.loc[t["dataset"] == "synthetic_qa", "metric"]) == {"f1"} and set(t.loc[t["dataset"] == "synthetic", "metric"]) == {"rgm"}


def test_accuracy_is_infer_validation_score_of_the_best_checkpoint_else_train_best_and_says_which(study):
    t = study.table
    for model in ("led_tiny", "bigbird_tiny"):
        for seq_len in (96, 128):
            r = row(t, model, seq_len)
            rec = study.infer[Path(r["run_dir"]) / "infer"]
            assert r["metric_value"] == pytest.approx(rec["rgm"]) and r["accuracy_source"].startswith("infer: validation score of the best checkpoint")
            assert r["inference_samples_per_s"] == pytest.approx(rec["costs"]["inference_samples_per_s"]["value"])
    qa = row(t, "led_tiny", 128, "synthetic_qa")
    assert qa["metric_value"] == pytest.approx(study.train[Path(qa["run_dir"])]["f1"])
    assert qa["accuracy_source"] == "train: best validation score during the fit (no infer record)"
    assert math.isnan(qa["inference_samples_per_s"])


def test_failed_and_incomplete_runs_are_listed_with_their_reason_never_dropped(study):
    t = study.table
    failed = row(t, "led_tiny", 5000, "synthetic_qa")
    assert failed["status"] == "failed" and "5000" in failed["error"] and math.isnan(failed["metric_value"])
    killed = t[t["run_dir"] == str(study.killed)].iloc[0]
    assert killed["status"] == "incomplete" and "running" in killed["error"]
    # its identity (the failed job above, stopped before its trainer, has it only from .hydra/config.yaml)
    assert (killed["model"], killed["seq_len"], killed["dataset"], killed["batch_size"]) == ("led_tiny", 4096, "synthetic_qa", 4)
    section = study.md.split("### Runs that did not finish")[1].split("\n## ")[0]
    assert "**led_tiny @ 5000** (synthetic_qa): failed: seq_len=5000 is over" in section
    assert "**led_tiny @ 4096** (synthetic_qa): incomplete: status 'running' with no end recorded" in section and str(study.killed) in section
    assert "Not plotted (failed, incomplete): led_tiny @ 4096, led_tiny @ 5000." in study.md
    # the failed run stopped before its trainer (and so its provenance) existed: said so, not "an old record"
    assert ("**unknown hardware**: 1 run; their records hold no provenance: 1 failed before training began "
            "(such a record holds only its status)") in study.md


def test_a_directory_that_is_not_a_run_is_skipped_with_a_note(study):
    assert f"note: {study.notes}: skipped, not a run directory" in study.proc.stderr
    assert f"{study.notes}: skipped" in study.md


def test_costs_come_with_their_source_and_unknown_stays_unknown_never_zero(study):
    t = study.table
    ok = t[t["status"] == "ok"]
    for cost in ("gpu_utilization_pct", "gpu_memory_used_gib"):  # on CPU: null, "not applicable: no GPU in use"
        assert t[cost].isna().all(), cost
        assert set(ok[f"{cost}_source"]) == {"not applicable: no GPU in use"}
    for run_dir, rec in study.train.items():  # every known figure is the record's own, with the record's source
        r = t[t["run_dir"] == str(run_dir)].iloc[0]
        for name in ("energy_kwh", "train_time_s", "train_samples_per_s", "power_efficiency"):
            m = (rec.get("costs") or {}).get(name)
            if m is None or m["value"] is None:
                assert math.isnan(r[name])
            else:
                assert r[name] == pytest.approx(m["value"]) and r[f"{name}_source"] == m["source"]
    # CodeCarbon on CPU estimates energy (cpu tdp x load), and power efficiency is derived from it: both estimated
    assert ok["energy_source"].str.contains("estimated").all()
    assert ok["estimated"].str.contains("energy_kwh").all() and ok["estimated"].str.contains("power_efficiency").all()
    assert not ok["estimated"].str.contains("train_samples_per_s").any()
    qa = row(t, "led_tiny", 128, "synthetic_qa")
    assert qa["inference_samples_per_s_source"].startswith("not recorded: no infer record")
    run_rows = [line for line in study.md.splitlines() if line.startswith("| led_tiny @ 96 | ok |")]
    assert len(run_rows) == 1 and "| ~" in run_rows[0]  # estimates marked in the table
    assert "| `gpu_utilization_pct` (%) | Figure 6 | 0 | 0 | 5 (not applicable: no GPU in use) |" in study.md
    # energy in J or Wh, never kWh with an offset (issue 15 item 8)
    energy = [p for f in study.figures for p in f["panels"] if p["axis"] == "energy"]
    assert energy and all(p["unit"] in ("J", "Wh") and p["xlabel"] == f"Training energy ({p['unit']}), estimated" for p in energy)


def _points_in_svg(path: Path) -> dict:
    """Markers drawn per scatter group (gid points-<panel>-<model>) in a saved SVG."""
    counts = {}
    for g in ET.parse(path).iter(f"{SVG}g"):
        gid = g.get("id") or ""
        if gid.startswith("points-"):
            uses = list(g.iter(f"{SVG}use"))
            counts[gid] = len(uses) if uses else len([p for p in g.iter(f"{SVG}path")])
    return counts


def _check_figure(fig: dict, table: pd.DataFrame) -> None:
    png, svg = Path(fig["files"]["png"]), Path(fig["files"]["svg"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 900 and pixels.std() > 0.05  # a real picture, not blank
    in_svg = _points_in_svg(svg)
    for p in fig["panels"]:
        drawn_here = sum(n for gid, n in in_svg.items() if gid.startswith(f"points-{p['axis']}-"))
        assert drawn_here == p["n_points"], (fig["dataset"], p["axis"], in_svg)
        assert p["measured"] == (p["n_points"] > 0)
        for point in p["points"]:  # each point where the table says it is
            r = table[(table["label"] == point["label"]) & (table["dataset"] == fig["dataset"])].iloc[0]
            assert point["x"] == pytest.approx(r[p["cost"]]) and point["y"] == pytest.approx(r["metric_value"])
            assert point["seq_len"] == r["seq_len"]


def test_every_figure_is_a_real_image_with_one_point_per_measured_run(study):
    drawn = {(f["dataset"], f["figure"]): f for f in study.figures}
    expected = {  # (dataset, figure) -> panel -> points: every ok run whose cost is known, no point for an unknown one
        ("synthetic", "efficiency"): {"power_efficiency": 4, "energy": 4, "train_speed": 4, "inference_speed": 4},
        ("synthetic", "hardware"): {"gpu_utilization": 0, "gpu_memory": 0, "train_time": 4},
        ("synthetic_qa", "efficiency"): {"power_efficiency": 1, "energy": 1, "train_speed": 1, "inference_speed": 0},
        ("synthetic_qa", "hardware"): {"gpu_utilization": 0, "gpu_memory": 0, "train_time": 1},
    }
    assert set(drawn) == set(expected)
    for key, panels in expected.items():
        fig = drawn[key]
        assert {p["axis"]: p["n_points"] for p in fig["panels"]} == panels
        assert set(fig["files"]) == {"png", "svg"} and Path(fig["files"]["png"]).parent == study.dir / "figures"
        _check_figure(fig, study.table)
        # each figure names what its points ran on: a figure copied out of the report keeps its hardware
        ok = study.table[(study.table["dataset"] == key[0]) & (study.table["status"] == "ok")]
        assert fig["setting"].startswith(ok["hardware"].iloc[0]) and "hf, 32-true, cpu" in fig["setting"], fig["setting"]
        svg = Path(fig["files"]["svg"]).read_text()
        assert ok["hardware"].iloc[0] in svg
    gpu = [p for p in drawn[("synthetic", "hardware")]["panels"] if p["axis"] == "gpu_utilization"][0]
    assert gpu["reason"] == "not applicable: no GPU in use"
    assert study.md.count("![") == 4
    html = (study.dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and 'src="figures/' not in html


def test_a_figure_whose_costs_nobody_measured_is_not_drawn(study, tmp_path):
    # Figure 6 with a training-time cost that CPU runs do not have: every panel unknown -> no file, and the report says so
    report(study.a, "costs.train_time=nvml_energy_kwh", f"out={tmp_path}")
    figures = json.loads((tmp_path / "figures" / "figures.json").read_text())
    hardware = [f for f in figures if f["figure"] == "hardware"][0]
    assert hardware["files"] == {} and hardware["omitted"].startswith("not drawn: none of gpu_utilization_pct, gpu_memory_used_gib, nvml_energy_kwh")
    assert not list((tmp_path / "figures").glob("*hardware*"))
    assert "**synthetic: Figure 6 (hardware)**: not drawn: none of" in (tmp_path / "report.md").read_text()


def _answer(md: str) -> str:
    section = md.split("## The answer\n")[1].split("\n## ")[0]
    bold = [line for line in section.splitlines() if line.startswith("**")]
    return bold


def test_the_answer_is_one_plain_sentence_per_dataset_naming_the_most_accurate_run(study):
    t = study.table
    answers = _answer(study.md)
    assert len(answers) == 2  # synthetic and synthetic_qa
    for dataset, sentence in zip(("synthetic", "synthetic_qa"), answers):
        text = sentence.strip("*")
        assert text.endswith(".") and text.count(". ") == 0 and "\n" not in text
        ok = t[(t["dataset"] == dataset) & (t["status"] == "ok")]
        best = ok[ok["metric_value"] == ok["metric_value"].max()]
        assert text.startswith(f"With no budget set, the most accurate configuration on {dataset} is ")
        assert any(f" is {label} (" in text for label in best["label"])
        assert text in study.proc.stdout


def test_a_budget_picks_the_most_accurate_run_within_it_or_says_none_fits(study, tmp_path):
    t = study.table
    speeds = t.loc[(t["dataset"] == "synthetic") & (t["status"] == "ok"), "inference_samples_per_s"].sort_values()
    limit = float(speeds.iloc[1]) * 0.999  # the slowest run does not fit, the rest do
    proc = report(study.a, f"budget.min_inference_samples_per_s={limit}", f"out={tmp_path / 'r1'}")
    fit = t[(t["dataset"] == "synthetic") & (t["inference_samples_per_s"] >= limit)]
    sentence = proc.stdout.splitlines()[0]
    assert sentence.startswith("Within at least ") and " inference samples/s, the most accurate configuration on synthetic is " in sentence
    chosen = sentence.split(" is ", 1)[1].split(" (")[0]
    assert chosen in set(fit["label"])
    assert t.loc[(t["label"] == chosen) & (t["dataset"] == "synthetic"), "metric_value"].iloc[0] == fit["metric_value"].max()
    md = (tmp_path / "r1" / "report.md").read_text()
    assert f"**{sentence}**" in md and "3 of 4 configurations fit." in md

    (answer,) = frontier.answer(collect.collect([study.a]).table, {"kwh": 0.5, "min_inference_samples_per_s": 1e9}, COSTS)
    sentence = answer.sentence
    assert sentence.startswith(
        "Within 0.5 kWh of training energy and at least 1.00e+09 inference samples/s, no configuration on synthetic fits; the nearest is "
    )
    fastest = t.loc[t["inference_samples_per_s"].idxmax(), "label"]
    assert f"the nearest is {fastest} (" in sentence and sentence.endswith(".") and "kWh (estimated)" in sentence


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/dir"], "error: /no/such/dir does not exist; give run directories, sweep directories or outputs/"),
        (["{a}", "budget.kwhh=1"], "error: unknown key 'budget.kwhh' in 'budget.kwhh=1'; allowed keys: out, budget.kwh,"),
        (["{a}", "budget.kwh=lots"], "error: budget.kwh=lots is not allowed; give a number >= 0 (kWh) or null for no limit"),
        (["{a}", "costs.energy=joules"], "error: costs.energy=joules is not a recorded cost; choose from: energy_kwh,"),
        ([], "error: no directory given; usage: python report.py <dir> [<dir> ...] [key=value ...]"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(study, args, message):
    proc = report(*[a.format(a=study.a) for a in args], check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(message)


def test_a_directory_with_no_run_at_all_is_an_error(study):
    proc = report(study.notes, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(f"error: no train run found under {study.notes}")


def test_outputs_root_and_a_single_run_both_work_and_runs_are_counted_once(study, tmp_path):
    one = next(p for p, r in study.train.items() if r["status"] == "ok" and r.get("data") == "synthetic")
    proc = report(study.out, one, f"out={tmp_path / 'r'}")  # the run is inside outputs/ too: one row for it
    t = pd.read_csv(tmp_path / "r" / "results.csv")
    assert len(t) == 7 and t["run_dir"].is_unique
    assert "note:" not in proc.stderr  # outputs/ holds infer sweeps and the report dir: neither is a run, neither worth a note


def _copy_sweep(src: Path, dst: Path, seed: int, provenance: dict | None) -> None:
    """Another seed of every run of a sweep, as a record would say it (a test fixture: the same figures, a new seed and,
    if given, the provenance of other hardware)."""
    import shutil

    shutil.copytree(src, dst)
    for path in dst.rglob("metrics.json"):
        data = json.loads(path.read_text())
        if data.get("kind") == "train":
            data["seed"] = seed
            if provenance:
                data["provenance"] = provenance
            path.write_text(json.dumps(data))


H200 = {"gpu_names": ["NVIDIA H200"], "gpu_count": 1, "gpu_memory_gib": [139.8], "driver": "570.1", "cpu_model": "Xeon",
        "host": "node1", "cuda": "12.8", "versions": {"torch": "2.13.0", "transformers": "5.0", "pytorch_lightning": "2.6.6",
        "codecarbon": "3.0"}, "git_commit": "abcdef1234567890", "git_dirty": False}


def test_configurations_csv_one_row_per_configuration_with_n_mean_and_spread(study, tmp_path):
    # issue 15 item 1: seeds are repeats of one configuration; the csv's names are a contract
    _copy_sweep(study.a, tmp_path / "sweeps" / "seed2", 7, None)
    report(study.a, tmp_path / "sweeps" / "seed2", f"out={tmp_path / 'r'}")
    conf = pd.read_csv(tmp_path / "r" / "configurations.csv")
    assert len(conf) == 4 and set(conf["n_seeds"]) == {2}
    for column in ("n_seeds", "rgm_mean", "rgm_min", "rgm_max", "energy_kwh_mean", "energy_kwh_min", "energy_kwh_max",
                   "energy_kwh_std", "steady_train_samples_per_s_mean", "warmup_time_s_mean"):
        assert column in conf.columns, column
    assert conf["energy_kwh_std"].isna().all()  # std only where n >= 3
    runs = study.table[study.table["dataset"] == "synthetic"]
    for _, c in conf.iterrows():
        r = runs[runs["label"] == c["label"]].iloc[0]  # the copy holds the same figures: mean = min = max = the run's
        assert c["rgm_mean"] == pytest.approx(r["rgm"]) and c["energy_kwh_max"] == pytest.approx(r["energy_kwh"])
    md = (tmp_path / "r" / "report.md").read_text()
    assert "(7, 42)" in md and "n=2)" in md


def test_runs_on_other_hardware_are_another_experiment_unless_pooled(study, tmp_path):
    # issue 15 item 5: the same runs again, recorded on an H200: two experiments, two answers; pool_hardware=true: one
    _copy_sweep(study.a, tmp_path / "sweeps" / "gpu", 7, H200)
    proc = report(study.a, tmp_path / "sweeps" / "gpu", f"out={tmp_path / 'apart'}")
    conf = pd.read_csv(tmp_path / "apart" / "configurations.csv")
    # the study's own runs carry this machine's provenance (its CPU, no GPU): another hardware than the H200's
    others = [h for h in conf["hardware"].unique() if h != "1 x NVIDIA H200"]
    assert len(others) == 1 and "H200" not in others[0] and set(conf["n_seeds"]) == {1}
    assert conf["group"].nunique() == 2 and len([line for line in proc.stdout.splitlines() if line.startswith("With no budget")]) == 2
    md = (tmp_path / "apart" / "report.md").read_text()
    assert "**1 x NVIDIA H200**: 4 runs; GPU memory GiB 139.8; driver 570.1; CUDA 12.8; CPU Xeon; host node1; torch 2.13.0" in md
    assert "commit abcdef1234" in md and "synthetic: 2 experiments, apart in hardware" in md
    proc = report(study.a, tmp_path / "sweeps" / "gpu", "pool_hardware=true", f"out={tmp_path / 'pooled'}")
    conf = pd.read_csv(tmp_path / "pooled" / "configurations.csv")
    assert conf["group"].nunique() == 1 and set(conf["n_seeds"]) == {2}


def test_projection_and_the_projected_budget_basis(study, tmp_path):
    # issue 15 item 3: project.epochs adds the projected costs per configuration, labelled, and budget.basis=projected uses them
    proc = report(study.a, "project.epochs=2", "budget.kwh=1000", "budget.basis=projected", f"out={tmp_path}")
    conf = pd.read_csv(tmp_path / "configurations.csv")
    t = pd.read_csv(tmp_path / "results.csv")
    assert conf["projected_energy_kwh"].notna().all() and conf["projected_train_time_s"].notna().all()
    ok = t[t["status"] == "ok"]
    assert ok["projected_energy_kwh_source"].str.startswith("projected (from estimated inputs): warmup_energy_kwh").all()
    assert ok["projected_samples_source"].eq("project.epochs=2 x 16 training samples").all()
    for _, r in ok.iterrows():  # one-time + the remaining samples at the steady rate
        expected = r["warmup_time_s"] + (32 - r["warmup_samples"]) / r["steady_train_samples_per_s"]
        assert r["projected_train_time_s"] == pytest.approx(expected)
    assert "(projected, estimated)" in proc.stdout.splitlines()[0]
    figures = json.loads((tmp_path / "figures" / "figures.json").read_text())
    projected = [f for f in figures if f["figure"] == "projected"]
    assert len(projected) == 1 and projected[0]["panels"][0]["frontier"]
    md = (tmp_path / "report.md").read_text()
    assert "## Projection" in md
    # bigger model or longer input on the same basis: each step's extra energy is the projected fine-tunes' difference
    assert "Costs are the projected full fine-tune's (`budget.basis=projected`)" in md
    steps, by_label = pd.read_csv(tmp_path / "steps.csv"), conf.set_index("label")
    assert len(steps)
    for _, s in steps.iterrows():
        assert s["d_energy_kwh"] == pytest.approx(by_label.loc[s["to"], "projected_energy_kwh"] - by_label.loc[s["from"], "projected_energy_kwh"])
    # and the frontier: measured totals of runs that trained unequal numbers of samples (batch_size=auto, 100 steps)
    # put the bigger model alone on the H200's block-1 frontier; the projected fine-tunes compare
    assert "**Training energy** (`projected_energy_kwh`" in md and "**Training time** (`projected_train_time_s`" in md
    assert "(`energy_kwh`" not in md.split("## Pareto frontier")[1].split("## ")[0]
    fams = pd.read_csv(tmp_path / "families.csv")  # LED against BigBird likewise, where both families ran
    for _, f in fams.iterrows():
        assert f["d_energy_kwh"] == pytest.approx(by_label.loc[f["b"], "projected_energy_kwh"] - by_label.loc[f["a"], "projected_energy_kwh"])


# ---- report.py as a Hydra app ----------------------------------------------------------------------------------
def test_help_describes_every_key_with_its_comment_and_hydras_flags():
    from report import config

    proc = report("--help")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    for key in config._leaves(config.base_config()):
        name = key.split(".")[-1]
        (line,) = [ln for ln in lines if ln.strip().startswith(f"{name}:")][:1]
        above = lines[lines.index(line) - 1]
        assert "#" in line or above.lstrip().startswith("#"), f"{key} has no description: {line!r}"
    assert "--cfg" in proc.stdout and "--shell-completion" in proc.stdout and "hydra" not in proc.stdout.split("== Flags ==")[0]


def test_cfg_job_prints_the_composed_config_and_a_bad_key_is_still_one_line(study):
    proc = report("--cfg", "job", study.a, "budget.kwh=0.5")
    assert proc.returncode == 0 and "kwh: 0.5" in proc.stdout and str(study.a) in proc.stdout
    bad = report("--cfg", "job", "budget.kwhh=1", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown key 'budget.kwhh'") and len(bad.stderr.splitlines()) == 1


def test_dirs_key_and_positional_directories_give_the_same_table(study, tmp_path):
    report(study.a, f"out={tmp_path / 'pos'}")
    report(f"dirs=[{study.a}]", f"out={tmp_path / 'key'}")
    assert pd.read_csv(tmp_path / "pos" / "results.csv").equals(pd.read_csv(tmp_path / "key" / "results.csv"))


def test_a_directory_named_like_an_override_is_read_as_a_directory(study, tmp_path):
    import shutil

    one = next(p for p, r in study.train.items() if r["status"] == "ok" and r.get("data") == "synthetic")
    job = tmp_path / "model=led_tiny,seq_len=96"
    shutil.copytree(one, job)
    report(job, f"out={tmp_path / 'r'}")
    assert len(pd.read_csv(tmp_path / "r" / "results.csv")) == 1


def test_out_naming_an_existing_file_is_one_line_and_exit_2(study, tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("mine\n")
    proc = report(study.a, f"out={target}", check=False)
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"error: out={target} is an existing file, not a directory")
    assert target.read_text() == "mine\n"


def test_hydra_writes_nothing_into_the_working_directory(study, tmp_path):
    before = set(ROOT.iterdir())
    report(study.a, f"out={tmp_path / 'r'}")
    assert set(ROOT.iterdir()) == before  # no outputs/<date>/, .hydra/ or report.log
