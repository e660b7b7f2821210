"""The cost ledger: a run's totals are sums over its segments, and its rates are re-derived from the sums."""

import pytest

from study import ledger
from study.record import measurement


def _segment(train_s, val_s, kwh, samples, util=None, killed=False):
    costs = {
        "train_time_s": measurement(train_s + val_s, "s", "clock"),
        "train_time_excl_validation_s": measurement(train_s, "s", "clock"),
        "validation_time_s": measurement(val_s, "s", "clock"),
        "energy_train_kwh": measurement(None if killed else kwh, "kWh", "cc" if not killed else ledger.KILLED),
        "energy_kwh": measurement(None if killed else 2 * kwh, "kWh", "cc" if not killed else ledger.KILLED),
    }
    if util is not None:
        costs["cpu_utilization_pct"] = measurement(util, "%", "psutil")
    return {"start": "t", "ended": "killed" if killed else "finished", "start_step": 0, "end_step": 0, "steps": samples // 4,
            "samples": samples, "costs": costs}


def test_additive_figures_sum_and_rates_are_recomputed_from_the_sums():
    a, b = _segment(10.0, 2.0, 1e-3, 40, util=50.0), _segment(30.0, 2.0, 3e-3, 40, util=100.0)
    c = ledger.totals([a, b])
    assert c["train_time_s"]["value"] == pytest.approx(44.0) and c["energy_train_kwh"]["value"] == pytest.approx(4e-3)
    assert c["train_samples_per_s"]["value"] == pytest.approx(80 / 40.0)  # not the mean of 4.0 and 1.33
    assert c["avg_power_w"]["value"] == pytest.approx(4e-3 * 3.6e6 / 40.0)
    assert c["joules_per_sample"]["value"] == pytest.approx(4e-3 * 3.6e6 / 80)
    assert c["power_efficiency"]["value"] == pytest.approx(c["train_samples_per_s"]["value"] / c["avg_power_w"]["value"])
    assert c["cpu_utilization_pct"]["value"] == pytest.approx((50 * 12 + 100 * 32) / 44)  # weighted by segment time
    assert "sum over 2 segment(s)" in c["train_time_s"]["source"]


def test_a_killed_segments_unknown_energy_makes_the_total_unknown_not_a_partial_sum():
    c = ledger.totals([_segment(10.0, 2.0, None, 40, killed=True), _segment(30.0, 2.0, 3e-3, 40)])
    assert c["energy_kwh"]["value"] is None and c["energy_kwh"]["source"].startswith("unknown: segment 0")
    assert c["avg_power_w"]["value"] is None and c["power_efficiency"]["value"] is None
    assert c["train_time_s"]["value"] == pytest.approx(44.0)  # time is still known


def test_a_segment_left_running_is_closed_as_killed_at_the_resumed_step():
    seg = dict(ledger.open_segment(0), steps=6, samples=24, end_step=6)
    done = ledger.close_killed([seg], resumed_step=4)
    assert done[0]["ended"] == "killed" and done[0]["steps"] == 4 and done[0]["samples"] == 16
    assert done[0]["host"] and "gpu" in done[0]


def test_a_killed_segment_keeps_its_last_snapshots_energy_and_the_totals_sum_it():
    snap = dict(ledger.open_segment(0), steps=4, samples=16, end_step=4, costs={
        "train_time_s": measurement(12.0, "s", "clock"), "train_time_excl_validation_s": measurement(10.0, "s", "clock"),
        "energy_train_kwh": measurement(1e-3, "kWh", "cc; up to the validation at step 4"),
        "energy_kwh": measurement(2e-3, "kWh", "cc; up to the validation at step 4"),
        "energy_gpu_kwh": measurement(None, "kWh", "not applicable: no GPU in use")})
    killed = ledger.close_killed([snap], resumed_step=4)[0]
    assert killed["costs"]["energy_kwh"]["value"] == 2e-3
    assert killed["costs"]["energy_kwh"]["source"] == (
        "cc; up to the validation at step 4 (the last saved state; the segment was killed: what it spent after that is lost work)")
    assert killed["costs"]["energy_gpu_kwh"]["source"] == "not applicable: no GPU in use"  # an unknown stays as it was
    c = ledger.totals([killed, _segment(30.0, 2.0, 3e-3, 40)])
    assert c["energy_kwh"]["value"] == pytest.approx(2e-3 + 6e-3) and c["energy_train_kwh"]["value"] == pytest.approx(4e-3)
    assert c["energy_kwh"]["source"] == "sum over 2 segment(s): cc; segment(s) 0 killed: counted up to their last saved state"
    assert c["avg_power_w"]["value"] == pytest.approx(4e-3 * 3.6e6 / 40.0)  # rates from the sums


def test_a_segment_killed_between_its_snapshot_and_the_state_save_says_where_the_run_resumed():
    snap = dict(ledger.open_segment(0), steps=4, samples=16, end_step=4,
                costs={"energy_kwh": measurement(2e-3, "kWh", "cc; up to the validation at step 4")})
    killed = ledger.close_killed([snap], resumed_step=2)[0]
    assert killed["steps"] == 2 and "(the run resumed from step 2; the segment was killed" in killed["costs"]["energy_kwh"]["source"]
