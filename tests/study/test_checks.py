"""study/checks.py: each bad config value is one StudyError naming the key the user sets, its value and what is allowed."""

import pytest
from hydra import compose, initialize_config_dir

from study.checks import check, origin
from study.errors import StudyError
from study.run import CONF_DIR, register_resolvers


def composed(config: str, *overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=["experiment=smoke", *overrides])


@pytest.mark.parametrize(
    "override, line",
    [
        ("trainer.precision=bogus", "trainer.precision=bogus must be one of: "),
        ("trainer.max_steps=abc", "trainer.max_steps=abc must be a whole number >= -1 (-1: no limit)"),
        ("trainer.max_steps=-2", "trainer.max_steps=-2 must be a whole number >= -1"),
        ("trainer.max_steps=2.5", "trainer.max_steps=2.5 must be a whole number"),
        ("trainer.max_epochs=true", "trainer.max_epochs=true must be a whole number"),
        ("strategy.devices=0", "strategy.devices=0 must be a positive whole number, -1 (all), auto or a list of device indices"),
        ("trainer.devices=abc", "trainer.devices=abc must be a positive whole number"),
        ("trainer.gradient_clip_val=abc", "trainer.gradient_clip_val=abc must be a number >= 0, or null for no clipping"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 must be a number >= 0"),
        ("module.lr=0", "module.lr=0 must be a positive number"),
        ("module.lr=-1e-3", "module.lr=-0.001 must be a positive number"),
        ("module.lr=abc", "module.lr=abc must be a positive number"),
        ("module.lr=nan", "module.lr=nan must be a positive number"),
        ("data.val_every_steps=0", "data.val_every_steps=0 must be a positive whole number"),
        ("module.generation.num_beams=0", "module.generation.num_beams=0 must be a positive whole number"),
        ("module.generation.min_new_tokens=-1", "module.generation.min_new_tokens=-1 must be a whole number >= 0"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 must be a positive whole number"),
        ("strategy.accumulate_grad_batches=x", "strategy.accumulate_grad_batches=x must be a positive whole number"),
        ("data.max_target_len=0", "data.max_target_len=0 must be a positive whole number"),
        ("module.generation.max_new_tokens=0", "module.generation.max_new_tokens=0 must be a positive whole number"),
        ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path=/nonexistent/last.ckpt must be null, last, or the path of an existing checkpoint file"),
    ],
)
def test_a_bad_train_value_is_one_line_naming_the_key_it_was_set_as(override, line):
    with pytest.raises(StudyError) as e:
        check(composed("train", override))
    assert str(e.value).startswith(line) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, line", [
    (["data=synthetic", "module.global_attention=question"], "module.global_attention=question needs a QA task (data.task=qa), got data.task=summarization"),
    (["data=synthetic_qa", "model=bigbird_tiny", "module.global_attention=question"], "module.global_attention=question: model family bigbird_pegasus has no global attention"),
    (["data=synthetic_qa", "module.global_attention=all"], "module.global_attention=all is not one of: first_token, question"),
])
def test_global_attention_on_the_question_needs_qa_and_led(overrides, line):
    with pytest.raises(StudyError) as e:
        check(composed("train", *overrides))
    assert str(e.value).startswith(line) and "\n" not in str(e.value)
    check(composed("train", "data=synthetic_qa", "model=led_tiny", "module.global_attention=question"))


def test_bf16_residual_stream_needs_bf16_autocast():
    with pytest.raises(StudyError) as e:
        check(composed("train", "impl=fast_graph", "model.residual_dtype=bfloat16", "trainer.precision=32-true"))
    assert str(e.value).startswith("model.residual_dtype=bfloat16 needs trainer.precision=bf16-mixed (got 32-true)")
    check(composed("train", "impl=fast_graph", "model.residual_dtype=bfloat16"))  # bf16-mixed: accepted


def test_an_auto_batch_for_a_run_that_trains_on_the_cpu_is_refused():
    """H200, 2026-12-02: batch_size=auto without a GPU strategy probed the GPU, held the process to 48 GiB, and then
    trained on the CPU (the default strategy)."""
    with pytest.raises(StudyError) as e:
        check(composed("train", "batch_size=auto", "strategy=cpu"))
    assert str(e.value).startswith("batch_size=auto sizes a GPU's batch, and strategy=cpu trains on the CPU") and "\n" not in str(e.value)
    check(composed("train", "batch_size=auto", "strategy=single_gpu"))
    check(composed("train", "batch_size=8", "strategy=cpu"))


@pytest.mark.parametrize(
    "override, line",
    [
        ("generation.num_beams=0", "generation.num_beams=0 must be a positive whole number"),
        ("eval_batch_size=0", "eval_batch_size=0 must be a positive whole number"),
        ("strategy.devices=0", "strategy.devices=0 must be a positive whole number"),
        ("trainer.precision=bogus", "trainer.precision=bogus must be one of: "),
        ("data.max_target_len=0", "data.max_target_len=0 must be a positive whole number"),
    ],
)
def test_a_bad_infer_value_is_one_line(override, line):
    with pytest.raises(StudyError, match="^" + line.replace("(", r"\(").replace(")", r"\)")):
        check(composed("infer", override))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.precision=bf16-mixed", "module.lr=1", "trainer.max_steps=-1", "trainer.gradient_clip_val=null"],
        ["strategy.devices=-1", "trainer.max_epochs=null", "ckpt_path=last"],
        ["strategy.devices=auto", "trainer.precision=16"],
        ["strategy.devices=[0,1]", "trainer.gradient_clip_val=0"],
        ["model=bigbird_tiny", "strategy=ddp_8gpu"],
    ],
)
def test_good_values_pass(overrides, tmp_path):
    check(composed("train", *overrides))


def test_an_existing_checkpoint_file_passes(tmp_path):
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"")
    check(composed("train", f"ckpt_path={ckpt}"))


def test_every_shipped_experiment_strategy_and_data_passes():
    def options(group):
        return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for group in ("experiment", "strategy", "data"):  # the groups that set checked keys
            for option in options(group):
                check(compose(config_name="train", overrides=[f"{group}={option}"]))
        check(compose(config_name="infer", overrides=["strategy=ddp_8gpu"]))


def test_origin_follows_an_interpolation_to_the_key_the_user_sets():
    cfg = composed("train")
    assert origin(cfg, "trainer.devices") == "strategy.devices"
    assert origin(cfg, "module.generation.max_new_tokens") == "data.max_target_len"
    assert origin(cfg, "module.lr") == "module.lr"
    assert origin(composed("train", "trainer.devices=2"), "trainer.devices") == "trainer.devices"
