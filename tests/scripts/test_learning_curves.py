"""scripts/learning_curves.py on run directories laid out as train.py leaves them."""

import csv
import json
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "learning_curves.py"


def fake_run(d, model, lr, values, weights="random", batch=8):
    """A run: .hydra/config.yaml, metrics.json and the CSV logger's metrics.csv (0-based steps, loss rows apart)."""
    (d / ".hydra").mkdir(parents=True)
    (d / "logs").mkdir()
    (d / ".hydra" / "config.yaml").write_text(
        f"seq_len: 512\nseed: 1\nbatch_size: {batch}\nmodel:\n  name: {model}\n  arch:\n    dropout: 0.1\n"
        f"module:\n  lr: {lr}\ndata:\n  task: summarization\n  synthetic:\n    min_doc_fraction: 1.0\n")
    (d / "metrics.json").write_text(json.dumps({"model": model, "metric": "rgm", "status": "ok", "batch_size": batch,
                                                "effective_batch_size": batch, "weights": weights}))
    lines = ["epoch,step,train/loss,val/rgm"]
    for i, v in enumerate(values):
        step = 100 * (i + 1) - 1
        lines += [f"0,{step},{2.0 - i / 10},", f"0,{step},,{v}"]
    (d / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_curves_of_runs_that_share_a_name_in_two_groups_stay_apart(tmp_path):
    fake_run(tmp_path / "call1" / "p_led", "led_base", 1e-4, [5.0, 100.0])
    fake_run(tmp_path / "call2" / "p_led", "led_base", 3e-4, [6.0, 7.0, 8.0], weights="run: /x/p0 (best checkpoint)")
    out = tmp_path / "curves.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(out), "--figure", str(tmp_path / "c.png"),
                           "--hlines", "guessing=5.4"], capture_output=True, text=True, check=True)
    assert "call1/p_led [ok] rgm by step: 100:5.0 200:100.0 | best 100.0 at step 200" in proc.stdout
    assert "call2/p_led [ok] rgm by step: 100:6.0 200:7.0 300:8.0 | best 8.0 at step 300" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    assert [(r["group"], r["step"], r["samples"], r["value"]) for r in rows][:2] == [("call1", "100", "800", "5.0"), ("call1", "200", "1600", "100.0")]
    assert rows[0]["train_loss"] == "2.0" and rows[0]["dropout"] == "0.1"
    assert rows[2]["dropout"] == "" and rows[2]["weights"] == "run: /x/p0 (best checkpoint)"  # a checkpoint brings its own
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_a_group_is_every_folder_between_the_directory_given_and_the_run(tmp_path):
    """docs/gpu-study-h200/runs holds call5_grid/finetune_synthetic/<job> and call6_grid/finetune_synthetic/<job> of
    one name: their group keeps the call."""
    for call in ("call5_grid", "call6_grid"):
        fake_run(tmp_path / call / "finetune_synthetic" / "led_base_1024", "led_base", 1e-4, [27.0])
    out = tmp_path / "curves.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(out)], capture_output=True, text=True, check=True)
    assert "call5_grid/finetune_synthetic/led_base_1024 [ok]" in proc.stdout and "call6_grid/finetune_synthetic/led_base_1024" in proc.stdout
    assert [r["group"] for r in csv.DictReader(out.open())] == ["call5_grid/finetune_synthetic", "call6_grid/finetune_synthetic"]
    run = tmp_path / "call5_grid" / "finetune_synthetic" / "led_base_1024"  # a run given itself: its folder's name
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("finetune_synthetic/led_base_1024 [ok]")


def test_a_directory_without_runs_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no run with logs/metrics.csv under" in proc.stderr
