"""The `logger=` group: every logger the project ships, in one offline smoke run of train.py, and a missing
package as a one-line error."""

import importlib.util
import re

import pytest
from conftest import TINY, run_cli
from omegaconf import OmegaConf

from lightning_modules import trainer
from study.errors import StudyError


def test_every_shipped_logger_records_the_run_offline(tmp_path, cache_dir, monkeypatch):
    out = tmp_path / "out"
    run = out / "run"
    # WANDB_MODE=offline is what logger.wandb.offline=true sets; no network is reachable in CI either way
    proc = run_cli("train.py", *TINY, "logger=[csv,tensorboard,mlflow,wandb]", "name=loggers", f"hydra.run.dir={run}",
                   "callbacks.progress.every_n_steps=1", out=out, cache=cache_dir)
    # not a terminal: no progress bar, a progress line every step instead (callbacks/progress.py; Hydra logs to stdout)
    assert re.search(r"step 2/3 \| loss \d+\.\d{4} \| [\d.]+ samples/s \| 0:00:\d\d left to max_steps", proc.stdout)

    csv = (run / "logs" / "metrics.csv").read_text().splitlines()
    assert "train/loss" in csv[0] and "val/rgm" in csv[0] and len(csv) > 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (run / "logs").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"train/loss", "val/rgm"} <= set(acc.Tags()["scalars"])

    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading the store back, as lightning_modules/trainer.py does

    client = mlflow.MlflowClient(tracking_uri=f"file:{out / 'mlruns'}")
    experiment = client.get_experiment_by_name("loggers")
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.run_name == "led_tiny_synthetic_128" and mlrun.info.status == "FINISHED"
    assert {"train/loss", "val/rgm"} <= set(mlrun.data.metrics)
    assert len(client.get_metric_history(mlrun.info.run_id, "val/rgm")) == 2  # step 2 and the last step, 3

    (wandb_run,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    assert wandb_run.stat().st_size > 0


def test_a_logger_whose_package_is_missing_is_one_line_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = OmegaConf.create({"logger": {"wandb": {"_target_": "pytorch_lightning.loggers.WandbLogger", "offline": True}}})
    with pytest.raises(StudyError) as e:
        trainer.loggers(cfg)
    assert str(e.value) == "logger=wandb needs the package 'wandb', which is not installed (pip install wandb)"


def test_an_unknown_logger_is_one_line_with_the_choices(tmp_path, cache_dir):
    proc = run_cli("train.py", "logger=[csv,neptune]", out=tmp_path, cache=cache_dir, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown logger 'neptune'; choose from: csv, mlflow, tensorboard, wandb"
