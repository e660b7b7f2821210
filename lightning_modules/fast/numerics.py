"""The residual stream's dtype (`model.residual_dtype`): autocast's fp32, or bf16 to halve its memory traffic.

Under bf16 autocast every LayerNorm returns fp32, so the stream that runs between layers (the residual adds, the
LayerNorms, the dropout masks' inputs, the activations saved for the backward) is fp32 while every matmul reads
bf16: on the H200 the LayerNorm kernels and the other element-wise passes over it were 170 of LED-base's 727 ms
per step at its largest batch (benchmarks/NOTES_fast_path.md, v5). `bfloat16` stores the stream in bf16 after
each LayerNorm (post-LN: LED's encoder and the BART-style decoder) or from the embeddings on (pre-LN: BigBird);
the LayerNorms still compute in fp32. This changes the function (a rounding per layer, as pure-bf16 training
does): it is opt-in and its accuracy is measured, not assumed (docs/fast_path.md). Without autocast it does
nothing (fp32 inference and the CPU tests stay fp32).
"""

import torch

RESIDUAL_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # model.residual_dtype -> the stream's dtype


def residual_dtype(res_dtype, x):
    """The dtype the stream is stored in for this forward: res_dtype under autocast on x's device, else None."""
    return res_dtype if res_dtype is not None and torch.is_autocast_enabled(x.device.type) else None


def as_residual(x, res_dtype):
    return x if res_dtype is None else x.to(res_dtype)
