"""The impl= and trainer= groups: one knob for the implementation, precision in one key, one Trainer config."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from study.errors import StudyError
from study.run import check_argv

ROOT = Path(__file__).resolve().parents[1]

IMPLS = {  # impl -> (attn_impl, compile, cuda_graph, precision, fused AdamW)
    "stock": ("hf", False, False, "32-true", False),
    "fast": ("fast", False, False, "bf16-mixed", True),
    "fast_compiled": ("fast", True, False, "bf16-mixed", True),
    "fast_graph": ("fast", True, True, "bf16-mixed", True),
}


def cfg(name="train", overrides=()):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_impl_sets_the_five_keys_together(impl):
    c = cfg(overrides=[f"impl={impl}", "model=led_base"])
    got = (c.model.attn_impl, c.model.compile, c.model.cuda_graph, c.trainer.precision, c.module.fused_optimizer)
    assert got == IMPLS[impl]


def test_stock_is_the_default_and_single_keys_still_override_an_impl():
    assert cfg().model.attn_impl == "hf" and cfg().trainer.precision == "32-true"
    c = cfg(overrides=["impl=fast_graph", "trainer.precision=32-true", "model.cuda_graph=false"])
    assert (c.trainer.precision, c.model.cuda_graph, c.model.compile) == ("32-true", False, True)
    # an experiment comes after the impl group
    assert cfg(overrides=["impl=fast", "experiment=smoke"]).model.attn_impl == "fast"


def test_precision_lives_in_one_key_and_the_trainer_group_is_shared():
    for strategy in (ROOT / "conf" / "strategy").glob("*.yaml"):
        assert "precision" not in strategy.read_text(), strategy.name
    train, infer = cfg(overrides=["impl=fast"]), cfg("infer", overrides=["impl=fast"])
    assert train.trainer._target_ == infer.trainer._target_ == "pytorch_lightning.Trainer"
    assert train.trainer.precision == infer.trainer.precision == "bf16-mixed"
    assert "precision" not in train.strategy


def test_unknown_impl_or_trainer_is_one_line():
    with pytest.raises(StudyError, match="unknown impl 'fastest'; choose from: fast, fast_compiled, fast_graph, stock"):
        check_argv(["impl=fastest"])
    with pytest.raises(StudyError, match="unknown trainer 'big'; choose from: default"):
        check_argv(["trainer=big"])


def test_a_family_without_a_fast_path_refuses_impl_fast_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "model=longt5_tiny", "impl=fast_graph", f"paths.output_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == ("error: model.attn_impl=fast: family longt5 (model=longt5_tiny) has no fast path; use impl=stock "
                         "(model.attn_impl may be: hf)")
