"""The paper's fine-tuning recipe around any transformers seq2seq model.

AdamW (lr 2e-5, betas 0.9/0.98, eps 1e-6, weight decay 0.001 on all but biases and LayerNorms, as the HF Trainer
does), a linear schedule with 10% warm-up, and validation by *generating* text and scoring it with the SCROLLS
metric (the paper's own code scored teacher-forced argmax logits; we do not).
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from lightning_modules.metrics import TASK_METRIC
from study.errors import StudyError
from lightning_modules.scrolls_metric import ScrollsScore

log = logging.getLogger("study")


GLOBAL_ATTENTION = ("first_token", "question")  # module.global_attention


def question_len(batch: dict, global_attention: str):
    """The batch's question lengths when global attention goes to the question (module.global_attention), else None."""
    if global_attention != "question":
        return None
    if "question_len" not in batch:
        raise StudyError("module.global_attention=question needs QA batches (data.task=qa), which carry each question's "
                         "length; this batch has none")
    return batch["question_len"]


def generate(model, tokenizer, batch: dict, generation: dict, global_first_token: bool, fast: bool, family=None,
             global_attention: str = "first_token") -> list[str]:
    """Greedy (or beam) decoding of one batch, as text (as the family writes it: Family.postprocess)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if family is not None:  # the family's global attention (LED: the first token, or the question)
        inputs.update(family.global_inputs(batch["input_ids"], question_len(batch, global_attention)))
    elif global_first_token:
        inputs["global_attention_mask"] = first_token_global(batch["input_ids"])
    texts = tokenizer.batch_decode(generate_ids(model, inputs, generation, fast), skip_special_tokens=True)
    return [family.postprocess(t) for t in texts] if family is not None else texts


def generate_ids(model, inputs: dict, generation: dict, fast: bool) -> torch.Tensor:
    """The token ids of one batch: the fast path's greedy decoder where it applies, else the library's generate
    (beams, or the stock model). batch_size=auto's probe generates its validation batch through this too."""
    if fast and generation.get("num_beams", 1) == 1:
        from lightning_modules.fast import greedy_generate

        return greedy_generate(
            model, inputs["input_ids"], inputs["attention_mask"], inputs.get("global_attention_mask"),
            max_new_tokens=generation["max_new_tokens"], min_new_tokens=generation.get("min_new_tokens", 0),
        )
    return model.generate(**inputs, do_sample=False, **generation)


def first_token_global(input_ids: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(input_ids)
    mask[:, 0] = 1
    return mask


class Seq2SeqModule(pl.LightningModule):
    def __init__(
        self,
        model,
        tokenizer,
        task: str,
        global_attention_on_first_token: bool = False,
        attn_impl: str = "hf",
        lr: float = 2e-5,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        weight_decay: float = 0.001,
        warmup_ratio: float = 0.1,
        fused_optimizer: bool = False,
        generation: dict | None = None,
        family: str | None = None,
        global_attention: str = "first_token",
    ):
        super().__init__()
        from lightning_modules import families

        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.metric = TASK_METRIC[task]
        # the family (lightning_modules/families) sets global attention and writes the decoded text; without one,
        # global_attention_on_first_token says whether the first token is global (LED's setting)
        self.family = families.get(family) if family is not None else None
        self.scorer = ScrollsScore(task)  # torchmetrics syncs its state across ranks
        self.global_first = global_attention_on_first_token
        if global_attention not in GLOBAL_ATTENTION:
            raise StudyError(f"module.global_attention={global_attention} is not one of: {', '.join(GLOBAL_ATTENTION)}")
        self.global_attention = global_attention  # which tokens the family makes global (LED): first token or question
        self.fast = attn_impl == "fast"
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.warmup_ratio, self.fused_optimizer = warmup_ratio, fused_optimizer
        self.generation = dict(generation or {"max_new_tokens": 128, "num_beams": 1})
        self.samples_seen = 0  # this rank's training samples
        self.best: dict | None = None  # scores and step of the best validation so far
        self.last_scores: dict | None = None
        self.last_predictions: dict[str, str] = {}

    # ---- training -------------------------------------------------------------------------------------------
    def forward(self, batch: dict):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels") if k in batch}
        if self.family is not None:
            inputs.update(self.family.global_inputs(batch["input_ids"], question_len(batch, self.global_attention)))
        elif self.global_first:
            inputs["global_attention_mask"] = first_token_global(batch["input_ids"])
        return self.model(**inputs)

    def training_step(self, batch, batch_idx):
        loss = self(batch).loss
        self.samples_seen += batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if name.endswith("bias") or "norm" in name.lower() else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=self.eps, fused=self.fused_optimizer or None)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(self.warmup_ratio * total)

        def linear(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning refuses to clip for a fused optimizer under mixed precision, because fused AdamW would unscale
        # fp16 gradients itself. bf16 has no scaler, so clipping the gradients directly is the same operation.
        if self.fused_optimizer and gradient_clip_val and not str(self.trainer.precision).startswith("16"):
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(f"gradient_clip_algorithm={gradient_clip_algorithm} with a fused optimizer: only norm is supported")
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)

    # ---- resuming: the best validation so far travels with the training state ------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["study"] = {"best": self.best, "samples_seen": self.samples_seen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("study") or {}
        self.best, self.samples_seen = state.get("best"), int(state.get("samples_seen") or 0)

    # ---- validation by generation ---------------------------------------------------------------------------
    def predict_texts(self, batch) -> list[str]:
        return generate(self.model, self.tokenizer, batch, self.generation, self.global_first, self.fast, self.family,
                        self.global_attention)

    def validation_step(self, batch, batch_idx):
        self.scorer.update(batch["ids"], self.predict_texts(batch), batch["references"])

    def on_validation_epoch_start(self):
        self.scorer.reset()

    def on_validation_epoch_end(self):
        # every rank scores the union of all ranks' predictions (torchmetrics gathers them): one score per id
        scores = self.scorer.compute()
        predictions = self.scorer.predictions
        self.last_scores = {**scores, "step": int(self.global_step), "n_scored": len(predictions)}
        if not self.trainer.sanity_checking:
            if self.best is None or scores[self.metric] > self.best[self.metric]:
                self.best = dict(self.last_scores)
        for key, value in scores.items():
            self.log(f"val/{key}", value, prog_bar=key == self.metric, sync_dist=False)
        if self.trainer.is_global_zero and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            log.info("step %d: validation %s=%.2f over %d ids", self.global_step, self.metric, scores[self.metric], len(predictions))
        self.last_predictions = predictions
