"""The models of the study: pretrained from the hub or a local directory, or the same architecture with random weights.

A `conf/model/*.yaml` file is a ModelSpec: the architecture numbers live there (`arch`, the keyword arguments of
the transformers config class), so `model.pretrained=false` builds exactly the published shape without the hub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from study.errors import StudyError

log = logging.getLogger(__name__)

FAMILIES = ("led", "bigbird_pegasus")
ATTN_IMPLS = ("hf", "fast")
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune-no-cudagraphs")  # torch.compile modes
PROJECT_TOKENIZER = "project"


def _classes(family: str):
    from transformers import (
        BigBirdPegasusConfig,
        BigBirdPegasusForConditionalGeneration,
        LEDConfig,
        LEDForConditionalGeneration,
    )

    if family == "led":
        return LEDConfig, LEDForConditionalGeneration
    if family == "bigbird_pegasus":
        return BigBirdPegasusConfig, BigBirdPegasusForConditionalGeneration
    raise StudyError(f"model.family={family} is not one of: {', '.join(FAMILIES)}")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class ModelSpec:
    name: str
    family: str
    arch: dict[str, Any]
    hub_name: str | None = None
    local_path: str | None = None
    pretrained: bool = False
    tokenizer: str | None = None
    attn_impl: str = "hf"
    compile: bool | str = False  # false, true, or a torch.compile mode for the fast path ("reduce-overhead": + CUDA graphs)
    cuda_graph: bool = False  # fast path: each training step's forward and backward replayed as CUDA graphs
    gradient_checkpointing: bool = False
    published_params: int | None = None
    max_input_positions: int | None = None

    def __post_init__(self):
        _classes(self.family)  # validates the family
        if self.attn_impl not in ATTN_IMPLS:
            raise StudyError(f"model.attn_impl={self.attn_impl} is not one of: {', '.join(ATTN_IMPLS)}")
        if self.compile not in COMPILE_MODES:
            raise StudyError(f"model.compile={self.compile} is not one of: {', '.join(map(str, COMPILE_MODES))}")
        if self.cuda_graph not in (False, True):
            raise StudyError(f"model.cuda_graph={self.cuda_graph} is not one of: true, false")
        if self.cuda_graph and self.attn_impl != "fast":
            raise StudyError(f"model.cuda_graph=True needs model.attn_impl=fast (got {self.attn_impl})")
        if self.cuda_graph and self.compile == "reduce-overhead":
            raise StudyError("model.cuda_graph=True captures whole steps; model.compile=reduce-overhead adds CUDA "
                             "graphs inside them: use model.compile=true with it")
        self.arch = dict(self.arch)

    # ---- what the rest of the pipeline asks of a model ------------------------------------------------------
    @property
    def global_attention_on_first_token(self) -> bool:
        """LED's standard setting for summarization and QA: the first token attends to, and is seen by, all."""
        return self.family == "led"

    @property
    def needs_full_length_inputs(self) -> bool:
        """BigBird switches itself to full attention for good on a short batch; inputs are always padded to seq_len."""
        return self.family == "bigbird_pegasus"

    @property
    def pegasus_newlines(self) -> bool:
        """Pegasus' tokenizer writes `<n>` for a newline; generated text turns it back into one (seq2seq.generate)."""
        return self.family == "bigbird_pegasus" and self.tokenizer_source != PROJECT_TOKENIZER

    @property
    def tokenizer_source(self) -> str:
        return self.tokenizer or ((self.local_path or self.hub_name) if self.pretrained else PROJECT_TOKENIZER)

    def check_seq_len(self, seq_len) -> int:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len <= 0:
            raise StudyError(f"seq_len={seq_len} must be a positive whole number of tokens")
        limit = self.max_input_positions
        if limit is not None and seq_len > limit:
            raise StudyError(f"seq_len={seq_len} is over model={self.name}'s limit of {limit} input positions")
        return seq_len

    def block_sparse_min_len(self) -> int | None:
        """BigBird uses block-sparse attention only above this many tokens (see transformers' BigBirdPegasusEncoder)."""
        if self.family != "bigbird_pegasus" or self.arch.get("attention_type", "block_sparse") != "block_sparse":
            return None
        return (5 + 2 * self.arch["num_random_blocks"]) * self.arch["block_size"] + 1

    # ---- loading --------------------------------------------------------------------------------------------
    def load_tokenizer(self):
        from data.tokenizer import load_project_tokenizer

        source = self.tokenizer_source
        if source == PROJECT_TOKENIZER:
            return load_project_tokenizer()
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(source)
        except Exception as e:  # noqa: BLE001 - hub misses come in many exception types
            raise StudyError(
                f"cannot load the tokenizer '{source}' ({type(e).__name__}); offline, use model.pretrained=false (the project tokenizer)"
            ) from None

    def build_config(self, tokenizer):
        config_cls, _ = _classes(self.family)
        arch = dict(self.arch)
        if arch.get("vocab_size") is None:
            arch["vocab_size"] = len(tokenizer)
        if len(tokenizer) > arch["vocab_size"]:
            raise StudyError(f"the tokenizer has {len(tokenizer)} tokens but model={self.name} has vocab_size {arch['vocab_size']}")
        # random weights read ids from the tokenizer in use; BART/LED start decoding with </s>, Pegasus with <pad>
        arch["pad_token_id"] = tokenizer.pad_token_id
        arch["eos_token_id"] = tokenizer.eos_token_id
        arch["bos_token_id"] = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
        arch["decoder_start_token_id"] = tokenizer.eos_token_id if self.family == "led" else tokenizer.pad_token_id
        if self.family == "led" and isinstance(arch.get("attention_window"), int):
            arch["attention_window"] = [arch["attention_window"]] * arch["encoder_layers"]
        return config_cls(**arch)

    def load(self, seed: int | None = None, device: str | torch.device = "cpu"):
        """(model, tokenizer). Random weights are drawn under `seed` (on `device`, which is much faster for the
        large models on a GPU), so the same seed and device build the same model."""
        tokenizer = self.load_tokenizer()
        if self.pretrained:
            _, model_cls = _classes(self.family)
            source = self.local_path or self.hub_name
            try:
                model = model_cls.from_pretrained(source)
            except Exception as e:  # noqa: BLE001
                raise StudyError(
                    f"cannot load pretrained weights '{source}' ({type(e).__name__}); offline, use model.pretrained=false data=synthetic"
                ) from None
        else:
            _, model_cls = _classes(self.family)
            if seed is not None:
                torch.manual_seed(seed)
            with torch.device(device):
                model = model_cls(self.build_config(tokenizer))
        # generation settings belong to generation_config in transformers 5 (on model.config they raise)
        model.generation_config.pad_token_id = model.config.pad_token_id
        model.generation_config.eos_token_id = model.config.eos_token_id
        model.generation_config.decoder_start_token_id = model.config.decoder_start_token_id
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.attn_impl == "fast":
            from lightning_modules.fast import apply_fast_path

            model = apply_fast_path(model, compile=self.compile, cuda_graph=self.cuda_graph)
        return model, tokenizer

    def prepare_for_length(self, model, seq_len: int) -> str:
        """Fix the encoder's attention for inputs of seq_len tokens; returns the attention type in use."""
        if self.family != "bigbird_pegasus":
            return "sliding_window+global" if self.family == "led" else "full"
        minimum = self.block_sparse_min_len()
        if minimum is not None and seq_len < minimum:
            log.warning("seq_len=%d is too short for BigBird block-sparse attention (needs >= %d): using full attention", seq_len, minimum)
            model.get_encoder().set_attention_type("original_full")
        return model.get_encoder().attention_type


# ---- a trained run's model, without the hub ------------------------------------------------------------------
ARCHITECTURE_DIR = "model"  # inside a run directory: config.json, generation_config.json and the tokenizer


def save_architecture(model, tokenizer, run_dir) -> None:
    """What infer.py needs besides the checkpoint's weights, so evaluation never needs the hub."""
    from pathlib import Path

    out = Path(run_dir) / ARCHITECTURE_DIR
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_trained(spec: ModelSpec, run_dir, checkpoint: str):
    """(model, tokenizer) of a train run: its saved architecture with the weights of its checkpoint."""
    from pathlib import Path

    from transformers import AutoTokenizer, GenerationConfig

    arch_dir = Path(run_dir) / ARCHITECTURE_DIR
    if not arch_dir.exists():
        raise StudyError(f"run_dir={run_dir} has no {ARCHITECTURE_DIR}/ (is it a train run directory?)")
    ckpt = Path(checkpoint)
    if not ckpt.is_absolute():
        ckpt = Path(run_dir) / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.exists():
        raise StudyError(f"checkpoint {ckpt} does not exist; choose checkpoint=best, last or a .ckpt path")
    config_cls, model_cls = _classes(spec.family)
    model = model_cls(config_cls.from_pretrained(arch_dir))
    model.generation_config = GenerationConfig.from_pretrained(arch_dir)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=False)
    if unexpected or [k for k in missing if not k.endswith("final_logits_bias")]:
        raise StudyError(f"checkpoint {ckpt} does not fit model={spec.name}: {len(missing)} missing, {len(unexpected)} unexpected tensors")
    tokenizer = AutoTokenizer.from_pretrained(str(arch_dir))
    if spec.attn_impl == "fast":
        from lightning_modules.fast import apply_fast_path

        model = apply_fast_path(model, compile=spec.compile, cuda_graph=spec.cuda_graph)
    return model, tokenizer
