"""report.py's command line and the small rules the table relies on, in-process (fast)."""

import pytest

from report import config
from report.collect import estimated
from study.errors import StudyError


def test_job_directories_with_equals_signs_are_directories_and_dotted_keys_are_overrides(tmp_path, monkeypatch):
    job = tmp_path / "experiment=demo,model=led_tiny,seq_len=128"
    job.mkdir()
    monkeypatch.chdir(tmp_path)
    dirs, overrides = config.split_args([str(job), "experiment=demo,model=led_tiny,seq_len=128", "budget.kwh=0.5", "out=x"])
    assert dirs == [str(job), "experiment=demo,model=led_tiny,seq_len=128"] and overrides == ["budget.kwh=0.5", "out=x"]


def test_overrides_are_checked_and_typed(tmp_path):
    cfg = config.load(["budget.kwh=1e-3", "budget.train_hours=2", "statuses=[ok,interrupted]", "figures.formats=[svg]"])
    assert cfg.budget.kwh == pytest.approx(0.001) and cfg.budget.train_hours == 2.0 and cfg.budget.min_inference_samples_per_s is None
    assert cfg.statuses == ["ok", "interrupted"] and cfg.figures.formats == ["png", "svg"]  # the report shows PNGs
    dirs, cfg = config.parse([str(tmp_path)])
    assert dirs == [tmp_path] and cfg.out == str(tmp_path / "report")


@pytest.mark.parametrize(
    "override, message",
    [
        ("budget.kwh=abc", "budget.kwh=abc is not allowed; give a number >= 0 (kWh) or null for no limit"),
        ("budget.min_inference_samples_per_s=-2", "budget.min_inference_samples_per_s=-2 is not allowed; give a number >= 0 (samples/s)"),
        ("budget.train_hours=true", "budget.train_hours=True is not allowed"),
        ("budget=1", "unknown key 'budget' in 'budget=1'; allowed keys: out, budget.kwh,"),
        ("costs.energy=energy_kwhh", "costs.energy=energy_kwhh is not a recorded cost; choose from: energy_kwh,"),
        ("accuracy=best", "accuracy=best is not allowed; choose from: infer, train"),
        ("statuses=[ok,running]", "statuses=running is not a status; choose from: ok, oom, failed, interrupted, incomplete"),
        ("figures.formats=[gif]", "figures.formats=gif is not allowed; choose from: png, svg, pdf"),
    ],
)
def test_bad_overrides_name_the_value_and_what_is_allowed(override, message):
    with pytest.raises(StudyError) as e:
        config.load([override])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_figure_derived_from_an_estimate_is_an_estimate():
    sources = {
        "energy_train_kwh": "estimated: cpu tdp x load (codecarbon)",
        "avg_power_w": "derived: energy_train_kwh / train_time_excl_validation_s",
        "train_samples_per_s": "measured: wall clock",
        "power_efficiency": "derived: train_samples_per_s / avg_power_w",
        "joules_per_sample": "derived: train_samples_per_s / avg_gpu_power_w",
        "avg_gpu_power_w": "measured: nvml",
    }
    assert estimated("power_efficiency", sources) and estimated("avg_power_w", sources)
    assert not estimated("train_samples_per_s", sources) and not estimated("joules_per_sample", sources)


def test_projection_basis_and_pooling_keys_are_checked():
    cfg = config.load(["project.epochs=3", "budget.basis=projected", "pool_hardware=true"])
    assert cfg.project.epochs == 3.0 and cfg.project.samples is None and cfg.budget.basis == "projected" and cfg.pool_hardware is True
    assert config.load([]).budget.basis == "measured" and config.load([]).pool_hardware is False
    assert config.load([]).costs.train_speed == "steady_train_samples_per_s"  # the report's rates are steady-state ones


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["budget.basis=guess"], "budget.basis=guess is not allowed; choose from: measured, projected"),
        (["budget.basis=projected"], "budget.basis=projected needs a projection; give project.epochs=N or project.samples=N"),
        (["project.epochs=2", "project.samples=10"], "project.epochs=2 and project.samples=10 are both set; give one of them"),
        (["project.epochs=-1"], "project.epochs=-1 is not allowed; give a number >= 0 (epochs)"),
        (["project.samples=lots"], "project.samples=lots is not allowed; give a number >= 0 (training samples)"),
        (["pool_hardware=maybe"], "pool_hardware=maybe is not allowed; choose from: true, false"),
    ],
)
def test_bad_projection_and_pooling_input_names_the_key_and_what_is_allowed(overrides, message):
    with pytest.raises(StudyError) as e:
        config.load(overrides)
    assert str(e.value).startswith(message), str(e.value)
