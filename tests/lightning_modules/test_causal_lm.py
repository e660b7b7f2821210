"""The decoder-only family (Qwen3): published size, hub and local loading, training on the answer, generation with a
KV cache, and a tiny model through train.py, infer.py and report.py."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, run_cli
from data.causal import CausalLayout
from data.datamodule import encode_inputs, encode_targets
from lightning_modules import families
from lightning_modules.causal import CausalLMModule
from lightning_modules.families.qwen3 import PROMPT_SEPARATOR
from lightning_modules.models import count_parameters
from study.errors import StudyError
from study.run import build

CONF = ROOT / "conf" / "model"
# Qwen/Qwen3-0.6B's config.json (the architecture numbers; its model card: 0.6B parameters, 0.44B non-embedding)
QWEN3_0_6B = {
    "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
    "rope_theta": 1000000, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "attention_bias": False, "hidden_act": "silu",
}
TEXTS = ["the report said red paris", " ".join(["budget office"] * 40), "question : what is the city ? oslo", "gold silver"]


def spec(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v)
    return build(cfg)


def tiny(**overrides):
    s = spec("qwen3_tiny", **overrides)
    model, tok = s.load(seed=0)
    s.prepare_for_length(model, 64)
    return s, model, tok


def module(model, tok, **generation):
    gen = {"max_new_tokens": 12, "min_new_tokens": 12, "num_beams": 1, **generation}
    return CausalLMModule(model, tok, "summarization", family="qwen3", lr=1e-3, generation=gen)


def eval_batch(tok, seq_len=48):
    layout = CausalLayout(tok, seq_len, 12, PROMPT_SEPARATOR)
    return layout, layout.eval([{"input_ids": x, "id": str(i), "references": ["r"]} for i, x in enumerate(encode_inputs(tok, TEXTS, seq_len))])


# ---- the architecture ----------------------------------------------------------------------------------------
def test_qwen3_0_6b_is_the_published_architecture_and_size():
    s = spec("qwen3_0_6b", pretrained=False)
    assert {k: s.arch[k] for k in QWEN3_0_6B} == QWEN3_0_6B
    model, _ = s.load(seed=0, device="meta")  # the whole loading path, shapes only (no 2.4 GB of weights)
    n = count_parameters(model)  # tied embeddings counted once
    embedding = model.get_input_embeddings().weight.numel()
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert n == s.published_params == 596_049_920
    assert round(n / 1e9, 1) == 0.6 and round((n - embedding) / 1e9, 2) == 0.44  # the model card's figures
    assert type(model).__name__ == "Qwen3ForCausalLM" and families.for_model(model).name == "qwen3"
    assert model.config.num_key_value_heads == 8 and model.config.rope_parameters["rope_theta"] == 1000000


def test_tiny_builds_with_the_project_tokenizer_and_sdpa_attention():
    s, model, tok = tiny()
    assert model.config.vocab_size == len(tok) and model.config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id and model.generation_config.pad_token_id == tok.pad_token_id
    assert model.config._attn_implementation == "sdpa" and s.prepare_for_length(model, 64) == "causal"
    assert s.check_seq_len(16384) == 16384  # rotary positions: up to the model's max_position_embeddings
    with pytest.raises(StudyError, match="over model=qwen3_tiny's limit of 32768"):
        s.check_seq_len(40000)


def test_an_unavailable_attention_kernel_and_the_fast_path_are_refused_in_one_line():
    _, model, _ = tiny()
    for kernel in ("nonsense", "flash_attention_2" if importlib.util.find_spec("flash_attn") is None else "nonsense"):
        with pytest.raises(StudyError, match=f"model.arch.attn_implementation={kernel} is not available here") as e:
            spec("qwen3_tiny", **{"arch.attn_implementation": kernel}).prepare_for_length(model, 64)
        assert "\n" not in str(e.value) and "use sdpa or eager" in str(e.value)
    with pytest.raises(StudyError, match="has no fast path"):
        spec("qwen3_tiny", attn_impl="fast")


def test_hub_loading_offline_names_the_offline_override(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: skip the network retries
    with pytest.raises(StudyError, match="cannot load the tokenizer 'Qwen/Qwen3-0.6B'.*model.pretrained=false"):
        spec("qwen3_0_6b").load()
    with pytest.raises(StudyError, match="cannot load pretrained weights 'Qwen/Qwen3-0.6B'.*model.pretrained=false"):
        spec("qwen3_0_6b", tokenizer="project").load()


def test_pretrained_weights_load_from_a_local_directory(tmp_path):
    """The hub path's code (from_pretrained of the model and its tokenizer) on a saved checkpoint."""
    _, model, tok = tiny()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    s = spec("qwen3_tiny", pretrained=True, local_path=str(tmp_path))
    again, tok2 = s.load()
    assert len(tok2) == len(tok) and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


# ---- training on the answer ----------------------------------------------------------------------------------
def test_a_tiny_models_answer_loss_falls_over_a_few_steps():
    _, model, tok = tiny()
    layout = CausalLayout(tok, 48, 12, PROMPT_SEPARATOR)
    answers = ["red paris", "budget", "oslo", "gold silver"]
    batch = layout.train([{"input_ids": x, "labels": y} for x, y in zip(encode_inputs(tok, TEXTS, 48), encode_targets(tok, answers, 12))])
    m = module(model, tok)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = m(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_loss_is_the_mean_over_answer_tokens_only():
    _, model, tok = tiny()
    layout = CausalLayout(tok, 48, 12, PROMPT_SEPARATOR)
    rows = [{"input_ids": x, "labels": y} for x, y in zip(encode_inputs(tok, TEXTS[:2], 48), encode_targets(tok, ["red", "gold silver"], 12))]
    batch = layout.train(rows)
    out = module(model, tok)(batch)
    logits, ids = out.logits[:, :-1], batch["input_ids"][:, 1:]  # token t+1 predicted at t
    answer = torch.zeros_like(ids, dtype=torch.bool)
    answer[:, layout.seq_len + len(layout.separator) - 1:] = True  # the answer part ...
    answer &= ids != tok.pad_token_id  # ... without its padding: "red </s>" and "gold silver </s>"
    assert int(answer.sum()) == 2 + 3
    manual = torch.nn.functional.cross_entropy(logits[answer], ids[answer])
    assert torch.isclose(out.loss, manual, atol=1e-5)


# ---- validation by generation --------------------------------------------------------------------------------
def test_greedy_generation_with_a_kv_cache_equals_generation_without_one():
    _, model, tok = tiny(**{"arch.initializer_range": 0.5})  # large random weights: varied tokens, a real comparison
    model.eval()
    _, batch = eval_batch(tok)
    kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False, max_new_tokens=12, min_new_tokens=12)
    cached = model.generate(**kw)
    assert torch.equal(cached, model.generate(**kw, use_cache=False))
    assert torch.equal(cached, model.generate(**kw, cache_implementation="static"))
    new = cached[:, batch["input_ids"].shape[1]:]
    assert len(set(new.flatten().tolist())) > 5 and not torch.equal(new[0], new[1])
    # the module's predictions are those tokens as text, the prompt not included
    texts = module(model, tok).predict_texts(batch)
    assert texts == tok.batch_decode(new, skip_special_tokens=True)
    assert texts == module(model, tok, cache_implementation="static").predict_texts(batch)


def test_training_sees_the_answer_where_generation_puts_it():
    """Teacher forcing in the training layout gives the logits generation computed at every new token (same
    padding, same positions): what is learnt is what is generated."""
    _, model, tok = tiny(**{"arch.initializer_range": 0.5})
    model.eval()
    layout, batch = eval_batch(tok)
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False, max_new_tokens=8,
                         min_new_tokens=8, output_logits=True, return_dict_in_generate=True)
    new = out.sequences[:, batch["input_ids"].shape[1]:]
    rows = [{"input_ids": x, "labels": y} for x, y in zip(encode_inputs(tok, TEXTS, 48), new.tolist())]
    train = layout.train(rows)
    with torch.no_grad():
        logits = module(model, tok)(train).logits
    width = batch["input_ids"].shape[1]
    for t, step in enumerate(out.logits):
        assert torch.allclose(logits[:, width - 1 + t], step, atol=1e-4), t


def test_unknown_cache_implementation_is_refused():
    _, model, tok = tiny()
    with pytest.raises(StudyError, match="generation.cache_implementation=paged is not one of: None, dynamic, static"):
        module(model, tok, cache_implementation="paged")


def test_flops_count_every_matmul_parameter_twice_per_token_forward():
    """At a short length attention's share is small: forward FLOPs are ~2 x matmul parameters x tokens (LM head incl.)."""
    fam = families.get("qwen3")
    a = QWEN3_0_6B
    D, F, V, L = a["hidden_size"], a["intermediate_size"], a["vocab_size"], a["num_hidden_layers"]
    A, Akv = a["num_attention_heads"] * a["head_dim"], a["num_key_value_heads"] * a["head_dim"]
    matmul_params = L * (2 * D * A + 2 * D * Akv + 3 * D * F) + D * V
    S, T = 60, 4
    assert fam.train_flops(a, S, T) == pytest.approx(3 * 2 * matmul_params * (S + T), rel=0.01)
    assert fam.train_flops(a, 4096, 128) > fam.train_flops(a, 2048, 128) * 2  # attention grows quadratically
    # generation: the prompt once, then one token at a time; the LM head only where a token is chosen
    gen = fam.generate_flops(a, S, 10)
    assert gen == pytest.approx(2 * (matmul_params - D * V) * (S + 9) + 2 * D * V * 10, rel=0.01)


# ---- the commands ---------------------------------------------------------------------------------------------
def test_qwen3_tiny_through_train_infer_and_report(tmp_path, cache_dir):
    run = tmp_path / "run"
    smoke = ["experiment=smoke", "model=qwen3_tiny", "trainer.max_steps=2", "data.synthetic.n_validation=4"]
    run_cli("train.py", *smoke, f"hydra.run.dir={run}", out=tmp_path, cache=cache_dir)
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["model"] == "qwen3_tiny" and rec["family"] == "qwen3"
    assert rec["seq_len"] == 160 and rec["encoder_attention"] == "causal" and rec["global_step"] == 2
    assert rec["n_scored"] == 4 and 0 <= rec["rgm"] <= 100 and rec["parameters"] == 349_056
    assert json.loads((run / "model" / "config.json").read_text())["model_type"] == "qwen3"  # what infer.py rebuilds
    run_cli("infer.py", f"run_dir={run}", out=tmp_path, cache=cache_dir)
    inf = json.loads((run / "infer" / "metrics.json").read_text())
    assert inf["status"] == "ok" and inf["kind"] == "infer" and inf["family"] == "qwen3" and inf["n_scored"] == 4
    assert inf["costs"]["inference_samples_per_s"]["value"] > 0
    predictions = [json.loads(line) for line in (run / "infer" / "predictions.jsonl").read_text().splitlines()]
    assert len({p["id"] for p in predictions}) == 4 and all(isinstance(p["prediction"], str) for p in predictions)
    report = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(ROOT / "report.py"), str(run), f"out={report}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "qwen3_tiny @ 160" in proc.stdout
    results = (report / "results.csv").read_text().splitlines()
    assert len(results) == 2 and ",qwen3_tiny,qwen3," in results[1]


def test_batch_size_auto_probes_a_decoder_only_step_as_one_sequence(monkeypatch):
    from lightning_modules import batch_size as bs

    _, model, _ = tiny()
    # one full-length training step, prompt and answer in one sequence (an encoder-decoder probe's labels would not fit)
    # (the probe's memory reading is CUDA's; on the CPU it is stubbed: the step itself is what is under test)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 2**30)
    assert bs._step_peak_gib(model, 2, 32, 8, torch.device("cpu"), "32-true", False) is not None
    # and with the run's validation between two steps: the prompt generated on, as the module validates
    assert bs._step_peak_gib(model, 2, 32, 8, torch.device("cpu"), "32-true", False, bs.Validation(2, 4)) is not None
    assert model.training


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["model=qwen3_tiny", "impl=fast"], "family qwen3 (model=qwen3_tiny) has no fast path"),
        (["model=qwen3_0_6b", "model.pretrained=false", "seq_len=50000"], "seq_len=50000 is over model=qwen3_0_6b's limit of 40960"),
    ],
)
def test_the_commands_refuse_what_a_decoder_only_lm_cannot_do_in_one_line(overrides, fragment, tmp_path, cache_dir):
    proc = run_cli("train.py", "experiment=smoke", *overrides, f"hydra.run.dir={tmp_path / 'bad'}", out=tmp_path, cache=cache_dir, check=False)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and fragment in err[0], proc.stderr[-2000:]
