"""Fast path for LED and BigBird-Pegasus: same function as the HF models, fused sparse attention.

    from lightning_modules.fast import apply_fast_path, greedy_generate
    model = apply_fast_path(model, compile=False)   # in place; returns the model
    ids = greedy_generate(model, input_ids, attention_mask, global_attention_mask=None, max_new_tokens=128)

See docs/fast_path.md.
"""

from .generate import greedy_generate
from .model import apply_fast_path, release_train_graphs

__all__ = ["apply_fast_path", "greedy_generate", "release_train_graphs"]
