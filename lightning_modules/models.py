"""The models of the study: pretrained from the hub or a local directory, or the same architecture with random weights.

A `conf/model/*.yaml` file is a ModelSpec: the architecture numbers live there (`arch`, the keyword arguments of
the transformers config class), so `model.pretrained=false` builds exactly the published shape without the hub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_modules import families
from study.errors import StudyError

log = logging.getLogger(__name__)

ATTN_IMPLS = ("hf", "fast")
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune-no-cudagraphs")  # torch.compile modes
PROJECT_TOKENIZER = "project"


def _classes(family: str):
    """(config class, model class) of a family."""
    return families.get(family).classes()


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
    residual_dtype: str = "float32"  # fast path under bf16 autocast: the residual stream's dtype (fast/numerics.py)
    gradient_checkpointing: bool = False
    published_params: int | None = None
    max_input_positions: int | None = None
    scratch: dict[str, Any] | None = None  # how this architecture learns the embedded task from random weights (lr, dropout)

    def __post_init__(self):
        fam = families.get(self.family)  # validates the family
        if self.attn_impl not in ATTN_IMPLS:
            raise StudyError(f"model.attn_impl={self.attn_impl} is not one of: {', '.join(ATTN_IMPLS)}")
        if self.attn_impl not in fam.attn_impls:
            raise StudyError(f"model.attn_impl={self.attn_impl}: family {fam.name} (model={self.name}) has no fast path; "
                             f"use impl=stock (model.attn_impl may be: {', '.join(fam.attn_impls)})")
        if self.compile not in COMPILE_MODES:
            raise StudyError(f"model.compile={self.compile} is not one of: {', '.join(map(str, COMPILE_MODES))}")
        if self.cuda_graph not in (False, True):
            raise StudyError(f"model.cuda_graph={self.cuda_graph} is not one of: true, false")
        if self.cuda_graph and self.attn_impl != "fast":
            raise StudyError(f"model.cuda_graph=True needs model.attn_impl=fast (got {self.attn_impl})")
        if self.cuda_graph and self.compile == "reduce-overhead":
            raise StudyError("model.cuda_graph=True captures whole steps; model.compile=reduce-overhead adds CUDA "
                             "graphs inside them: use model.compile=true with it")
        from lightning_modules.fast.numerics import RESIDUAL_DTYPES

        if self.residual_dtype not in RESIDUAL_DTYPES:
            raise StudyError(f"model.residual_dtype={self.residual_dtype} is not one of: {', '.join(RESIDUAL_DTYPES)}")
        if self.residual_dtype != "float32" and self.attn_impl != "fast":
            raise StudyError(f"model.residual_dtype={self.residual_dtype} needs model.attn_impl=fast (the stock modules "
                             f"keep autocast's float32 stream; got {self.attn_impl})")
        self.arch = dict(self.arch)
        self.scratch = dict(self.scratch) if self.scratch else None

    # ---- what the rest of the pipeline asks of a model: the family's answers -------------------------------
    @property
    def fam(self) -> families.Family:
        """This model's family (lightning_modules/families/<family>.py)."""
        return families.get(self.family)

    @property
    def global_attention_on_first_token(self) -> bool:
        """Whether the family sets global attention on the first token (LED); see Family.global_inputs."""
        return self.fam.has_global_tokens()

    @property
    def needs_full_length_inputs(self) -> bool:
        """Whether every batch is padded to seq_len (BigBird: a short batch switches it to full attention for good)."""
        return self.fam.pad_to_seq_len

    @property
    def source_run(self):
        """The train run directory model.local_path names, if it names one: its best checkpoint is the starting point
        (a model this project trained, e.g. on short documents, fine-tuned again as the paper fine-tunes hub ones)."""
        if self.pretrained and self.local_path and (Path(self.local_path) / ARCHITECTURE_DIR / "config.json").exists():
            return Path(self.local_path)
        return None

    @property
    def weights(self) -> str:
        """Where the starting weights come from, for the record: random, the hub, a directory or a run's checkpoint."""
        if self.source_run is not None:
            return f"run: {self.source_run.resolve()} (best checkpoint)"
        if self.pretrained:
            return f"local: {self.local_path}" if self.local_path else f"hub: {self.hub_name}"
        return "random"

    @property
    def tokenizer_source(self) -> str:
        if self.tokenizer is None and self.source_run is not None:
            return str(self.source_run / ARCHITECTURE_DIR)
        return self.tokenizer or ((self.local_path or self.hub_name) if self.pretrained else PROJECT_TOKENIZER)

    def check_seq_len(self, seq_len) -> int:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len <= 0:
            raise StudyError(f"seq_len={seq_len} must be a positive whole number of tokens")
        family_limit = self.fam.max_seq_len
        if family_limit is not None and seq_len > family_limit:
            raise StudyError(f"seq_len={seq_len}: family {self.family} (model={self.name}) runs at most {family_limit} input tokens")
        limit = self.max_input_positions
        if limit is not None and seq_len > limit:
            raise StudyError(f"seq_len={seq_len} is over model={self.name}'s limit of {limit} input positions")
        return seq_len

    def train_flops(self, seq_len: int, target_len: int) -> int:
        """Analytic FLOPs of one training sample (the family's count)."""
        return self.fam.train_flops(self.arch, seq_len, target_len)

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
        # random weights read ids from the tokenizer in use; the family says which start decoding
        return config_cls(**self.fam.config_kwargs(arch, tokenizer))

    def load(self, seed: int | None = None, device: str | torch.device = "cpu"):
        """(model, tokenizer). Random weights are drawn under `seed` (on `device`, which is much faster for the
        large models on a GPU), so the same seed and device build the same model."""
        if self.pretrained and self.local_path and not Path(self.local_path).exists():
            raise StudyError(f"model.local_path={self.local_path} does not exist: give a save_pretrained() directory or a train run "
                             "directory (experiment=finetune_synthetic reads the run experiment=pretrain_synthetic writes: run that first)")
        tokenizer = self.load_tokenizer()
        if self.source_run is not None:
            status = _run_status(self.source_run)
            if status not in (None, "ok"):  # e.g. a pretraining cut off by a time limit, or one that diverged
                raise StudyError(f"model.local_path={self.local_path} holds a train run that is {status}, not finished: its best "
                                 "checkpoint is from a training that did not end; finish it (rerun its command) or name a finished run")
            model = _model_from_run(self, self.source_run, "best")
        elif self.pretrained:
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
        self.fam.configure_generation(model)
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.attn_impl == "fast":
            from lightning_modules.fast import apply_fast_path

            model = apply_fast_path(model, compile=self.compile, cuda_graph=self.cuda_graph,
                                    residual_dtype=self.residual_dtype)
        return model, tokenizer

    def prepare_for_length(self, model, seq_len: int) -> str:
        """Fix the encoder's attention for inputs of seq_len tokens; returns the attention type in use."""
        return self.fam.prepare_for_length(model, self.arch, seq_len)


# ---- a trained run's model, without the hub ------------------------------------------------------------------
ARCHITECTURE_DIR = "model"  # inside a run directory: config.json, generation_config.json and the tokenizer


def save_architecture(model, tokenizer, run_dir) -> None:
    """What infer.py needs besides the checkpoint's weights, so evaluation never needs the hub."""
    out = Path(run_dir) / ARCHITECTURE_DIR
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def checkpoint_path(run_dir, checkpoint: str):
    """The file `checkpoint=` names: best or last (the run's checkpoints/<name>.ckpt), or a path."""
    ckpt = Path(checkpoint)
    if not ckpt.is_absolute():
        ckpt = Path(run_dir) / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.exists():
        raise StudyError(f"checkpoint {ckpt} does not exist; choose checkpoint=best, last or a .ckpt path")
    return ckpt


def load_trained(spec: ModelSpec, run_dir, checkpoint: str):
    """(model, tokenizer) of a train run: its saved architecture with the weights of its checkpoint."""
    from transformers import AutoTokenizer

    arch_dir = Path(run_dir) / ARCHITECTURE_DIR
    if not arch_dir.exists():
        raise StudyError(f"run_dir={run_dir} has no {ARCHITECTURE_DIR}/ (is it a train run directory?)")
    model = _model_from_run(spec, run_dir, checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(arch_dir))
    if spec.attn_impl == "fast":
        from lightning_modules.fast import apply_fast_path

        model = apply_fast_path(model, compile=spec.compile, cuda_graph=spec.cuda_graph,
                                residual_dtype=spec.residual_dtype)
    return model, tokenizer


def _run_status(run_dir) -> str | None:
    """A train run's recorded status, None where it has no readable record (a directory made some other way)."""
    from study import record

    try:
        return record.read(run_dir).get("status")
    except (OSError, record.RecordError):
        return None


def _model_from_run(spec: ModelSpec, run_dir, checkpoint: str):
    """A train run's saved architecture with the weights of one of its checkpoints (the stock model)."""
    from transformers import GenerationConfig

    arch_dir = Path(run_dir) / ARCHITECTURE_DIR
    ckpt = checkpoint_path(run_dir, checkpoint)
    config_cls, model_cls = _classes(spec.family)
    model = model_cls(config_cls.from_pretrained(arch_dir))
    model.generation_config = GenerationConfig.from_pretrained(arch_dir)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=False)
    if unexpected or [k for k in missing if not k.endswith(spec.fam.optional_weights)]:
        raise StudyError(f"checkpoint {ckpt} does not fit model={spec.name}: {len(missing)} missing, {len(unexpected)} unexpected tensors")
    return model
