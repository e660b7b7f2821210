"""The fine-tuning recipe's optimizer details: parameter groups, schedule, clipping with a fused optimizer."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from pathlib import Path

from omegaconf import OmegaConf

from lightning_modules.seq2seq import Seq2SeqModule
from study.run import build


def spec(name):
    return build(OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "model" / f"{name}.yaml"))


def _batches(tok, n=4):
    ids = torch.randint(5, len(tok), (n, 64))
    return [{"input_ids": ids[i], "attention_mask": torch.ones(64, dtype=torch.long), "labels": ids[i, :6].clone()} for i in range(n)]


def _fit(module, precision="bf16-mixed"):
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=2, gradient_clip_val=1.0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader(_batches(module.tokenizer), batch_size=2))
    return trainer


def _module(fused):
    model, tok = spec("led_tiny").load(seed=0)
    return Seq2SeqModule(model, tok, "summarization", global_attention_on_first_token=True, fused_optimizer=fused)


def test_fused_adamw_with_bf16_and_gradient_clipping_trains():
    module = _module(fused=True)
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer = _fit(module)
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, module.model.parameters()))


def test_lightning_alone_refuses_that_combination(monkeypatch):
    """What configure_gradient_clipping works around (seen on the H100 with the fast path)."""
    monkeypatch.setattr(Seq2SeqModule, "configure_gradient_clipping", pl.LightningModule.configure_gradient_clipping)
    with pytest.raises(RuntimeError, match="does not allow for gradient clipping"):
        _fit(_module(fused=True))


def test_weight_decay_spares_biases_and_layer_norms_and_the_schedule_warms_up_then_decays():
    module = _module(fused=False)
    trainer = pl.Trainer(accelerator="cpu", max_steps=100, logger=False, enable_progress_bar=False)
    module.trainer = trainer
    conf = module.configure_optimizers()
    decay, no_decay = conf["optimizer"].param_groups
    assert decay["weight_decay"] == 0.001 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    sched = conf["lr_scheduler"]["scheduler"]
    lrs = [sched.lr_lambdas[0](s) for s in (0, 9, 10, 55, 100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(1.0) and lrs[2] == pytest.approx(1.0)
    assert lrs[3] == pytest.approx(0.5) and lrs[4] == 0.0


class _Decoder:
    """Stands in for a model and a tokenizer around `generate`: what Pegasus' tokenizer decodes to."""

    def generate(self, **kwargs):
        return torch.zeros(1, 3, dtype=torch.long)

    def batch_decode(self, out, skip_special_tokens):
        return ["first line<n>second line"]


def test_pegasus_newline_token_becomes_a_newline_only_in_text_a_pegasus_tokenizer_decoded():
    from lightning_modules import families
    from lightning_modules.seq2seq import generate

    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    args = (_Decoder(), _Decoder(), batch, {"max_new_tokens": 3}, False, False)
    assert generate(*args, family=families.get("bigbird_pegasus")) == ["first line\nsecond line"]
    assert generate(*args, family=families.get("led")) == ["first line<n>second line"]


def test_the_project_tokenizer_cannot_write_the_pegasus_newline_token():
    # bigbird_tiny decodes with the project's word-level tokenizer: no `<n>` in its vocabulary, so the family's
    # rewrite only ever meets a `<n>` that Pegasus' own tokenizer wrote (a user's predictions file is never rewritten)
    from data.tokenizer import load_project_tokenizer

    assert "<n>" not in load_project_tokenizer().get_vocab()
