"""The LM head and its cross-entropy in one autograd step, without fp32 logits (the captured training step's loss).

Why: the stock head writes bf16 logits, adds the fp32 `final_logits_bias` (an fp32 copy of all logits), takes an
fp32 log-softmax (another) and, in the backward, an fp32 gradient cast back to bf16: by count ~60 GB of memory
traffic and ~12 GB held for LED-base at batch 119 x 256 target tokens (50k vocabulary); measured on the H200, this
module took 13 ms off a step at batch 94 and 8 GB off its allocated peak (BENCHMARKS.md section 7). The loss is a scalar mean, so its
gradient with respect to the logits is known in the forward: softmax - one-hot, over the non-ignored tokens.
The forward writes the bf16 logits once, turns them into that gradient in one fused pass (the softmax in fp32
inside the kernel), and takes the two matmuls of the head's backward at once; the backward only scales them.

Same function as `F.cross_entropy(F.linear(h, W) + bias, labels)` under the same autocast: the logits are rounded
to the matmul's dtype first as there, the bias is added and the softmax taken in fp32 as there, and the logits'
gradient enters the head's matmuls in the compute dtype as autocast's backward does. Mean over labels != -100.
"""

import torch

IGNORE_INDEX = -100


def _grad_and_loss(logits, bias, labels, n_valid):
    """bf16/fp32 logits [N, V] -> (sum of token losses, d(mean loss)/d logits in the logits' dtype)."""
    z = logits.float() + bias.float()
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    valid = labels != IGNORE_INDEX
    safe = torch.where(valid, labels, 0)
    picked = z.gather(1, safe[:, None])
    loss_sum = torch.where(valid[:, None], lse - picked, 0.0).sum()
    cols = torch.arange(z.shape[1], device=z.device)
    grad = (torch.exp(z - lse) - (cols[None, :] == safe[:, None]).float()) * (valid[:, None].float() / n_valid)
    return loss_sum, grad.to(logits.dtype)


_compiled = None


def _kernel(device):
    # on CUDA one fused reduction + one element-wise pass (inductor); eager elsewhere (same math)
    global _compiled
    if device.type != "cuda":
        return _grad_and_loss
    if _compiled is None:
        _compiled = torch.compile(_grad_and_loss, dynamic=False)
    return _compiled


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, labels, dtype):
        hc, wc = h.to(dtype), weight.to(dtype)
        logits = hc @ wc.t()
        n_valid = (labels != IGNORE_INDEX).sum()
        loss_sum, g = _kernel(h.device)(logits, bias, labels, n_valid)
        del logits
        # the head's backward, taken now (the loss is a scalar): only the incoming scale is left for backward()
        ctx.needs = ctx.needs_input_grad[:2]
        empty = h.new_empty(0)
        grad_h = (g @ wc).to(h.dtype) if ctx.needs[0] else empty
        grad_w = (g.t() @ hc).to(weight.dtype) if ctx.needs[1] else empty
        ctx.save_for_backward(grad_h, grad_w)
        return loss_sum / n_valid

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        grad_h = (grad_h * grad_out).to(grad_h.dtype) if ctx.needs[0] else None
        grad_w = (grad_w * grad_out).to(grad_w.dtype) if ctx.needs[1] else None
        return grad_h, grad_w, None, None, None


def linear_cross_entropy(h, weight, bias, labels):
    """mean cross-entropy of F.linear(h, weight) + bias against labels (-100 ignored); h [..., D], labels [...].
    Under autocast the head's matmuls run in autocast's dtype (as F.linear would), else in h's."""
    dev = h.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    with torch.autocast(dev, enabled=False):
        return _LinearCrossEntropy.apply(h.reshape(-1, h.shape[-1]), weight, bias.reshape(-1), labels.reshape(-1), dtype)
