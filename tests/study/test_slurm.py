"""The SLURM launcher cannot run here: check that it composes and what it would submit for a DDP sweep."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from study.run import register_resolvers

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the SLURM launcher is the [slurm] extra")
CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture()
def slurm_cfg(tmp_path):
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "experiment=paper_qa", "hydra.launcher.partition=gpu", f"paths.output_dir={tmp_path}"],
            return_hydra_config=True,
        )
    yield cfg
    GlobalHydra.instance().clear()


def test_launcher_resources_follow_the_strategy(slurm_cfg):
    launcher = slurm_cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (1, 8, 8)  # ddp_8gpu: one task per GPU
    assert launcher.partition == "gpu" and launcher.timeout_min == 4320 and launcher.name == "paper_qa"


def test_the_submission_for_each_sweep_job(slurm_cfg, monkeypatch, tmp_path):
    import submitit

    captured = {}

    def fake_map_array(self, fn, *args):
        captured["executor"], captured["args"] = self, args
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    # submitit looks for srun before it builds a SLURM executor; nothing is ever run
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    HydraConfig.instance().set_config(slurm_cfg)
    launcher = instantiate(slurm_cfg.hydra.launcher)
    launcher.config, launcher.task_function = slurm_cfg, (lambda cfg: None)
    jobs = [["experiment=paper_qa", "model=led_base", "seq_len=1024"], ["experiment=paper_qa", "model=led_base", "seq_len=4096"]]
    launcher.launch(jobs, initial_job_idx=0)
    overrides = captured["args"][0]
    assert [list(o) for o in overrides] == jobs  # one SLURM array task per job, with that job's own overrides
    slurm = captured["executor"]._executor
    script = slurm._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "UID")
    for line in ("#SBATCH --nodes=1", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=8", "#SBATCH --partition=gpu", "#SBATCH --time=4320",
                 "#SBATCH --signal=USR2@300"):  # the pre-timeout signal the job saves its state and requeues on
        assert line in script, line
    assert "srun" in script and "submitit.core._submit" in script
