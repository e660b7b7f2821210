"""Model families: everything that differs between LED, BigBird-Pegasus, LongT5, ... lives in one module here.

A family module (`lightning_modules/families/<name>.py`) defines one subclass of `Family`, decorated with
`@register`. Nothing else in the code base branches on a family's name: it asks the family. The registry finds
every module of this package by itself, so adding a family is that module plus its `conf/model/*.yaml` files
(README, "Adding a model family"; `longt5.py` is the worked example).

What a family provides (class attributes and methods of `Family`; the defaults below suit an encoder-decoder):

identity
  name                 the one spelling: `model.family` in the YAML, the `family` column of records and reports
  kind                 "seq2seq" (encoder-decoder, labels = target tokens) or "causal" (decoder-only LM:
                       prompt + answer in one sequence). Selects `lightning_module` and the batch layout.
  lightning_module     `_target_` of the LightningModule that trains it (default: the one for `kind`, KIND_MODULES).
                       train.py builds it from the `module` config with model=, tokenizer=, task=, family=<name>
                       (and the recipe keys: lr, betas, eps, weight_decay, warmup_ratio, fused_optimizer, attn_impl,
                       generation); infer.py calls cls(model, tokenizer, task, attn_impl=, family=, generation=)
  order, marker        place in reports (paper's families first) and the matplotlib marker of its points

building (transformers)
  classes()            (config class, model class), imported lazily. Hub loading is `model_class.from_pretrained`.
  config_kwargs(arch, tokenizer)
                       the config class's keyword arguments for random weights with this tokenizer: `arch` with
                       vocab size, special-token ids and any per-family reshaping filled in (base: pad/eos/bos,
                       decoder start = pad; LED starts with </s>)
  configure_generation(model)
                       copy the token ids generation needs onto `model.generation_config`
  optional_weights     state-dict suffixes a checkpoint may lack (tied or constant buffers)

inputs at a length
  max_seq_len          the family's hard limit on input tokens, whatever the positions (BigBird: 4096), or None
  pad_to_seq_len       whether every batch must be padded to seq_len (BigBird: a short batch switches it to full
                       attention for good)
  data_kwargs()        extra keyword arguments for the data module (a causal family names its batch layout here)
  global_inputs(input_ids, question_len=None)
                       extra model inputs that set global attention (LED: {"global_attention_mask": first token},
                       or each row's first question_len tokens, the question, with module.global_attention=question)
  has_global_tokens()  whether global_inputs sets any
  prepare_for_length(model, arch, seq_len) -> str
                       fix the attention for inputs of seq_len tokens; returns the attention type in use (a record
                       field, `encoder_attention`)

cost
  train_flops(arch, S, T), generate_flops(arch, S, new_tokens)
                       analytic FLOPs per sample (multiply-add = 2), the same for every implementation; see
                       lightning_modules/fast/flops.py for the counting rules

implementation
  fast_path()          the family's `lightning_modules.fast` path (a `FastPath`), or None: then `impl=fast*`
                       (model.attn_impl=fast) is refused in one line
  attn_impls           the values `model.attn_impl` may take (default: "hf", plus "fast" when a fast path exists)

text
  postprocess(text)    decoded text as scored (Pegasus's tokenizer writes newlines as "<n>")
"""

from __future__ import annotations

import importlib
import pkgutil

from study.errors import StudyError

KIND_MODULES = {
    "seq2seq": "lightning_modules.seq2seq.Seq2SeqModule",
    "causal": "lightning_modules.causal.CausalLMModule",  # the decoder-only module (issue 17, item 3)
}

_REGISTRY: dict[str, "Family"] = {}
_loaded = False


class Family:
    name: str = ""
    kind: str = "seq2seq"
    order: int = 100
    marker: str = "o"
    max_seq_len: int | None = None
    pad_to_seq_len: bool = False
    optional_weights: tuple[str, ...] = ("final_logits_bias",)  # BART-style constant buffer

    @property
    def lightning_module(self) -> str:
        return KIND_MODULES[self.kind]

    # ---- building -----------------------------------------------------------------------------------------
    def classes(self):
        raise NotImplementedError

    def decoder_start_token_id(self, tokenizer) -> int:
        return tokenizer.pad_token_id  # Pegasus and T5 start decoding with <pad>

    def config_kwargs(self, arch: dict, tokenizer) -> dict:
        arch = dict(arch)
        arch["pad_token_id"] = tokenizer.pad_token_id
        arch["eos_token_id"] = tokenizer.eos_token_id
        arch["bos_token_id"] = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
        if self.kind == "seq2seq":
            arch["decoder_start_token_id"] = self.decoder_start_token_id(tokenizer)
        return arch

    def configure_generation(self, model) -> None:
        # generation settings belong to generation_config in transformers 5 (on model.config they raise)
        gc, c = model.generation_config, model.config
        gc.pad_token_id = c.pad_token_id
        gc.eos_token_id = c.eos_token_id
        if self.kind == "seq2seq":
            gc.decoder_start_token_id = c.decoder_start_token_id

    # ---- inputs at a length -------------------------------------------------------------------------------
    def data_kwargs(self) -> dict:
        return {}

    def global_inputs(self, input_ids, question_len=None) -> dict:
        return {}

    def has_global_tokens(self) -> bool:
        """Whether global_inputs sets any (LED): what module.global_attention and the batch-size probe ask."""
        import torch

        return bool(self.global_inputs(torch.zeros(1, 1, dtype=torch.long)))

    def prepare_for_length(self, model, arch: dict, seq_len: int) -> str:
        return "full"

    # ---- cost ---------------------------------------------------------------------------------------------
    def train_flops(self, arch: dict, S: int, T: int) -> int:
        raise NotImplementedError

    def generate_flops(self, arch: dict, S: int, new_tokens: int) -> int:
        raise NotImplementedError

    # ---- implementation -----------------------------------------------------------------------------------
    def fast_path(self):
        return None

    @property
    def attn_impls(self) -> tuple[str, ...]:
        return ("hf", "fast") if self.fast_path() is not None else ("hf",)

    # ---- text ---------------------------------------------------------------------------------------------
    def postprocess(self, text: str) -> str:
        return text

    def __repr__(self):
        return f"<family {self.name}>"


def register(cls):
    """Class decorator of a family module: one instance per family, under its name."""
    if not cls.name or cls.kind not in KIND_MODULES:
        raise ValueError(f"{cls.__name__}: a family needs a name and a kind in {tuple(KIND_MODULES)}")
    _REGISTRY[cls.name] = cls()
    return cls


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


def names() -> list[str]:
    """Every family's name, in report order."""
    _load_all()
    return [f.name for f in sorted(_REGISTRY.values(), key=lambda f: (f.order, f.name))]


def get(name: str) -> Family:
    _load_all()
    if name not in _REGISTRY:
        raise StudyError(f"model.family={name} is not one of: {', '.join(names())}")
    return _REGISTRY[name]


def for_model(model) -> Family:
    """The family whose model class `model` is an instance of."""
    _load_all()
    for fam in _REGISTRY.values():
        if isinstance(model, fam.classes()[1]):
            return fam
    raise ValueError(f"{type(model).__name__} belongs to no registered family ({', '.join(names())})")


def markers() -> dict[str, str]:
    """{family: matplotlib marker}, in report order."""
    return {n: get(n).marker for n in names()}


def first_token_global(input_ids):
    """LED's standard setting for summarization and QA: the first token attends to, and is seen by, all."""
    import torch

    mask = torch.zeros_like(input_ids)
    mask[:, 0] = 1
    return mask


def question_global(input_ids, question_len):
    """Longformer's QA setting: every token of the question (each row's first question_len, at least the first)."""
    import torch

    n = question_len.to(input_ids.device).clamp(min=1)[:, None]
    return (torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < n).to(input_ids.dtype)
