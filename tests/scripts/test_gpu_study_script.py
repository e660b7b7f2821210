"""scripts/gpu_study_h200.sh grid, the H200 study's queue, with python3 stubbed: the order it runs the cells in, that
a later call resumes rather than moves what an earlier one left, and that a call short of time stops starting jobs."""

import os
import stat
import subprocess

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_study_h200.sh"


def run_grid(tmp_path, **env):
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    calls = tmp_path / "calls.txt"
    # every python3 call logs its arguments; train.py leaves a run directory as a real one would
    (stub / "python3").write_text(f"""#!/usr/bin/env bash
echo "$*" >> {calls}
for a in "$@"; do case $a in paths.output_dir=*) out=${{a#paths.output_dir=}};; esac; done
if [ "$1" = train.py ] && [ -n "${{out:-}}" ]; then mkdir -p "$out/sweeps/finetune_synthetic/job"; fi
exit 0
""")
    (stub / "python3").chmod((stub / "python3").stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    full = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "OUT": str(out), "STUDY_DIR": str(tmp_path / "study"),
            "SCROLLS_STUDY_CACHE": str(tmp_path / "cache"), "PROBE_CACHE_IN": str(tmp_path / "none.json"), **env}
    proc = subprocess.run(["bash", str(SCRIPT), "grid"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line for line in lines if line.startswith(("train.py", "infer.py"))], out


def steps(lines):
    out = []
    for line in lines:
        words = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if line.startswith("infer.py"):
            out.append("infer")
        elif words.get("experiment") == "pretrain_synthetic":
            out.append(f"pretrain {words['model']}")
        else:
            out.append(f"fine-tune {words['model']} seed {words['seed']}")
    return out


def test_models_before_seeds_then_infer_and_the_runs_left_in_place(tmp_path):
    lines, out = run_grid(tmp_path, SEEDS="1 2", MODELS="led_base led_large", BUDGET="900")
    assert steps(lines) == [
        "pretrain led_base", "fine-tune led_base seed 1", "pretrain led_large", "fine-tune led_large seed 1",
        "pretrain led_base", "fine-tune led_base seed 2", "pretrain led_large", "fine-tune led_large seed 2", "infer"]
    fine = [line for line in lines if "finetune_synthetic" in line and line.startswith("train.py")]
    assert all("batch_size=auto" in f and "batch_size_memory_gib=48" in f and "trainer.max_steps=100" in f
               and "seq_len=1024,4096,2048,3072" in f for f in fine)  # block 1 by default, the two ends first
    assert (tmp_path / "study" / "sweeps" / "finetune_synthetic" / "job").is_dir()  # not moved: the next call resumes it
    assert (out / "grid.tar.gz").exists() and (out / "log.txt").exists()


def test_a_call_short_of_time_starts_no_job_it_cannot_finish(tmp_path):
    lines, out = run_grid(tmp_path, SEEDS="1 2", MODELS="led_base", BUDGET="100")
    # under a minute for a job after the margins: no training started (none cut off), and infer.py still evaluates
    # what earlier calls left
    assert steps(lines) == ["infer"]
    assert "pretrain" not in (out / "log.txt").read_text()


def test_probe_answers_carried_in_are_used_and_handed_back(tmp_path):
    """A fresh machine has no probe answers: the ones an earlier call returned ($OUT/batch_size_auto.json), carried
    as .gpu_probe_cache.json, are put where batch_size=auto reads them, and this call's answers go back in $OUT.
    Where the machine already holds answers (warm), they are not replaced."""
    carried = tmp_path / "carried.json"
    carried.write_text('{"k": {"batch_size": 165}}')
    cache = tmp_path / "cache"
    _, out = run_grid(tmp_path, SEEDS="1", MODELS="led_base", BUDGET="400", INFER="0",
                      PROBE_CACHE_IN=str(carried), SCROLLS_STUDY_CACHE=str(cache))
    assert (cache / "batch_size_auto.json").read_text() == carried.read_text()
    assert (out / "batch_size_auto.json").read_text() == carried.read_text()
    assert "probe answers from" in (out / "log.txt").read_text()
    (cache / "batch_size_auto.json").write_text('{"k": {"batch_size": 165}, "k2": {"batch_size": 41}}')  # warm, newer
    _, out = run_grid(tmp_path, SEEDS="1", MODELS="led_base", BUDGET="400", INFER="0",
                      PROBE_CACHE_IN=str(carried), SCROLLS_STUDY_CACHE=str(cache))
    assert '"k2"' in (out / "batch_size_auto.json").read_text()


def test_extra_overrides_reach_both_steps(tmp_path):
    """Block 5 (the QA task): LED's global attention on the question, in its pretraining and its fine-tunes alike."""
    lines, _ = run_grid(tmp_path, SEEDS="1", MODELS="led_base", BUDGET="400", INFER="0", TASK="synthetic_qa",
                        EXTRA="module.global_attention=question")
    assert len(lines) == 2 and all("data=synthetic_qa" in f and f.endswith("module.global_attention=question") for f in lines)
    (tmp_path / "plain").mkdir()
    lines, _ = run_grid(tmp_path / "plain", SEEDS="1", MODELS="led_base", BUDGET="400", INFER="0")
    assert len(lines) == 2 and not any("global_attention" in f for f in lines)


def test_cells_name_the_queue_a_fresh_machine_still_needs(tmp_path):
    """A later session's fresh machine has none of the earlier runs to skip: CELLS names the seed, model and lengths
    of each step still missing, in that order, and the GPU tests named in GPU_TESTS run before any of them."""
    lines, out = run_grid(tmp_path, CELLS="1:led_base:3072 1:led_large:4096,2048 2:led_base:1024,4096", BUDGET="900",
                          INFER="0", GPU_TESTS="tests/lightning_modules/test_batch_size.py -k cap")
    assert steps(lines) == ["pretrain led_base", "fine-tune led_base seed 1", "pretrain led_large",
                            "fine-tune led_large seed 1", "pretrain led_base", "fine-tune led_base seed 2"]
    fine = [line for line in lines if "finetune_synthetic" in line]
    assert [w for f in fine for w in f.split() if w.startswith("seq_len=")] == [
        "seq_len=3072", "seq_len=4096,2048", "seq_len=1024,4096"]
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    tests = [i for i, c in enumerate(calls) if c.startswith("-m pytest -m gpu")]
    first_job = next(i for i, c in enumerate(calls) if c.startswith("train.py"))
    assert len(tests) == 1 and tests[0] < first_job and calls[tests[0]].endswith("test_batch_size.py -k cap")
