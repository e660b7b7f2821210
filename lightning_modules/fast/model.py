"""apply_fast_path: swap the forward of an HF LED / BigBird-Pegasus model for the fused path, in place.

Nothing in the module tree changes (same parameters, same state_dict keys), so checkpoints stay
interchangeable and the stock forward stays reachable: calls the fast path does not cover (past_key_values,
inputs_embeds, decoder_attention_mask, output_attentions, ... as used by HF generate) go to the stock forward.
"""

import types

import torch
import torch.nn.functional as F
from transformers.models.led.modeling_led import shift_tokens_right
from transformers.utils import logging

from .decoder import decoder_forward, decoder_layer
from .loss import linear_cross_entropy
from .numerics import RESIDUAL_DTYPES
from .step_graph import TrainGraphs

logger = logging.get_logger(__name__)


class FastState:
    def __init__(self, family, compile, cuda_graph=False, residual_dtype=None):
        self.family = family  # the model's Family (lightning_modules/families)
        self.path = family.fast_path()  # its FastPath: what differs between the families' fast paths
        self.compile = compile  # False, True, or a torch.compile mode ("reduce-overhead" adds CUDA graphs)
        self.cuda_graph = cuda_graph
        self.residual_dtype = residual_dtype  # numerics.py: None (autocast's fp32) or torch.bfloat16
        # loss.py: the captured step's loss without fp32 logits (same function; False: the stock head and loss)
        self.fused_loss = True
        enc_layer = self.path.encoder_layer
        # one compiled graph per layer kind, shared by every layer of that kind (parameters are graph inputs)
        if compile:
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            mode = None if compile is True or compile == "default" else compile
            enc_layer = torch.compile(enc_layer, dynamic=False, mode=mode)
            decoder_fn = torch.compile(decoder_layer, dynamic=False, mode=mode)
        else:
            decoder_fn = decoder_layer
        self.enc_layer, self.dec_layer = enc_layer, decoder_fn
        self.enc_cache = {}  # static per-layer tables of the encoder (BigBird: block maps by layer, length, mode, device)
        self.gen_graph = None  # generate.py: the last captured decode graph and its buffers
        self.gen_step_compiled = None  # generate.py: the decode step under torch.compile (compile_step=True)
        self.gen_graphed = None  # generate.py: whether the last call replayed a captured decode step
        self.train_graphs = TrainGraphs() if cuda_graph else None  # step_graph.py: training forward + backward
        self.warned_cpu_graph = False


def release_train_graphs(model) -> None:
    """Forget a model's captured training steps (model.cuda_graph): their memory pool stays reserved while they
    live, into whatever runs next on the card (a run after batch_size=auto's probe, a benchmark's next cell)."""
    graphs = getattr(getattr(model, "_fast", None), "train_graphs", None)
    if graphs is not None:
        graphs.reset()


def _family(model):
    from lightning_modules import families

    try:
        family = families.for_model(model)
    except ValueError:
        family = None
    if family is None or family.fast_path() is None:
        have = [n for n in families.names() if families.get(n).fast_path() is not None]
        raise ValueError(f"apply_fast_path: {type(model).__name__} has no fast path (families with one: {', '.join(have)})")
    return family


def apply_fast_path(model, compile=False, cuda_graph=False, residual_dtype=None):
    """residual_dtype: None / "float32" (autocast's, the same function as stock) or "bfloat16" (numerics.py)."""
    family = _family(model)
    if isinstance(residual_dtype, str):  # a config name -> the dtype (None: autocast's own)
        if residual_dtype not in RESIDUAL_DTYPES:
            raise ValueError(f"residual_dtype={residual_dtype!r} is not one of: {', '.join(RESIDUAL_DTYPES)}")
        residual_dtype = RESIDUAL_DTYPES[residual_dtype]
    elif residual_dtype not in RESIDUAL_DTYPES.values():
        raise ValueError(f"residual_dtype={residual_dtype!r} is not one of: {', '.join(RESIDUAL_DTYPES)}")
    if cuda_graph and compile not in (False, True, "default", "max-autotune-no-cudagraphs"):
        raise ValueError(f"cuda_graph=True captures whole training steps; compile={compile!r} adds CUDA graphs of "
                         "its own inside them: use compile=true or false with it")
    cfg = model.config
    for name in ("attention_dropout", "attention_probs_dropout_prob"):
        if getattr(cfg, name, 0.0):
            raise ValueError(f"{type(model).__name__}: {name}={getattr(cfg, name)}; the fast path implements "
                             "attention-probability dropout 0 only (all the study's configs)")
    for name in ("encoder_layerdrop", "decoder_layerdrop"):
        if getattr(cfg, name, 0.0):
            raise ValueError(f"{type(model).__name__}: {name}={getattr(cfg, name)}; the fast path has no LayerDrop")
    if model.is_gradient_checkpointing:
        raise ValueError(f"{type(model).__name__}: gradient checkpointing is not implemented by the fast path")
    model._fast = FastState(family, compile, cuda_graph, residual_dtype)
    model.forward = types.MethodType(fast_forward, model)
    return model


def _inert(name, value, labels):
    if value is None:
        return True
    if name in ("output_attentions", "output_hidden_states"):
        return value is False
    if name == "return_dict":
        return value is True
    if name == "use_cache":  # HF ignores the cache when labels are given; a caller wanting one gets stock
        return labels is not None or value is False
    return False


def fast_forward(self, input_ids=None, attention_mask=None, global_attention_mask=None, decoder_input_ids=None,
                 labels=None, **kwargs):
    fast = self._fast
    if global_attention_mask is not None and not fast.path.takes_global_mask:
        raise ValueError(f"global_attention_mask is not an input of {type(self).__name__}")
    if input_ids is None or not all(_inert(k, v, labels) for k, v in kwargs.items()):
        if fast.path.takes_global_mask:
            kwargs["global_attention_mask"] = global_attention_mask
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                  decoder_input_ids=decoder_input_ids, labels=labels, **kwargs)
    out_cls = fast.path.output_cls()
    if (fast.train_graphs is not None and labels is not None and decoder_input_ids is None and self.training
            and torch.is_grad_enabled()):
        if input_ids.is_cuda:
            # a training step as two CUDA graph replays; the graph keeps no logits (a step needs the loss only)
            return out_cls(loss=fast.train_graphs.loss(self, input_ids, attention_mask, global_attention_mask, labels))
        if not fast.warned_cpu_graph:
            fast.warned_cpu_graph = True
            logger.warning(f"cuda_graph=True has no effect on {input_ids.device.type} inputs: training steps run eagerly")
    loss, logits, enc = fast_outputs(self, input_ids, attention_mask, global_attention_mask, decoder_input_ids, labels)
    return out_cls(loss=loss, logits=logits, encoder_last_hidden_state=enc)


def fast_outputs(self, input_ids, attention_mask=None, global_attention_mask=None, decoder_input_ids=None,
                 labels=None, n_glob=None, all_valid=None, need_logits=True):
    """(loss or None, logits, encoder output). n_glob (LED) / all_valid (BigBird): the host decisions, when the
    caller has taken them (step_graph.py, the path's static_plan); None: taken here, with one host sync.
    need_logits=False (the captured step: the loss only): logits None, the loss by loss.py when fused_loss."""
    fast, cfg = self._fast, self.config
    if decoder_input_ids is None:  # as HF: shift the labels, or else the inputs
        src = labels if labels is not None else input_ids
        decoder_input_ids = shift_tokens_right(src, cfg.pad_token_id, cfg.decoder_start_token_id)
    plan = {k: v for k, v in (("n_glob", n_glob), ("all_valid", all_valid)) if v is not None}
    path = fast.path
    enc, valid = path.encode(self, fast, input_ids, attention_mask, global_attention_mask, fast.enc_layer, **plan)
    h = decoder_forward(path.base(self).decoder, decoder_input_ids, enc, valid, path.pre_ln, fast.dec_layer,
                        fast.residual_dtype)
    if labels is not None and not need_logits and fast.fused_loss:
        return linear_cross_entropy(h, self.lm_head.weight, self.final_logits_bias, labels), None, enc
    logits = self.lm_head(h) + self.final_logits_bias
    loss = None
    if labels is not None:
        loss = F.cross_entropy(logits.view(-1, cfg.vocab_size), labels.view(-1))
    return loss, logits, enc
