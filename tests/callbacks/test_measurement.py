"""The measuring callbacks' bookkeeping on CPU: phases, derived figures, unknown vs zero, a tracker that fails."""

import time

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from callbacks import EnergyCallback, SpeedCallback, UtilizationCallback, collect_costs
from callbacks.energy import KWH
from study.record import COSTS


class Busy(pl.LightningModule):
    """Burns a known amount of CPU per step; validation sleeps, so phases differ visibly."""

    def __init__(self, step_s=0.05, val_s=0.2, first_s=0.3):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4))
        self.step_s, self.val_s, self.first_s = step_s, val_s, first_s  # first_s: a compile-like first step
        self.best = None
        self.last_scores = None

    def training_step(self, batch, i):
        end = time.perf_counter() + self.step_s + (self.first_s if self.global_step == 0 else 0.0)
        x = torch.randn(64, 64)
        while time.perf_counter() < end:
            x = x @ x.T / 64
        return (self.w * batch["input_ids"].float().mean()).sum()

    def validation_step(self, batch, i):
        time.sleep(self.val_s / 2)

    def on_validation_epoch_end(self):
        self.best = {"step": self.global_step}
        self.last_scores = {"n_scored": 4}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class SlowCheckpoint(pl.callbacks.ModelCheckpoint):
    """A checkpoint that takes 0.15 s to write (led_base's full state took ~5 s on the H100)."""

    def on_validation_end(self, trainer, pl_module):
        time.sleep(0.15)
        super().on_validation_end(trainer, pl_module)


def _loader(n):
    return DataLoader([{"input_ids": torch.ones(16, dtype=torch.long)} for _ in range(n)], batch_size=2)


def _fit(tmp_path, callbacks, steps=6, val_every=3):
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, val_check_interval=val_every, check_val_every_n_epoch=None,
        callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
    )
    module = Busy()
    trainer.fit(module, _loader(2 * steps), _loader(4))
    return trainer, module


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    # the checkpoint callback comes first here; Lightning runs it after the others, as in train.py
    callbacks = [SlowCheckpoint(dirpath=str(tmp / "ckpt"), save_top_k=0, save_last=False), EnergyCallback(measure_power_secs=1, output_dir=str(tmp)),
                 SpeedCallback(warmup_steps=2), UtilizationCallback(interval_s=0.1)]
    trainer, module = _fit(tmp, callbacks)
    return tmp, trainer, collect_costs(trainer)[0]


def test_every_cost_has_a_known_name_unit_and_source(fitted):
    _, _, costs = fitted
    for name, m in costs.items():
        assert name in COSTS and m["unit"] == COSTS[name] and m["source"]


def test_phases_partition_the_fit(fitted):
    _, _, c = fitted
    total, train, val = c["train_time_s"]["value"], c["train_time_excl_validation_s"]["value"], c["validation_time_s"]["value"]
    ckpt = c["checkpoint_time_s"]["value"]
    assert total == pytest.approx(train + val + ckpt)
    assert val == pytest.approx(2 * 0.2, rel=0.5)  # two validations of ~0.2 s
    assert ckpt == pytest.approx(2 * 0.15, rel=0.5)  # two checkpoint writes of 0.15 s: not training, not validation
    assert train >= 6 * 0.05
    # the phases split the tracker's span, which also holds Lightning's set-up and teardown around them
    phases = sum(c[f"energy_{p}_kwh"]["value"] for p in ("train", "validation", "checkpoint"))
    assert 0.8 * c["energy_kwh"]["value"] <= phases <= c["energy_kwh"]["value"] * (1 + 1e-9)
    assert c["energy_checkpoint_kwh"]["value"] / phases == pytest.approx(ckpt / total, rel=0.05)
    assert c["energy_validation_kwh"]["value"] / phases == pytest.approx(val / total, rel=0.05)  # CPU/RAM split by time
    parts = sum(c[k]["value"] for k in ("energy_cpu_kwh", "energy_ram_kwh"))
    assert c["energy_kwh"]["value"] == pytest.approx(parts, rel=1e-6)


def test_speed_counts_samples_over_training_time_only(fitted):
    _, _, c = fitted
    assert c["train_samples_per_s"]["value"] == pytest.approx(12 / c["train_time_excl_validation_s"]["value"])
    assert c["train_tokens_per_s"]["value"] == pytest.approx(16 * c["train_samples_per_s"]["value"])
    assert 0 < c["time_to_best_s"]["value"] <= c["train_time_s"]["value"]


def test_warm_up_steps_are_timed_apart_from_the_steady_rate(fitted):
    _, _, c = fitted
    # steps 1-2 (one of them 0.3 s slower, like a compile) are the warm-up; steps 3-6 take 0.05 s each, 2 samples a step
    assert c["warmup_time_s"]["value"] == pytest.approx(0.3 + 2 * 0.05, rel=0.5)
    assert c["steady_train_samples_per_s"]["value"] == pytest.approx(2 / 0.05, rel=0.4)
    assert c["steady_train_samples_per_s"]["value"] > 1.5 * c["train_samples_per_s"]["value"]


def test_cpu_energy_is_labelled_estimated_and_plausible(fitted):
    _, _, c = fitted
    assert c["energy_kwh"]["source"].startswith("estimated")
    assert c["energy_cpu_kwh"]["source"].startswith(("estimated", "measured"))
    # average power = energy / time, within what a CPU + RAM estimate can be (a few W to a few hundred W)
    watts = c["energy_train_kwh"]["value"] * KWH / c["train_time_excl_validation_s"]["value"]
    assert 1 < watts < 1000 and c["avg_power_w"]["value"] == pytest.approx(watts)
    assert c["power_efficiency"]["value"] == pytest.approx(c["train_samples_per_s"]["value"] / watts)
    assert c["joules_per_sample"]["value"] == pytest.approx(c["energy_train_kwh"]["value"] * KWH / 12)


def test_no_gpu_means_null_not_zero(fitted):
    _, _, c = fitted
    for name in ("energy_gpu_kwh", "nvml_energy_kwh", "gpu_utilization_pct", "gpu_memory_used_gib", "peak_memory_allocated_gib", "peak_memory_reserved_gib", "avg_gpu_power_w"):
        assert c[name]["value"] is None, name
    assert c["energy_gpu_kwh"]["source"].startswith("not applicable")


def test_codecarbon_writes_its_csv_into_the_run_directory(fitted):
    tmp, _, _ = fitted
    assert (tmp / "emissions.csv").exists()


def test_a_tracker_that_cannot_start_never_stops_training(tmp_path, monkeypatch, caplog):
    import codecarbon

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("no such CPU")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    trainer, module = _fit(tmp_path, [EnergyCallback(output_dir=str(tmp_path)), SpeedCallback()])
    assert trainer.global_step == 6
    costs, _ = collect_costs(trainer)
    assert costs["energy_kwh"]["value"] is None and costs["energy_kwh"]["source"].startswith("unknown: codecarbon did not measure")
    assert costs["power_efficiency"]["value"] is None and costs["train_samples_per_s"]["value"] > 0
    assert sum("could not start" in r.message for r in caplog.records) == 1


def test_inference_phase_for_validate_only_runs(tmp_path):
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[EnergyCallback(output_dir=str(tmp_path)), SpeedCallback()], default_root_dir=str(tmp_path))
    trainer.validate(Busy(), _loader(4), verbose=False)
    costs, _ = collect_costs(trainer)
    assert costs["inference_samples_per_s"]["value"] == pytest.approx(4 / costs["inference_time_s"]["value"])
    assert costs["energy_inference_kwh"]["value"] > 0 and "energy_kwh" not in costs


# ---- one-time and steady-state energy (callbacks/derived.py) ------------------------------------------------
def test_warm_up_energy_and_steady_rates_add_up_to_the_training_energy(fitted):
    _, _, c = fitted
    warm, train = c["warmup_energy_kwh"]["value"], c["energy_train_kwh"]["value"]
    assert c["warmup_samples"]["value"] == 4  # 2 warm-up steps of 2 samples
    steady_samples = 12 - c["warmup_samples"]["value"]
    assert 0 < warm < train
    # warm-up + steady J/sample x steady samples = the measured training energy (which stays as measured)
    assert warm * KWH + c["steady_joules_per_sample"]["value"] * steady_samples == pytest.approx(train * KWH, rel=1e-9)
    steady_s = c["train_time_excl_validation_s"]["value"] - c["warmup_time_s"]["value"]
    assert c["steady_avg_power_w"]["value"] == pytest.approx((train - warm) * KWH / steady_s, rel=0.05)
    assert c["steady_power_efficiency"]["value"] == pytest.approx(
        c["steady_train_samples_per_s"]["value"] / c["steady_avg_power_w"]["value"], rel=0.05)
    # CPU/RAM are split by time: the compile-like first step makes the warm-up's share of energy its share of time
    assert warm / train == pytest.approx(c["warmup_time_s"]["value"] / c["train_time_excl_validation_s"]["value"], rel=0.05)
    assert c["steady_joules_per_sample"]["value"] < c["joules_per_sample"]["value"]  # the one-time cost is out
    assert "warm-up" in c["warmup_energy_kwh"]["source"] and c["steady_joules_per_sample"]["source"].startswith("derived")


def test_too_few_steps_for_a_steady_rate_is_null_with_the_reason(tmp_path):
    trainer, _ = _fit(tmp_path, [EnergyCallback(measure_power_secs=1, output_dir=str(tmp_path)), SpeedCallback(warmup_steps=5)],
                      steps=3, val_every=3)
    c, _ = collect_costs(trainer)
    for name in ("warmup_energy_kwh", "warmup_samples", "steady_joules_per_sample", "steady_avg_power_w", "steady_power_efficiency"):
        assert c[name]["value"] is None and c[name]["source"].startswith("unknown"), name
    assert "fewer than 5 optimizer steps" in c["steady_joules_per_sample"]["source"]
    assert c["energy_train_kwh"]["value"] > 0  # the measured total is still there
    # exactly warmup_steps steps: the warm-up is known, there is no steady part
    trainer, _ = _fit(tmp_path / "b", [EnergyCallback(measure_power_secs=1, output_dir=str(tmp_path / "b"), warmup_steps=3), SpeedCallback(warmup_steps=3)],
                      steps=3, val_every=3)
    c, _ = collect_costs(trainer)
    assert c["warmup_energy_kwh"]["value"] == pytest.approx(c["energy_train_kwh"]["value"], rel=0.05)
    assert c["steady_joules_per_sample"]["value"] is None and "no optimizer steps after the first 3" in c["steady_joules_per_sample"]["source"]


# ---- CPU attribution -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["machine", "process"])
def test_tracking_mode_reaches_codecarbon(tmp_path, monkeypatch, mode):
    import codecarbon

    seen = {}
    real = codecarbon.OfflineEmissionsTracker

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", spy)
    trainer, _ = _fit(tmp_path, [EnergyCallback(measure_power_secs=1, output_dir=str(tmp_path), tracking_mode=mode), SpeedCallback(warmup_steps=2),
                                 UtilizationCallback(interval_s=0.1)], steps=3, val_every=3)
    assert seen["tracking_mode"] == mode
    energy = next(cb for cb in trainer.callbacks if isinstance(cb, EnergyCallback))
    assert energy.span["codecarbon"].tracking_mode == mode  # CodeCarbon's own record of it
    _, extra = collect_costs(trainer)
    a = extra["cpu_attribution"]
    assert a["tracking_mode"] == mode and set(a) == {"tracking_mode", "process_cpu_pct", "machine_cpu_pct", "contended"}
    assert 0 <= a["process_cpu_pct"] <= 100 and 0 <= a["machine_cpu_pct"] <= 100 and isinstance(a["contended"], bool)


def test_a_bad_tracking_mode_is_refused():
    from study.errors import StudyError

    with pytest.raises(StudyError, match="callbacks.energy.tracking_mode=node is not one of: machine, process"):
        EnergyCallback(tracking_mode="node")


def test_contention_is_other_processes_share_of_the_machine(monkeypatch):
    """psutil mocked: a 4-core machine at 75% while this run's process (and its worker child) use 1.5 cores."""
    import os

    import psutil

    from callbacks.utilization import cpu_share

    class Proc:
        def __init__(self, pid, pct, kids=()):
            self.pid, self.pct, self.kids = pid, pct, kids

        def cpu_percent(self, interval):
            return self.pct  # percent of one core, as psutil counts a process

        def children(self, recursive=False):
            return list(self.kids)

    class Gone(Proc):
        def cpu_percent(self, interval):
            raise psutil.NoSuchProcess(self.pid)

    me = Proc(os.getpid(), 100.0, kids=[Proc(999_001, 50.0), Gone(999_002, 0.0)])
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 75.0)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 4)
    monkeypatch.setattr(psutil, "Process", lambda *a: me)
    cb = UtilizationCallback(contention_threshold_pct=10)
    cb._procs = {}
    machine, ours = cb._sample_cpu()
    assert (machine, ours) == (75.0, 150.0 / 4)  # a process's percent is of one core; the machine's of all four
    assert 999_002 not in cb._procs  # an ended child is dropped, not an error
    share = cpu_share([machine] * 3, [ours] * 3, threshold_pct=10)
    assert share == {"process_cpu_pct": 37.5, "machine_cpu_pct": 75.0, "contended": True}  # others: 37.5 points
    assert cpu_share([40.0, 44.0], [35.0, 37.0], 10)["contended"] is False  # others: 6 points
    assert cpu_share([40.0, 44.0], [35.0, 37.0], 5)["contended"] is True
    assert cpu_share([], [], 10) == {"process_cpu_pct": None, "machine_cpu_pct": None, "contended": None}  # unknown, not "no"


# ---- the energy so far, at each validation (what a killed segment keeps: study/ledger.py) -------------------
class SoFar(pl.Callback):
    """Takes EnergyCallback.so_far at each validation's end, as study.outcome.RecordOutcome does."""

    def __init__(self):
        self.snapshots, self.measurements = [], []

    def on_validation_end(self, trainer, pl_module):
        energy = next(cb for cb in trainer.callbacks if isinstance(cb, EnergyCallback))
        tracker, calls = energy.tracker, []
        if tracker is not None:
            real = tracker._do_measurements
            tracker._do_measurements = lambda: (calls.append(1), real())[1]
        self.snapshots.append(energy.so_far(trainer))
        if tracker is not None:
            del tracker._do_measurements
        self.measurements.append(len(calls))


def test_the_energy_so_far_is_split_as_at_the_end_without_stopping_the_tracker(tmp_path):
    so_far = SoFar()
    trainer, _ = _fit(tmp_path, [EnergyCallback(measure_power_secs=1, output_dir=str(tmp_path)), SpeedCallback(warmup_steps=2), so_far])
    final, _ = collect_costs(trainer)
    first, second = so_far.snapshots
    assert set(first) == {k for k in final if k.endswith("_kwh") and k != "energy_train_gpu_kwh"}  # the same figures
    assert 0 < first["energy_kwh"]["value"] < second["energy_kwh"]["value"] <= final["energy_kwh"]["value"]
    assert first["energy_kwh"]["source"] == final["energy_kwh"]["source"]  # measured the same way
    for snap in (first, second):  # split by phase as at the end: the phases (the open one up to now) fill the span
        phases = sum(snap[f"energy_{p}_kwh"]["value"] for p in ("train", "validation", "checkpoint"))
        assert 0.8 * snap["energy_kwh"]["value"] <= phases <= snap["energy_kwh"]["value"] * (1 + 1e-9)
        assert snap["warmup_energy_kwh"]["value"] > 0 and snap["energy_gpu_kwh"]["value"] is None
    # at most one CodeCarbon reading per snapshot (none if its scheduler read within the last 50 ms), never one per step
    assert len(so_far.measurements) == 2 and all(n <= 1 for n in so_far.measurements)
    assert (tmp_path / "emissions.csv").read_text().count("\n") == 2  # header + the one row that stop() writes: no flush


def test_the_energy_so_far_of_a_tracker_that_never_started_is_unknown(tmp_path, monkeypatch):
    import codecarbon

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("no such CPU")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    so_far = SoFar()
    _fit(tmp_path, [EnergyCallback(output_dir=str(tmp_path)), SpeedCallback(), so_far])
    snap = so_far.snapshots[-1]
    assert snap["energy_kwh"]["value"] is None and snap["energy_kwh"]["source"].startswith("unknown: codecarbon did not measure")
