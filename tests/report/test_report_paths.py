"""Stock against the fast path (report/paths.py), on small hand-made run tables aggregated as report.py does."""

import pandas as pd
import pytest

from report import configurations, paths

COSTS = {"energy": "energy_kwh", "train_time": "train_time_s", "inference_speed": "inference_samples_per_s",
         "train_speed": "steady_train_samples_per_s", "joules_per_sample": "steady_joules_per_sample", "warmup_time": "warmup_time_s"}


def run(model, seq, seed, rgm, impl, speed, jps, kwh, memory=None, batch=8):
    fast = impl == "fast"
    return {"label": f"{model} @ {seq}", "status": "ok", "dataset": "synthetic", "metric": "rgm", "model": model, "family": "led",
            "parameters": 1.6e8 if model == "led_base" else 4.6e8, "seq_len": seq, "seed": seed, "metric_value": rgm, "rgm": rgm,
            "attn_impl": impl, "compile": fast, "cuda_graph": fast, "precision": "bf16-mixed" if fast else "32-true",
            "strategy": "single_gpu", "corpus": "synthetic (doc_tokens=4096)", "training_budget": "200 steps",
            "memory_budget": memory, "hardware": "1 x NVIDIA H200", "batch_size": batch, "effective_batch_size": batch,
            "devices": 1, "num_nodes": 1, "pretrained": True, "energy_kwh": kwh, "train_time_s": 10.0,
            "steady_train_samples_per_s": speed, "steady_joules_per_sample": jps, "warmup_time_s": 20.0 if fast else 1.0,
            "contended": False, "run_dir": f"r/{model}{seq}{seed}{impl}{memory}"}


def table(rows):
    return configurations.aggregate(pd.DataFrame(rows))


def test_each_configuration_on_both_paths_is_one_row_with_ratios_and_whether_accuracy_moved():
    confs = table([
        run("led_base", 1024, 1, 27.0, "hf", 40.0, 16.0, 0.010), run("led_base", 1024, 2, 28.0, "hf", 40.0, 16.0, 0.010),
        run("led_base", 1024, 1, 27.5, "fast", 400.0, 2.0, 0.002), run("led_base", 1024, 2, 28.5, "fast", 440.0, 2.0, 0.002),
        run("led_base", 4096, 1, 60.0, "hf", 10.0, 64.0, 0.040), run("led_base", 4096, 2, 62.0, "hf", 10.0, 64.0, 0.040),
        run("led_base", 4096, 1, 99.0, "fast", 150.0, 4.0, 0.004), run("led_base", 4096, 2, 100.0, "fast", 150.0, 4.0, 0.004),
        run("led_large", 1024, 1, 27.0, "hf", 13.0, 50.0, 0.03),  # stock only: nothing to pair with
    ])
    both = paths.compare(confs, COSTS)
    assert list(both["seq_len"]) == [1024, 4096] and set(both["model"]) == {"led_base"}
    r = both.set_index("seq_len").loc[1024]
    assert r["stock"] == "hf, 32-true, single_gpu" and r["fast"] == "fast (compiled, step graph), bf16-mixed, single_gpu"
    assert r["speedup"] == pytest.approx(10.5) and r["energy_per_sample_ratio"] == pytest.approx(8.0)
    assert r["difference"] == pytest.approx(0.5) and not r["separable"]  # 27-28 against 27.5-28.5: inside the noise
    r = both.set_index("seq_len").loc[4096]
    assert r["difference"] == pytest.approx(38.5) and r["separable"] and r["energy_per_sample_ratio"] == pytest.approx(16.0)
    (line,) = paths.summary(both, confs, COSTS)
    assert line.startswith("On synthetic (hf, 32-true, single_gpu against fast (compiled, step graph), bf16-mixed, single_gpu): "
                           "2 configurations ran on both; training speed after warm-up 12.8x (median; 10.5-15x); "
                           "energy per training sample 12x less (median; 8-16x less)")
    assert "Rgm differs by at most 38.5 points, separable from noise in 1 of 2" in line
    assert "most accurate point of the energy frontier is led_base @ 4096 (61, 0.04 kWh) on stock and led_base @ 4096 (99.5, " \
           "0.004 kWh) on the fast path: 10x less energy" in line


def test_different_memory_budgets_are_never_paired_and_no_pair_is_an_empty_table():
    cap, card = "batch_size=auto within 48 GiB", "batch_size=auto, the whole card (139.8 GiB)"
    confs = table([run("led_base", 1024, 1, 27.0, "hf", 40.0, 16.0, 0.01, memory=cap),
                   run("led_base", 1024, 1, 27.0, "fast", 400.0, 2.0, 0.002, memory=card, batch=94)])
    both = paths.compare(confs, COSTS)
    assert both.empty and list(both.columns) == paths.PATH_COLUMNS and paths.summary(both, confs, COSTS) == []
    confs = table([run("led_base", 1024, 1, 27.0, "hf", 40.0, 16.0, 0.01, memory=card, batch=21),
                   run("led_base", 1024, 1, 27.0, "fast", 400.0, 2.0, 0.002, memory=card, batch=94)])
    both = paths.compare(confs, COSTS)
    (r,) = both.to_dict("records")
    assert (r["stock_batch"], r["fast_batch"]) == (21, 94)  # each path's own largest batch under the same budget
    assert r["experiment"] == "synthetic"
    (line,) = paths.summary(both, confs, COSTS)
    assert "Rgm differs by at most 0 points, from one run each: no spread to tell a difference from noise" in line


def test_settings_of_one_dataset_are_named_by_what_sets_them_apart():
    cap, card = "batch_size=auto within 48 GiB", "batch_size=auto, the whole card (139.8 GiB)"
    confs = table([run("led_base", 1024, 1, 27.0, impl, 40.0, 16.0, 0.01, memory=m) for impl in ("hf", "fast") for m in (cap, card)])
    both = paths.compare(confs, COSTS)
    assert sorted(both["experiment"]) == [f"synthetic [{cap}]", f"synthetic [{card}]"]
