"""The fast path computes the stock HF function: logits, loss, gradients, greedy tokens (CPU, tiny models).

flex_attention has no CPU backward, so on CPU the fast path runs its patterns densely; the flex execution of
the same patterns is checked here in forward (eager flex on CPU) and against stock, fwd+bwd, on the GPU by
benchmarks/bench_fast.py --check.
"""

import copy

import numpy as np
import pytest
import torch
import transformers
from torch.nn.attention.flex_attention import BlockMask, create_mask

from lightning_modules.fast import apply_fast_path, greedy_generate
from lightning_modules.fast import attention as A
from lightning_modules.fast.bigbird import bigbird_pattern, block_multiplicity, hf_rand_attn, layer_blocks
from lightning_modules.fast.flops import bigbird_pairs, led_pairs
from lightning_modules.fast.led import led_pattern

TOL = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    # tiny matmuls: OpenMP hand-offs between 2 busy cores cost more than the work
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def led_model(**kw):
    a = dict(vocab_size=300, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, attention_window=32,
             max_encoder_position_embeddings=1024, max_decoder_position_embeddings=64, dropout=0.1,
             attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2,
             decoder_start_token_id=2)
    a.update(kw)
    torch.manual_seed(0)
    return transformers.LEDForConditionalGeneration(transformers.LEDConfig(**a))


def bigbird_model(**kw):
    a = dict(vocab_size=300, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=1024,
             attention_type="block_sparse", block_size=16, num_random_blocks=2, use_bias=False,
             scale_embedding=True, activation_function="gelu_new", dropout=0.1, attention_dropout=0.0,
             activation_dropout=0.0, pad_token_id=0, bos_token_id=2, eos_token_id=1, decoder_start_token_id=0)
    a.update(kw)
    torch.manual_seed(0)
    return transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(**a))


def inputs(S, led, B=3, T=12, vocab=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, S), generator=g)
    am = torch.ones(B, S, dtype=torch.long)
    am[1, S - 70:] = 0
    am[B - 1, S // 2:] = 0
    labels = torch.randint(3, vocab, (B, T), generator=g)
    labels[0, -4:] = -100
    kw = dict(input_ids=ids, attention_mask=am, labels=labels)
    if led:  # several global tokens, different counts per row, one of them on a padded position
        gm = torch.zeros(B, S, dtype=torch.long)
        gm[:, 0] = 1
        gm[0, [5, 100]] = 1
        gm[1, 40] = 1
        gm[B - 1, S - 3] = 1
        kw["global_attention_mask"] = gm
    return kw


def rel(a, b):
    return float((a - b).norm() / b.norm())


def run_both(model, kw, train):
    fast = apply_fast_path(copy.deepcopy(model))
    res = []
    for m in (model, fast):
        m.train(train)
        torch.manual_seed(123)  # identical dropout masks: same draws in the same order and shapes
        out = m(**kw)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        res.append((out.loss.detach(), out.logits.detach(), grads))
    return res


def assert_same(res):
    (l0, z0, g0), (l1, z1, g1) = res
    assert set(g0) == set(g1)
    assert abs(float(l1 - l0)) <= TOL * abs(float(l0))
    assert rel(z1, z0) <= TOL
    flat0 = torch.cat([g.flatten() for g in g0.values()])
    flat1 = torch.cat([g1[n].flatten() for n in g0])
    assert rel(flat1, flat0) <= TOL
    big = max(float(g.norm()) for g in g0.values())
    # key biases get zero gradient in exact arithmetic (softmax is shift-invariant): compare the rest one by one
    for n, g in g0.items():
        if float(g.norm()) > 1e-4 * big:
            assert rel(g1[n], g) <= TOL, n


@pytest.mark.parametrize("train", [True, False])
def test_led_logits_and_grads_match_stock(train):
    assert_same(run_both(led_model(), inputs(256, led=True), train))


def test_led_per_layer_windows_and_unaligned_length():
    # per-layer windows; 200 tokens: HF pads to the window (and not to our 128 tile), eval mode so dropout plays no part
    assert_same(run_both(led_model(attention_window=[32, 64]), inputs(200, led=True), False))


@pytest.mark.parametrize("train", [True, False])
def test_bigbird_logits_and_grads_match_stock(train):
    # eval: HF lists block 0 as every random block (duplicate keys); train: seeded random blocks
    assert_same(run_both(bigbird_model(), inputs(256, led=False), train))


@pytest.mark.parametrize("train", [True, False])
def test_bigbird_paper_plan_lengths(train):
    # 1024 / 3072 / 4096 use HF's "old plan" (random blocks within the first 1024 tokens; one may be the last block)
    m = bigbird_model(block_size=64, num_random_blocks=3, max_position_embeddings=4096, d_model=16,
                      encoder_attention_heads=2, decoder_attention_heads=2)
    assert_same(run_both(m, inputs(1024, led=False, B=2), train))


def test_bigbird_unpadded_batches_reuse_masks():
    m = bigbird_model()
    fast = apply_fast_path(copy.deepcopy(m))
    for train in (True, False):
        m.train(train), fast.train(train)
        for seed in (1, 2):  # the second batch of the same shape reuses the cached masks
            kw = inputs(256, led=False, seed=seed)
            kw["attention_mask"][:] = 1
            with torch.no_grad():
                torch.manual_seed(0)
                ref = m(**kw).logits
                torch.manual_seed(0)
                assert rel(fast(**kw).logits, ref) <= TOL
    assert sum(len(k) == 5 for k in fast._fast.enc_cache) == 2 * len(m.model.encoder.layers)


def test_bigbird_short_input_switches_to_full_attention_like_hf():
    m = bigbird_model()
    res = run_both(m, inputs(128, led=False), False)  # 128 <= (5 + 2*2) * 16
    assert_same(res)
    assert m.model.encoder.attention_type == "original_full"


def test_bigbird_random_blocks_are_hfs_and_leave_numpy_state():
    m = bigbird_model().train()
    sa = m.model.encoder.layers[1].self_attn.self
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    rand = hf_rand_attn(sa, 256)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(sa.seed)  # what HF's forward does before drawing
    plan = sa._get_rand_attn_plan(256, 16, 2)
    ref = np.stack(sa._bigbird_block_rand_mask_with_head(256, 256, 16, 16, 4, plan[0], plan[1]))
    assert np.array_equal(rand, ref)
    assert rand.shape == (4, 256 // 16 - 2, 2) and rand.any()
    m.eval()
    assert not hf_rand_attn(sa, 256).any()  # eval: every random block is block 0
    M = block_multiplicity(hf_rand_attn(sa, 256), 16)
    assert M[0, 5, 0] == 1 + 2 and M[0, 0].min() == 1 and M[0, 5].sum() == 5 + 2


@pytest.mark.parametrize("family,S,infer_tile", [("led", 256, 64), ("led", 160, 64), ("bigbird", 256, 64),
                                                ("bigbird", 272, 64), ("bigbird", 272, None)])
def test_flex_execution_matches_stock_forward(family, S, infer_tile, monkeypatch):
    # 160 and 272: sequence not a whole number of flex tiles; no grad: BigBird's forward-only 64-token block masks
    # (attention.INFER_TILE), or, with None, the 128-token ones training uses
    monkeypatch.setattr(A, "INFER_TILE", infer_tile)
    m = led_model() if family == "led" else bigbird_model()
    kw = inputs(S, led=family == "led")
    fast = apply_fast_path(copy.deepcopy(m))
    for train in (False, True):
        m.train(train), fast.train(train)
        with torch.no_grad():
            torch.manual_seed(3)
            ref = m(**kw).logits
            A.BACKEND = "flex"  # eager flex_attention on CPU (forward only)
            try:
                torch.manual_seed(3)
                out = fast(**kw).logits
            finally:
                A.BACKEND = "auto"
        assert rel(out, ref) <= TOL


def block_mask_agrees(pattern, tile=None):
    """Every tile listed as full is all-allowed, every allowed pair of a valid query lies in a listed tile."""
    B = pattern.q_valid.shape[0]
    allowed = create_mask(pattern.mask_mod, B, pattern.n_heads, pattern.q_len, pattern.kv_len, device="cpu")
    t = tile or A.TILE
    nq, nk = -(-pattern.q_len // t), -(-pattern.kv_len // t)
    allowed = torch.nn.functional.pad(allowed, (0, nk * t - pattern.kv_len, 0, nq * t - pattern.q_len))
    bm = pattern.block_mask(tile)
    listed = bm.to_dense().bool()  # partial + full tiles
    full = torch.zeros_like(listed)
    for b in range(B):
        for h in range(listed.shape[1]):
            for q in range(nq):
                n = int(bm.full_kv_num_blocks[b, h, q])
                full[b, h, q, bm.full_kv_indices[b, h, q, :n].long()] = True
    # the q-side ordering (backward) must describe the same tiles
    q_listed = torch.zeros_like(listed)
    for b in range(B):
        for h in range(listed.shape[1]):
            for k in range(nk):
                for idx, num in ((bm.q_indices, bm.q_num_blocks), (bm.full_q_indices, bm.full_q_num_blocks)):
                    q_listed[b, h, idx[b, h, k, : int(num[b, h, k])].long(), k] = True
    assert torch.equal(q_listed, listed)
    tiles = allowed.reshape(B, -1, nq, t, nk, t)
    q_valid = torch.nn.functional.pad(pattern.q_valid, (0, nq * t - pattern.q_len)).reshape(B, 1, nq, t).any(-1)
    assert bool((tiles.all(-1).all(-2) | ~full).all()), "a full tile holds a masked pair"
    needed = tiles.any(-1).any(-2) & q_valid[..., None]
    assert bool((listed | ~needed).all()), "an allowed pair of a valid query lies in an unlisted tile"


def block_mask_is_what_flex_builds(pattern, tile=None):
    """Our BlockMask holds exactly the tensors BlockMask.from_kv_blocks builds from the same kv lists, all of them
    contiguous: the GPU kernels read them by row-major offsets (the CPU path would not notice other strides)."""
    bm = pattern.block_mask(tile)
    ref = BlockMask.from_kv_blocks(bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices,
                                   BLOCK_SIZE=bm.BLOCK_SIZE, mask_mod=pattern.mask_mod, seq_lengths=bm.seq_lengths)
    names = ["kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks", "q_indices",
             "full_q_num_blocks", "full_q_indices"]
    for n in names:
        ours, theirs = getattr(bm, n), getattr(ref, n)
        assert ours.is_contiguous() and ours.dtype == torch.int32, n
        if n.endswith("indices"):  # only the first num_blocks entries of a row are read
            num = getattr(bm, n.replace("indices", "num_blocks"))
            used = torch.arange(ours.shape[-1]) < num[..., None]
            assert torch.equal(ours[used], theirs[used]), n
        else:
            assert torch.equal(ours, theirs), n


def test_led_block_mask_is_consistent_with_mask():
    L = 512
    valid = torch.ones(2, L, dtype=torch.bool)
    valid[1, 300:] = False
    glob = torch.zeros(2, L, dtype=torch.bool)
    glob[:, 0] = True
    glob[0, 130:260] = True  # a whole global tile
    kind = valid.to(torch.int8) + (glob & valid).to(torch.int8)
    for w in (16, 64, 128):
        block_mask_agrees(led_pattern(kind, w))
        block_mask_is_what_flex_builds(led_pattern(kind, w))


@pytest.mark.parametrize("train", [True, False])
def test_bigbird_block_mask_is_consistent_with_mask(train):
    m = bigbird_model(max_position_embeddings=1024).train(train)
    sa = m.model.encoder.layers[0].self_attn.self
    valid = torch.ones(2, 512, dtype=torch.bool)
    valid[1, 200:] = False
    blocks = layer_blocks(sa, 512, "cpu")
    assert (blocks["copy_idx"] is None) == train  # eval: block 0 listed 1 + r times -> r extra copies
    for tile in (None, A.INFER_TILE):  # training's 128-token tiles, the forward-only 64-token ones
        block_mask_agrees(bigbird_pattern(blocks, valid, 16), tile)
        block_mask_is_what_flex_builds(bigbird_pattern(blocks, valid, 16), tile)
    assert bigbird_pattern(blocks, valid, 16).block_mask(A.INFER_TILE).BLOCK_SIZE == (64, 64)
    with pytest.raises(ValueError, match="no 32-token tile maps"):
        bigbird_pattern(blocks, valid, 16).block_mask(32)


@pytest.mark.parametrize("family", ["led", "bigbird"])
def test_greedy_generate_matches_hf_generate(family):
    m = (led_model() if family == "led" else bigbird_model()).eval()
    kw = inputs(256, led=family == "led")
    kw.pop("labels")
    fast = apply_fast_path(copy.deepcopy(m))
    gkw = dict(global_attention_mask=kw.get("global_attention_mask"))
    refs = {}
    for min_new in (0, 3, 20):
        with torch.no_grad():
            refs[min_new] = m.generate(**kw, max_new_tokens=20, min_new_tokens=min_new, num_beams=1, do_sample=False)
        out = greedy_generate(fast, kw["input_ids"], kw["attention_mask"], max_new_tokens=20,
                              min_new_tokens=min_new, **gkw)
        assert torch.equal(out, refs[min_new]), (min_new, out, refs[min_new])
    # fixed length: the same tokens, then pad to exactly max_new_tokens
    fixed = greedy_generate(fast, kw["input_ids"], kw["attention_mask"], max_new_tokens=20, fixed_length=True, **gkw)
    n = refs[0].shape[1]
    assert fixed.shape == (3, 21) and torch.equal(fixed[:, :n], refs[0])
    assert bool((fixed[:, n:] == m.generation_config.pad_token_id).all())


@pytest.mark.parametrize("attn", ["sdpa", "flash", "flex", "bmm"])
@pytest.mark.parametrize("family", ["led", "bigbird"])
def test_every_decode_attention_matches_hf_generate(family, attn):
    # padded rows (inputs() pads two of three) and an unpadded batch, where "flash" drops the mask
    m = (led_model() if family == "led" else bigbird_model()).eval()
    fast = apply_fast_path(copy.deepcopy(m))
    for padded in (True, False):
        kw = inputs(256, led=family == "led", seed=2)
        kw.pop("labels")
        if not padded:
            kw["attention_mask"] = torch.ones_like(kw["attention_mask"])
        gkw = dict(global_attention_mask=kw.get("global_attention_mask"))
        with torch.no_grad():
            ref = m.generate(**kw, max_new_tokens=12, min_new_tokens=12, num_beams=1, do_sample=False)
        out = greedy_generate(fast, kw["input_ids"], kw["attention_mask"], max_new_tokens=12, min_new_tokens=12,
                              decode_attn=attn, **gkw)
        assert torch.equal(out, ref), (attn, padded)


def test_decode_attention_refuses_unknown_names():
    fast = apply_fast_path(led_model().eval())
    kw = inputs(256, led=True)
    with pytest.raises(ValueError, match="decode_attn='nope'; allowed: auto, sdpa, flash, flex, bmm"):
        greedy_generate(fast, kw["input_ids"], kw["attention_mask"], max_new_tokens=2, decode_attn="nope")


def test_greedy_generate_early_stop_pads_like_hf():
    # a model that ends some sequences early: bias EOS so that it wins for some rows only
    m = led_model().eval()
    with torch.no_grad():
        m.final_logits_bias[0, 2] = 2.0
    kw = inputs(256, led=True, seed=4)
    kw.pop("labels")
    fast = apply_fast_path(copy.deepcopy(m))
    with torch.no_grad():
        ref = m.generate(**kw, max_new_tokens=15, min_new_tokens=2, num_beams=1, do_sample=False)
    out = greedy_generate(fast, kw["input_ids"], kw["attention_mask"], kw["global_attention_mask"],
                          max_new_tokens=15, min_new_tokens=2)
    assert torch.equal(out, ref)


def test_greedy_generate_honours_forced_and_min_length():
    m = bigbird_model().eval()
    m.generation_config.forced_bos_token_id = 7
    m.generation_config.forced_eos_token_id = 1
    m.generation_config.min_length = 4
    kw = inputs(256, led=False)
    kw.pop("labels")
    fast = apply_fast_path(copy.deepcopy(m))
    with torch.no_grad():
        ref = m.generate(**kw, max_new_tokens=8, num_beams=1, do_sample=False)
    assert torch.equal(greedy_generate(fast, kw["input_ids"], kw["attention_mask"], max_new_tokens=8), ref)
    fast.generation_config.no_repeat_ngram_size = 3
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        greedy_generate(fast, kw["input_ids"], kw["attention_mask"], max_new_tokens=8)


def test_bf16_autocast_close_to_fp32():
    m = led_model().eval()
    kw = inputs(256, led=True)
    fast = apply_fast_path(copy.deepcopy(m))
    with torch.no_grad():
        ref = m(**kw).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fast(**kw).logits
            stock = m(**kw).logits
    # bf16 has 8 mantissa bits: the fast path's error is that of stock under the same autocast
    assert rel(out, ref) <= max(2e-2, 2 * rel(stock, ref))


def test_state_dict_unchanged_and_unsupported_calls_use_stock():
    m = led_model().eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert apply_fast_path(m) is m
    after = m.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    kw = inputs(256, led=True)
    with torch.no_grad():
        fast = m(**kw)
        stock = m(**kw, output_attentions=True)  # not covered by the fast path: the stock forward answers
    assert stock.encoder_attentions is not None and fast.encoder_attentions is None
    assert rel(fast.logits, stock.logits) <= TOL
    assert rel(fast.encoder_last_hidden_state, stock.encoder_last_hidden_state) <= TOL


def test_apply_fast_path_refuses_what_it_does_not_implement():
    with pytest.raises(ValueError, match="BartForConditionalGeneration"):
        cfg = transformers.BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1,
                                      encoder_attention_heads=2, decoder_attention_heads=2,
                                      encoder_ffn_dim=16, decoder_ffn_dim=16)
        apply_fast_path(transformers.BartForConditionalGeneration(cfg))
    with pytest.raises(ValueError, match="attention_dropout"):
        apply_fast_path(led_model(attention_dropout=0.1))
    with pytest.raises(ValueError, match="greedy_generate needs apply_fast_path"):
        greedy_generate(led_model(), torch.ones(1, 64, dtype=torch.long), None)


def test_training_follows_stock_loss_curve():
    """200 AdamW steps from the same init, data and dropout seed: the fast path tracks stock's losses."""
    m = led_model()  # dropout 0.1: both draw the same masks in the same order
    fast = apply_fast_path(copy.deepcopy(m))
    g = torch.Generator().manual_seed(0)
    curves = []
    for model in (m, fast):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        g.manual_seed(0)
        torch.manual_seed(0)
        for _ in range(200):
            ids = torch.randint(3, 40, (4, 64), generator=g)
            gm = torch.zeros_like(ids)
            gm[:, 0] = 1
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), global_attention_mask=gm,
                         labels=ids[:, :8].clone()).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(float(loss))
        curves.append(np.array(losses))
    stock, ours = curves
    assert stock[-20:].mean() < 0.8 * stock[:20].mean()  # it learns (at least the output distribution)
    print("max |fast - stock| loss over 200 steps:", np.abs(ours - stock).max())
    assert np.abs(ours - stock).max() < 1e-3 * stock.max()


def test_flop_counts_match_brute_force():
    S, window, G = 96, 32, 3
    q = torch.arange(S)[:, None]
    kv = torch.arange(S)[None]
    allowed = ((q - kv).abs() <= window // 2) | (kv < G) | (q < G)
    assert led_pairs(S, window, G) == int(allowed.sum())
    m = bigbird_model(max_position_embeddings=4096).train()
    sa = m.model.encoder.layers[0].self_attn.self
    M = block_multiplicity(hf_rand_attn(sa, 512), 512 // 16)
    assert M.max() == 1  # distinct blocks at this length
    assert bigbird_pairs(512, 16, 2) == int((M > 0).sum(axis=(1, 2))[0]) * 16 * 16


@pytest.mark.slow
def test_compiled_layers_match_stock_forward():
    for family in ("led", "bigbird"):
        m = (led_model() if family == "led" else bigbird_model()).eval()
        kw = inputs(256, led=family == "led")
        fast = apply_fast_path(copy.deepcopy(m), compile=True)
        with torch.no_grad():
            ref = m(**kw).logits
            A.BACKEND = "flex"
            try:
                out = fast(**kw).logits
            finally:
                A.BACKEND = "auto"
        assert rel(out, ref) <= TOL


@pytest.mark.parametrize("attn", ["sdpa", "flex", "bmm"])
def test_decode_step_reads_only_tensors_that_outlive_its_graph(attn, monkeypatch):
    # On CUDA the step is captured once and replayed on later calls at the capture's addresses, so it may read
    # only tensors that live as long as the graph (W's buffers, the state, the model's parameters), never one
    # made per generate call: an EOS-id tensor made per call was freed, and replays read out-of-range indices.
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from lightning_modules.fast import generate as G

    m = led_model().eval()
    apply_fast_path(m)
    s = dict(G.generation_settings(m), max_new=6, min_new=4, attn=attn)
    W = G.DecoderWeights(m, m._fast.path, torch.float32)
    st = G._new_state(W, 2, 64, 6, s["eos"], torch.device("cpu"))
    G._load(W, st, torch.randn(2, 64, 32), torch.ones(2, 64, dtype=torch.bool), s["start"])
    def ptr(t):
        return t.untyped_storage().data_ptr()

    class Reads(TorchDispatchMode):
        made, read = set(), {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            for t in tree_leaves((args, kwargs)):
                if isinstance(t, torch.Tensor) and t.dim() > 0 and ptr(t) not in self.made:
                    self.read[ptr(t)] = (str(func), tuple(t.shape))
            out = func(*args, **(kwargs or {}))
            self.made.update(ptr(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor))
            return out

    def flex_reads(q, k, v, block_mask, scale):
        # flex cannot run under a dispatch mode: record what its kernel reads (inputs, the mask's tables and the
        # tensors its mask_mod closes over), then compute the same attention densely
        cells = [c.cell_contents for c in block_mask.mask_mod.__closure__ or ()]
        for t in (q, k, v, block_mask.kv_num_blocks, block_mask.kv_indices, *cells):
            if isinstance(t, torch.Tensor) and ptr(t) not in r.made:
                r.read[ptr(t)] = ("flex_attention", tuple(t.shape))
        allowed = block_mask.mask_mod(torch.arange(q.shape[0]).view(-1, 1, 1, 1), 0, 0,
                                      torch.arange(k.shape[2]).view(1, 1, 1, -1))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)

    monkeypatch.setattr(G, "flex_attention", flex_reads)
    with torch.no_grad(), Reads() as r:
        G.decode_step(W, st, s)
    block = st.cross_block  # flex's mask tensors live in the state too
    lived = [*W.buffers.values(), *(v for v in vars(st).values() if isinstance(v, torch.Tensor)), *m.parameters(),
             *m.buffers(), block.kv_num_blocks, block.kv_indices]
    outside = {p: r.read[p] for p in set(r.read) - {ptr(t) for t in lived}}
    assert st.eos is not None and ptr(st.eos) in r.read  # the EOS ids are read, from the state
    assert not outside, f"decode_step reads tensors a replayed graph would not keep alive: {outside}"


@pytest.mark.slow
def test_compile_true_generation_matches_hf_generate():
    m = led_model().eval()
    kw = inputs(256, led=True)
    kw.pop("labels")
    fast = apply_fast_path(copy.deepcopy(m), compile=True)
    with torch.no_grad():
        ref = m.generate(**kw, max_new_tokens=10, min_new_tokens=10, num_beams=1, do_sample=False)
    out = greedy_generate(fast, kw["input_ids"], kw["attention_mask"], kw["global_attention_mask"],
                          max_new_tokens=10, min_new_tokens=10)
    assert torch.equal(out, ref)
