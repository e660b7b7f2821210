"""loss.py (the captured step's head + cross-entropy without fp32 logits) and numerics.py (model.residual_dtype).

On CPU the fused loss runs eagerly (the same math inductor fuses on CUDA); the GPU checks in
benchmarks/bench_fast.py --check-step-graph run it inside the captured step.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.fast import apply_fast_path
from lightning_modules.fast.loss import linear_cross_entropy
from lightning_modules.fast.model import fast_outputs
from tests.lightning_modules.test_fast_path import bigbird_model, inputs, led_model, rel


def head_and_loss(h, w, b, labels):
    return F.cross_entropy((F.linear(h, w) + b).view(-1, w.shape[0]), labels.view(-1))


def grads(fn, *leaves):
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    loss = fn(*leaves)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_loss_matches_head_and_cross_entropy(autocast):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 7, 16, generator=g)
    w = torch.randn(50, 16, generator=g) * 0.3
    b = torch.randn(1, 50, generator=g)
    labels = torch.randint(0, 50, (3, 7), generator=g)
    labels[0, 4:] = -100  # ignored tokens (padding, and the captured step's power-of-two padding)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with ctx:
        ref_loss, (ref_h, ref_w) = grads(lambda h, w: head_and_loss(h, w, b, labels), h, w)
        loss, (gh, gw) = grads(lambda h, w: linear_cross_entropy(h, w, b, labels), h, w)
    # fp32: the same sums in another order; bf16: the same roundings (logits, then the gradient into the matmuls)
    tol = 2e-2 if autocast else 1e-5
    assert loss.dtype == torch.float32
    assert abs(float(loss - ref_loss)) <= tol * abs(float(ref_loss))
    assert gh.dtype == h.dtype and gw.dtype == w.dtype
    assert rel(gh, ref_h) <= tol and rel(gw, ref_w) <= tol


def test_fused_loss_scales_with_the_incoming_gradient_and_skips_unneeded_grads():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(10, 8, generator=g, requires_grad=True)
    w = torch.randn(20, 8, generator=g)  # a frozen head: no weight gradient is asked for
    labels = torch.randint(0, 20, (10,), generator=g)
    (3.0 * linear_cross_entropy(h, w, torch.zeros(20), labels)).backward()
    h2 = h.detach().clone().requires_grad_(True)
    (3.0 * head_and_loss(h2, w, torch.zeros(20), labels)).backward()
    assert rel(h.grad, h2.grad) <= 1e-5 and w.grad is None


def test_fused_loss_all_ignored_is_nan_like_cross_entropy():
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    labels = torch.full((4,), -100)
    assert torch.isnan(linear_cross_entropy(h, w, torch.zeros(10), labels))
    assert torch.isnan(head_and_loss(h, w, torch.zeros(10), labels))


@pytest.mark.parametrize("build,led", [(led_model, True), (bigbird_model, False)])
def test_loss_only_forward_is_the_stock_loss_and_gradient(build, led):
    """fast_outputs(need_logits=False), what the captured step replays, against the stock model's loss."""
    m = build()
    S = 256 if led else 512
    kw = inputs(S, led=led)
    fast = apply_fast_path(copy.deepcopy(m))
    out = []
    for model, fn in ((m, lambda: m(**kw).loss),
                      (fast, lambda: fast_outputs(fast, **kw, need_logits=False)[0])):
        model.train()
        torch.manual_seed(123)
        loss = fn()
        loss.backward()
        out.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    (l0, g0), (l1, g1) = out
    assert abs(float(l1 - l0)) <= 1e-4 * abs(float(l0)) and rel(g1, g0) <= 1e-4


@pytest.mark.parametrize("build,led", [(led_model, True), (bigbird_model, False)])
def test_bf16_residual_stream_is_bf16_and_close(build, led):
    m = build().eval()
    S = 256 if led else 512
    kw = inputs(S, led=led)
    ref = apply_fast_path(copy.deepcopy(m))
    bf = apply_fast_path(copy.deepcopy(m), residual_dtype="bfloat16")
    seen = []  # the dtype of the stream each encoder and decoder layer receives and returns

    def spy(fn):
        def layer(layer, x, *a, **k):
            out = fn(layer, x, *a, **k)
            seen.append((x.dtype, out.dtype))
            return out
        return layer

    bf._fast.enc_layer, bf._fast.dec_layer = spy(bf._fast.enc_layer), spy(bf._fast.dec_layer)
    with torch.no_grad():
        fp32_logits = ref(**kw).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_logits = ref(**kw).logits
            bf_logits = bf(**kw).logits
        assert seen == [(torch.bfloat16, torch.bfloat16)] * 4  # 2 encoder + 2 decoder layers
        seen.clear()
        plain = bf(**kw).logits  # no autocast: the option does nothing, fp32 throughout
    assert seen == [(torch.float32, torch.float32)] * 4
    assert torch.equal(plain, fp32_logits)
    # a rounding per layer: further from fp32 than autocast alone, but of bf16's size
    assert rel(bf_logits, fp32_logits) <= max(5e-2, 4 * rel(ref_logits, fp32_logits))


def test_residual_dtype_refuses_unknown():
    with pytest.raises(ValueError, match="residual_dtype='float16' is not one of: float32, bfloat16"):
        apply_fast_path(led_model(), residual_dtype="float16")
