"""The five model configs: published sizes, tokenizer wiring, attention settings and input-length checks."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lightning_modules.models import ModelSpec, count_parameters
from study.errors import StudyError
from study.run import build

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
PUBLISHED = {"led_base": 161_844_480, "led_large": 459_801_600, "bigbird_large": 576_891_904}


def spec(name: str, **overrides) -> ModelSpec:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v)
    return build(cfg)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_real_architectures_match_published_parameter_counts(name):
    s = spec(name, pretrained=False)
    from lightning_modules.models import _classes

    config_cls, model_cls = _classes(s.family)
    with torch.device("meta"):  # shapes only: no memory, no time
        model = model_cls(s.build_config(s.load_tokenizer()))
    n = count_parameters(model)
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.01
    assert n == s.published_params  # built from the YAML numbers: exactly the published configuration


@pytest.mark.parametrize("name", ["led_tiny", "bigbird_tiny"])
def test_tiny_models_build_and_run_on_cpu(name):
    s = spec(name)
    model, tok = s.load(seed=0)
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id and model.config.eos_token_id == tok.eos_token_id
    ids = torch.randint(5, len(tok), (2, 256))
    kw = {"global_attention_mask": torch.zeros_like(ids).index_fill_(1, torch.tensor([0]), 1)} if s.family == "led" else {}
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids[:, :5].contiguous(), **kw)
    assert torch.isfinite(out.loss)


def test_same_seed_same_random_weights():
    a, _ = spec("led_tiny").load(seed=3)
    b, _ = spec("led_tiny").load(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_led_attends_globally_to_the_first_token_and_bigbird_needs_full_length_inputs():
    assert spec("led_base").global_attention_on_first_token and not spec("led_base").needs_full_length_inputs
    assert spec("bigbird_large").needs_full_length_inputs and not spec("bigbird_large").global_attention_on_first_token


def test_bigbird_stays_block_sparse_after_a_short_batch_when_padded_to_seq_len():
    from data.datamodule import ScrollsDataModule

    s = spec("bigbird_tiny")
    model, tok = s.load(seed=0)
    seq_len = 256  # above the block-sparse minimum of (5 + 2*2) * 8 = 72
    assert s.prepare_for_length(model, seq_len) == "block_sparse"
    dm = ScrollsDataModule(name="x", task="summarization", tokenizer=tok, seq_len=seq_len, pad_to_seq_len=s.needs_full_length_inputs)
    batch = dm._inputs([tok("the report said")["input_ids"]])  # a 4-token document
    assert batch["input_ids"].shape == (1, seq_len)
    model.eval()
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=torch.zeros(1, 1, dtype=torch.long))
    assert model.get_encoder().attention_type == "block_sparse"
    # what padding prevents: an unpadded short batch switches HF's BigBird to full attention for good
    with torch.no_grad():
        model(input_ids=batch["input_ids"][:, :4], decoder_input_ids=torch.zeros(1, 1, dtype=torch.long))
    assert model.get_encoder().attention_type == "original_full"


def test_too_short_for_block_sparse_is_said_and_recorded():
    s = spec("bigbird_tiny")
    model, _ = s.load(seed=0)
    assert s.prepare_for_length(model, 64) == "original_full"


@pytest.mark.parametrize("bad", [0, -5, 1.5, "long", True])
def test_seq_len_must_be_a_positive_whole_number(bad):
    with pytest.raises(StudyError, match=f"seq_len={bad}"):
        spec("led_base").check_seq_len(bad)


def test_seq_len_over_the_model_limit():
    # BigBird: the family's limit, whatever its positions say
    with pytest.raises(StudyError, match="seq_len=8192: family bigbird_pegasus \\(model=bigbird_large\\) runs at most 4096"):
        spec("bigbird_large").check_seq_len(8192)
    assert spec("bigbird_large").check_seq_len(4096) == 4096
    with pytest.raises(StudyError, match="seq_len=8192 is over model=led_tiny's limit of 4096 input positions"):
        spec("led_tiny").check_seq_len(8192)
    assert spec("led_base").check_seq_len(16384) == 16384


def test_unreachable_hub_weights_name_the_offline_overrides(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: skip the network retries
    with pytest.raises(StudyError) as e:
        spec("led_base", pretrained=True).load()
    assert "model.pretrained=false" in str(e.value)


def test_unknown_attention_implementation():
    with pytest.raises(StudyError, match="model.attn_impl=flash is not one of: hf, fast"):
        spec("led_tiny", attn_impl="flash")


def test_compile_takes_a_bool_or_a_torch_compile_mode():
    assert spec("led_tiny", compile="reduce-overhead").compile == "reduce-overhead"
    with pytest.raises(StudyError, match="model.compile=fastest is not one of: False, True, default, reduce-overhead"):
        spec("led_tiny", compile="fastest")


def test_residual_dtype_is_checked_and_reaches_the_fast_path():
    with pytest.raises(StudyError, match="model.residual_dtype=float16 is not one of: float32, bfloat16"):
        spec("led_tiny", attn_impl="fast", residual_dtype="float16")
    with pytest.raises(StudyError, match="model.residual_dtype=bfloat16 needs model.attn_impl=fast"):
        spec("led_tiny", residual_dtype="bfloat16")
    model, _ = spec("led_tiny", attn_impl="fast", residual_dtype="bfloat16").load(seed=0)
    assert model._fast.residual_dtype is torch.bfloat16
    model, _ = spec("led_tiny", attn_impl="fast").load(seed=0)
    assert model._fast.residual_dtype is None


def _a_trained_run(tmp_path, name="led_tiny", seed=3):
    """A train run directory as train.py leaves it: model/ (architecture, tokenizer) and checkpoints/best.ckpt."""
    from lightning_modules.models import save_architecture

    model, tok = spec(name).load(seed=seed)
    run = tmp_path / f"{name}_run"
    save_architecture(model, tok, run)
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run / "checkpoints" / "best.ckpt")
    return run, model


@pytest.mark.parametrize("name", ["led_tiny", "bigbird_tiny"])
def test_a_train_run_directory_as_local_path_starts_from_its_best_checkpoint(tmp_path, name):
    run, trained = _a_trained_run(tmp_path, name)
    s = spec(name, pretrained=True, local_path=str(run))
    assert s.source_run == run and s.tokenizer_source == str(run / "model")
    model, tok = s.load(seed=99)  # the seed draws nothing: the weights are the run's
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(trained.state_dict().items())):
        assert torch.equal(a, b), k
    assert len(tok) == len(spec(name).load_tokenizer())


def test_a_run_directory_of_another_model_or_without_its_checkpoint_is_refused(tmp_path):
    run, _ = _a_trained_run(tmp_path, "led_tiny")
    with pytest.raises(StudyError, match="does not fit model=bigbird_tiny"):
        spec("bigbird_tiny", pretrained=True, local_path=str(run)).load()
    (run / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(StudyError, match="best.ckpt does not exist"):
        spec("led_tiny", pretrained=True, local_path=str(run)).load()
    # without pretrained=true the directory is not read: random weights, as the key says
    assert spec("led_tiny", pretrained=False, local_path=str(run)).source_run is None


@pytest.mark.parametrize("status", ["interrupted", "failed", "running"])
def test_a_run_that_did_not_finish_is_refused_as_a_starting_point(tmp_path, status):
    """A pretraining cut off by a device call's time limit (or one that diverged) has a best checkpoint too: a
    fine-tune from it would read as one from the finished recipe. Refused in one line; a finished run is taken."""
    from study import record

    run, _ = _a_trained_run(tmp_path, "led_tiny")
    record.update(run, kind="train", status=status)
    with pytest.raises(StudyError, match=f"holds a train run that is {status}, not finished"):
        spec("led_tiny", pretrained=True, local_path=str(run)).load()
    record.update(run, status="ok")
    spec("led_tiny", pretrained=True, local_path=str(run)).load()
