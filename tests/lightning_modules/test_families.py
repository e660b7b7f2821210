"""Model families as one seam: the registry, the family interface, and LongT5 (transient-global) as a third family."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lightning_modules import families
from lightning_modules.models import count_parameters
from study.errors import StudyError
from study.run import build

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "model"

# Exact counts of transformers' LongT5ForConditionalGeneration built from google/long-t5-tglobal-{base,large}'s
# published config.json (d_model 768/1024, d_ff 2048/2816, 12/16 heads of 64, 12/24 layers, gated-gelu, vocab 32128,
# untied LM head), checked against the nominal sizes of Guo et al. 2022 (T5.1.1 sizes: base 220M, large 770M).
LONGT5 = {"longt5_base": (222_913_152, 220e6), "longt5_large": (750_276_096, 770e6)}


def spec(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v)
    return build(cfg)


def test_registry_has_one_spelling_per_family_and_every_model_config_names_one():
    assert families.names()[:3] == ["led", "bigbird_pegasus", "longt5"]
    used = {OmegaConf.load(p).family for p in CONF.glob("*.yaml")}
    assert used <= set(families.names())
    with pytest.raises(StudyError, match="model.family=bigbird is not one of: led, bigbird_pegasus, longt5"):
        families.get("bigbird")


def test_no_code_outside_the_family_modules_branches_on_a_family_name():
    import re

    pattern = re.compile(r"""(==|!=|\bin\b)\s*\(?\s*["'](led|bigbird|bigbird_pegasus|longt5)["']""")
    offenders = []
    for path in [*ROOT.glob("*.py"), *ROOT.glob("lightning_modules/**/*.py"), *ROOT.glob("report/*.py"),
                 *ROOT.glob("data/*.py"), *ROOT.glob("study/*.py")]:
        if "families" in path.parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, offenders


def test_for_model_finds_the_family_of_a_built_model():
    model, _ = spec("longt5_tiny").load(seed=0)
    assert families.for_model(model).name == "longt5"
    with pytest.raises(ValueError, match="no registered family"):
        families.for_model(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", sorted(LONGT5))
def test_longt5_architectures_match_published_parameter_counts(name):
    s = spec(name, pretrained=False)
    config_cls, model_cls = s.fam.classes()
    with torch.device("meta"):
        model = model_cls(s.build_config(s.load_tokenizer()))
    exact, nominal = LONGT5[name]
    n = count_parameters(model)
    assert n == exact == s.published_params
    assert abs(n - nominal) / nominal < 0.03
    assert model.config.encoder_attention_type == "transient-global"
    assert (model.config.local_radius, model.config.global_block_size) == (127, 16)


def test_longt5_hub_loading_is_like_leds():
    led, t5 = OmegaConf.load(CONF / "led_base.yaml"), OmegaConf.load(CONF / "longt5_base.yaml")
    assert t5.hub_name == "google/long-t5-tglobal-base" and t5.pretrained is True
    assert {"hub_name", "local_path", "pretrained", "tokenizer"} <= set(t5) and set(t5) <= set(led)


def test_longt5_tiny_builds_trains_and_generates_on_cpu_with_the_project_tokenizer():
    s = spec("longt5_tiny")
    model, tok = s.load(seed=0)
    assert model.config.vocab_size == len(tok)
    assert (model.config.pad_token_id, model.config.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    assert model.config.decoder_start_token_id == tok.pad_token_id  # T5 starts decoding with <pad>
    assert s.prepare_for_length(model, 300) == "transient_global"
    ids = torch.randint(5, len(tok), (2, 300))  # not a multiple of the block or the global block
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids[:, :5].contiguous())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    assert gen.shape[0] == 2 and gen.shape[1] <= 5


def test_longt5_has_no_fast_path_and_refuses_it_in_one_line():
    assert spec("longt5_tiny").fam.fast_path() is None
    with pytest.raises(StudyError, match="model.attn_impl=fast: family longt5 \\(model=longt5_tiny\\) has no fast path; use impl=stock"):
        spec("longt5_tiny", attn_impl="fast")


def test_lengths_past_the_papers():
    assert spec("led_base").check_seq_len(16384) == 16384
    assert spec("longt5_base").check_seq_len(16384) == 16384
    with pytest.raises(StudyError, match="over model=longt5_base's limit of 16384"):
        spec("longt5_base").check_seq_len(32768)
    with pytest.raises(StudyError, match="family bigbird_pegasus \\(model=bigbird_large\\) runs at most 4096 input tokens"):
        spec("bigbird_large").check_seq_len(8192)


def test_longt5_flops_count_the_local_window_and_the_global_tokens():
    from lightning_modules.families.longt5 import local_pairs

    assert local_pairs(5, 1) == 13  # 3 per token, minus the two missing at each end
    assert local_pairs(10, 127) == 100  # a window wider than the input: every pair
    fam, arch = families.get("longt5"), dict(spec("longt5_base").arch)
    # the encoder grows linearly in S once S is well past the window (global tokens add S * S/16 pairs)
    e4, e16 = fam.encoder_flops(arch, 4096), fam.encoder_flops(arch, 16384)
    assert 4 < e16 / e4 < 4 * 1.6
    local = dict(arch, encoder_attention_type="local")
    assert fam.encoder_flops(local, 4096) < e4
    t = fam.train_flops(arch, 4096, 512)
    assert t > 3 * e4 and fam.generate_flops(arch, 4096, 128) > e4
    # 6 x parameters x tokens is the usual rule of thumb for the matmuls: within a factor of two here
    rough = 6 * LONGT5["longt5_base"][0] * (4096 + 512) / 2
    assert 0.5 < t / rough < 4


def test_family_postprocess_writes_pegasus_newlines():
    assert families.get("bigbird_pegasus").postprocess("a<n>b") == "a\nb"
    assert families.get("led").postprocess("a<n>b") == "a<n>b"


def test_a_causal_family_selects_its_own_module():
    fam = families.Family()
    fam.kind = "causal"
    assert fam.lightning_module == families.KIND_MODULES["causal"]
    assert families.get("longt5").lightning_module == "lightning_modules.seq2seq.Seq2SeqModule"
