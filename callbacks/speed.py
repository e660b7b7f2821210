"""Training and inference speed, and peak memory, counted over all ranks.

Training samples/s = training samples / time spent in training phases (validation excluded: the clock stops at
each validation's start and restarts at the next training step, with the GPU synchronised at both; the
checkpoint saving in between is recorded apart, as checkpoint_time_s, and counted in train_time_s).
Compile and warm-up count as training; the first `warmup_steps` optimizer steps are also timed on their own
(warmup_time_s) so that steady_train_samples_per_s, over the steps after them, shows what a long run sees.
Tokens/s counts input tokens as the model processes them, padded to seq_len. Inference samples/s = distinct ids
generated / inference time.
"""

from __future__ import annotations

import time

import torch

from callbacks.phases import CHECKPOINT, INFERENCE, TRAIN, VALIDATION, PhaseCallback
from study.ddp import gather_objects
from study.record import measurement

CLOCK = "measured: wall clock, gpu synchronised at phase boundaries"


class SpeedCallback(PhaseCallback):
    def __init__(self, warmup_steps: int = 5):
        super().__init__()
        self.warmup_steps = warmup_steps
        self.results: dict = {}

    def setup(self, trainer, pl_module, stage):
        self.seconds = {TRAIN: 0.0, VALIDATION: 0.0, CHECKPOINT: 0.0, INFERENCE: 0.0}
        self.samples = self.tokens = 0
        self.validation_ends: dict[int, float] = {}  # global step -> seconds since fit start
        self.results = {}
        self._t0 = None
        self._peak_reset = False
        self.warm = None  # (training seconds, samples) when the warm-up steps ended
        self.steady = None  # (samples, seconds) of the training steps after the warm-up, all ranks

    def phase_start(self, trainer, name):
        if self.on_gpu and not self._peak_reset:
            torch.cuda.reset_peak_memory_stats(self.device)
            self._peak_reset = True
        self._t0 = time.perf_counter()

    def phase_end(self, trainer, name):
        now = time.perf_counter()
        self.seconds[name] += now - self._t0
        if name == VALIDATION and self._fit_started is not None:
            self.validation_ends[trainer.global_step] = now - self._fit_started

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += int(batch["input_ids"].shape[0])
        self.tokens += int(batch["input_ids"].numel())
        # the first batch end at which global_step reaches warmup_steps is the end of that optimizer step
        if self.warm is None and trainer.global_step >= self.warmup_steps and self._phase == TRAIN:
            self._sync(pl_module)
            self.warm = (self.seconds[TRAIN] + time.perf_counter() - self._t0, self.samples)

    def finish(self, trainer, pl_module, fitting):
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.on_gpu else None
        # reserved: what a memory cap (batch_size_memory_gib) and an out-of-memory error bind on, cached blocks and a
        # captured step's pool included (H200: 36.4 GiB allocated against 42.8 reserved by its probe, led_base at 1024)
        reserved = torch.cuda.max_memory_reserved(self.device) / 2**30 if self.on_gpu else None
        parts = gather_objects((self.samples, self.tokens, peak, self.warm, reserved), trainer)
        samples, tokens = sum(p[0] for p in parts), sum(p[1] for p in parts)
        peaks, reserves = [p[2] for p in parts], [p[4] for p in parts]
        warm = [p[3] for p in parts]
        if self.on_gpu:
            out = {
                "peak_memory_allocated_gib": measurement(max(peaks) if None not in peaks else None, "GiB",
                                                         "measured: torch.cuda.max_memory_allocated, max over devices"),
                "peak_memory_reserved_gib": measurement(max(reserves) if None not in reserves else None, "GiB",
                                                        "measured: torch.cuda.max_memory_reserved, max over devices"),
            }
        else:
            out = {name: measurement(None, "GiB", "not applicable: no GPU in use")
                   for name in ("peak_memory_allocated_gib", "peak_memory_reserved_gib")}
        if fitting:
            train_s, val_s, ckpt_s = self.seconds[TRAIN], self.seconds[VALIDATION], self.seconds[CHECKPOINT]
            best = (getattr(pl_module, "best", None) or {}).get("step")
            out.update(
                train_time_s=measurement(train_s + val_s + ckpt_s, "s", CLOCK),
                train_time_excl_validation_s=measurement(train_s, "s", CLOCK + ", optimizer steps only"),
                validation_time_s=measurement(val_s, "s", CLOCK),
                checkpoint_time_s=measurement(ckpt_s, "s", CLOCK + ", from each validation's end to the next step"),
                train_samples_per_s=measurement(samples / train_s if train_s else None, "samples/s", CLOCK + ", all ranks"),
                train_tokens_per_s=measurement(tokens / train_s if train_s else None, "tokens/s", CLOCK + ", all ranks, padded inputs"),
                time_to_best_s=measurement(self.validation_ends.get(best), "s", CLOCK + ", until the best validation ended"),
            )
            # warm-up: rank 0's clock (ranks step together); samples after it from every rank
            done = None not in warm and train_s > warm[0][0]
            after = f"{CLOCK}, all ranks, after the first {self.warmup_steps} optimizer steps"
            self.steady = ((samples - sum(w[1] for w in warm)), train_s - warm[0][0]) if done else None  # (samples, s)
            out["warmup_samples"] = measurement(
                sum(w[1] for w in warm) if None not in warm else None, "samples",
                f"counted: training samples of the first {self.warmup_steps} optimizer steps, all ranks" if None not in warm
                else f"unknown: the run had fewer than {self.warmup_steps} optimizer steps")
            out.update(
                warmup_time_s=measurement(warm[0][0] if None not in warm else None, "s",
                                          f"{CLOCK}, the first {self.warmup_steps} optimizer steps (compile and warm-up included)"),
                steady_train_samples_per_s=measurement(
                    (samples - sum(w[1] for w in warm)) / (train_s - warm[0][0]) if done else None, "samples/s",
                    after if done else f"unknown: the run had no more than {self.warmup_steps} optimizer steps"),
            )
            self.train_samples, self.train_tokens = samples, tokens
            self.warmup_samples = sum(w[1] for w in warm) if None not in warm else None
        else:
            n = (getattr(pl_module, "last_scores", None) or {}).get("n_scored")
            seconds = self.seconds[INFERENCE]
            out.update(
                inference_time_s=measurement(seconds, "s", CLOCK + ", generation and scoring"),
                inference_samples_per_s=measurement(n / seconds if n and seconds else None, "samples/s", CLOCK + ", distinct ids"),
            )
        self.results = out
