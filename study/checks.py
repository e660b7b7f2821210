"""The composed config's values, checked before anything is built (train.py's train(), infer.py's infer()).

Lightning, transformers and torch would otherwise refuse them deep inside, as a traceback or a ZeroDivisionError,
or not at all (`module.lr=0` trains, learning nothing). Each bad value is one StudyError naming the key the user
would set, its value, and what is allowed. One table, key -> rule; a key a config does not have is skipped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import get_args

from omegaconf import DictConfig, ListConfig, OmegaConf

from study.errors import StudyError


def _precisions() -> tuple:
    # Lightning's own list (a private type, but the one its connector checks against)
    from lightning_fabric.plugins.precision import precision as p

    return get_args(p._PRECISION_INPUT_STR) + get_args(p._PRECISION_INPUT_INT) + get_args(p._PRECISION_INPUT_STR_ALIAS)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def whole_at_least(low: int):
    return lambda v: _whole(v) and v >= low


def devices(v) -> bool:
    if isinstance(v, (list, tuple, ListConfig)):
        return len(v) > 0 and all(_whole(i) and i >= 0 for i in v)
    if isinstance(v, str):
        return v == "auto" or re.fullmatch(r"\d+(,\d+)*,?", v.strip()) is not None or v.strip() == "-1"
    return _whole(v) and (v >= 1 or v == -1)


def precision(v) -> bool:
    return not isinstance(v, (bool, float)) and v in _precisions()


def checkpoint_file(v) -> bool:
    # Lightning's keywords pass through (`last` is the run's own last checkpoint); anything else is a file
    return v is None or v in ("last", "hpc", "registry") or Path(str(v)).expanduser().is_file()


POSITIVE = (whole_at_least(1), "a positive whole number")
RULES = {  # key: (rule, what is allowed); checked in this order, so a source key comes before what copies it
    "trainer.precision": (precision, "one of: " + ", ".join(dict.fromkeys(str(p) for p in _precisions()))),
    "trainer.max_steps": (whole_at_least(-1), "a whole number >= -1 (-1: no limit)"),
    "trainer.max_epochs": (lambda v: v is None or whole_at_least(-1)(v), "a whole number >= -1 (-1: no limit) or null"),
    "trainer.devices": (devices, "a positive whole number, -1 (all), auto or a list of device indices"),
    "trainer.num_nodes": POSITIVE,
    "trainer.accumulate_grad_batches": POSITIVE,
    "trainer.gradient_clip_val": (lambda v: v is None or (_number(v) and v >= 0), "a number >= 0, or null for no clipping"),
    "module.lr": (lambda v: _number(v) and v > 0, "a positive number"),
    "data.val_every_steps": POSITIVE,
    "data.max_target_len": POSITIVE,
    "module.generation.max_new_tokens": POSITIVE,
    "module.generation.min_new_tokens": (whole_at_least(0), "a whole number >= 0"),
    "module.generation.num_beams": POSITIVE,
    "generation.max_new_tokens": POSITIVE,  # infer.py's own generation settings
    "generation.min_new_tokens": (whole_at_least(0), "a whole number >= 0"),
    "generation.num_beams": POSITIVE,
    "eval_batch_size": POSITIVE,
    "ckpt_path": (checkpoint_file, "null, last, or the path of an existing checkpoint file"),
}
_MISSING = object()


def origin(cfg: DictConfig, key: str) -> str:
    """The key a value comes from: `trainer.devices: ${strategy.devices}` is set as strategy.devices."""
    for _ in range(10):  # interpolation chains are short; never loop forever on a cycle
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or leaf not in node:
            return key
        raw = node._get_node(leaf)._value()
        m = re.fullmatch(r"\$\{([A-Za-z_][\w.]*)\}", raw) if isinstance(raw, str) else None
        if m is None:
            return key
        key = m.group(1)
    return key


def _shown(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, ListConfig):
        return str(OmegaConf.to_container(v))
    return str(v)


def _check_scratch_recipe(cfg: DictConfig) -> None:
    """experiment=pretrain_synthetic reads the model's from-scratch recipe (model.scratch): a model without one is named."""
    for key in ("module.lr", "model.arch.dropout"):
        parent, leaf = key.rsplit(".", 1)
        node = OmegaConf.select(cfg, parent)
        if not isinstance(node, DictConfig) or leaf not in node:
            continue
        raw = OmegaConf.to_container(node, resolve=False).get(leaf)
        if isinstance(raw, str) and "model.scratch" in raw and not OmegaConf.select(cfg, "model.scratch"):
            raise StudyError(f"{key}={raw}: model={OmegaConf.select(cfg, 'model.name')} has no from-scratch recipe (model.scratch.lr, "
                             f"model.scratch.dropout); set {key}= yourself or give the model a scratch: block")


def _check_residual_dtype(cfg: DictConfig) -> None:
    """model.residual_dtype=bfloat16 stores the stream in bf16 under bf16 autocast only: elsewhere it would do nothing."""
    res, prec = OmegaConf.select(cfg, "model.residual_dtype"), OmegaConf.select(cfg, "trainer.precision")
    if res not in (None, "float32") and prec is not None and not str(prec).startswith("bf16"):
        raise StudyError(f"model.residual_dtype={res} needs trainer.precision=bf16-mixed (got {prec}): the fast path "
                         "stores its residual stream in bf16 only under bf16 autocast")


def _check_global_attention(cfg: DictConfig) -> None:
    """module.global_attention=question needs a QA task (the batches carry the question's length) and a family with
    global attention (LED); elsewhere it would do nothing."""
    from lightning_modules.seq2seq import GLOBAL_ATTENTION  # its one owner

    value = OmegaConf.select(cfg, "module.global_attention")
    if value is None or value == "first_token":
        return
    if value not in GLOBAL_ATTENTION:
        raise StudyError(f"module.global_attention={value} is not one of: {', '.join(GLOBAL_ATTENTION)}")
    task, family = OmegaConf.select(cfg, "data.task"), OmegaConf.select(cfg, "model.family")
    if task is not None and task != "qa":
        raise StudyError(f"module.global_attention=question needs a QA task (data.task=qa), got data.task={task}: "
                         "a summarization input has no question")
    if family is not None:
        from lightning_modules import families

        if not families.get(family).has_global_tokens():
            raise StudyError(f"module.global_attention=question: model family {family} has no global attention "
                             "(only LED has global tokens)")


def _check_auto_batch_device(cfg: DictConfig) -> None:
    """batch_size=auto sizes a GPU's batch: under a strategy that trains on the CPU it would probe the GPU and then
    train elsewhere (seen on the H200: probed, held to 48 GiB, then trained on the CPU)."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if str(OmegaConf.select(cfg, "batch_size")) == "auto" and accelerator == "cpu":
        raise StudyError(f"batch_size=auto sizes a GPU's batch, and strategy={OmegaConf.select(cfg, 'strategy.name')} trains on the "
                         "CPU (trainer.accelerator=cpu): give batch_size=<n>, or a GPU strategy (strategy=single_gpu)")


def check(cfg: DictConfig) -> None:
    """Raise a StudyError for the first value in RULES that breaks its rule."""
    _check_scratch_recipe(cfg)
    _check_auto_batch_device(cfg)
    _check_residual_dtype(cfg)
    _check_global_attention(cfg)
    for key, (rule, allowed) in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default=_MISSING)
        except Exception:  # noqa: BLE001 - an interpolation that cannot resolve is Hydra's to report
            continue
        if value is _MISSING:
            continue
        if not rule(value):
            raise StudyError(f"{origin(cfg, key)}={_shown(value)} must be {allowed}")
