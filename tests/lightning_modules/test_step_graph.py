"""model.cuda_graph: a training step's forward and backward as CUDA graph replays (lightning_modules/fast/step_graph.py).

CPU: the host decisions a graph fixes ahead (labels padded to a power of two, LED's global-token slots rounded
up, BigBird's padding shortcut) leave loss and gradients unchanged, and the option is validated. GPU (-m gpu,
on the lent machine): replays match the eager fast path, take new data, accumulate gradients correctly and
refuse a stale backward.
"""

import copy

import pytest
import torch

from lightning_modules.fast import apply_fast_path
from lightning_modules.fast.model import fast_outputs
from lightning_modules.fast import release_train_graphs
from lightning_modules.fast.step_graph import _Graph, pow2, static_plan
from lightning_modules.models import ModelSpec, StudyError

from test_fast_path import bigbird_model, inputs, led_model, one_thread, rel  # noqa: F401 (one_thread: autouse)

TOL = 1e-5


def loss_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_pow2():
    assert [pow2(n) for n in (1, 2, 3, 4, 5, 127, 128, 129)] == [1, 2, 4, 4, 8, 128, 128, 256]


@pytest.mark.parametrize("family", ["led", "bigbird"])
def test_graph_plan_leaves_loss_and_gradients_unchanged(family):
    led = family == "led"
    m = apply_fast_path(led_model(dropout=0.0) if led else bigbird_model(dropout=0.0))
    m.train()
    kw = inputs(256, led, T=12)  # labels end in -100 in row 0; LED rows hold 3, 2 and 1 global tokens
    labels, plan = static_plan(m, kw["input_ids"], kw["attention_mask"], kw.get("global_attention_mask"), kw["labels"])
    assert labels.shape[1] == 16 and bool((labels[:, 12:] == -100).all()) and torch.equal(labels[:, :12], kw["labels"])
    assert plan == ({"n_glob": 4} if led else {"all_valid": False})
    gm = kw.get("global_attention_mask")
    l0, g0 = loss_and_grads(m, lambda: m(**kw).loss)
    l1, g1 = loss_and_grads(m, lambda: fast_outputs(m, kw["input_ids"], kw["attention_mask"], gm, labels=labels,
                                                    **plan)[0])
    assert set(g0) == set(g1)
    assert abs(float(l1 - l0)) <= TOL * abs(float(l0))
    assert rel(torch.cat([g1[n].flatten() for n in g0]), torch.cat([g.flatten() for g in g0.values()])) <= TOL


def test_led_global_slots_beyond_the_rows_counts_are_inert():
    """What lets a captured step keep the most global slots it has seen (FastPath.plan_floors): 16 slots for rows
    of 3, 2 and 1 global tokens give the eager model's loss and gradients."""
    m = apply_fast_path(led_model(dropout=0.0))
    m.train()
    kw = inputs(256, True, T=12)
    labels, plan = static_plan(m, kw["input_ids"], kw["attention_mask"], kw["global_attention_mask"], kw["labels"])
    assert plan == {"n_glob": 4}
    l0, g0 = loss_and_grads(m, lambda: m(**kw).loss)
    l1, g1 = loss_and_grads(m, lambda: fast_outputs(m, kw["input_ids"], kw["attention_mask"], kw["global_attention_mask"],
                                                    labels=labels, n_glob=16)[0])
    assert abs(float(l1 - l0)) <= TOL * abs(float(l0))
    assert rel(torch.cat([g1[n].flatten() for n in g0]), torch.cat([g.flatten() for g in g0.values()])) <= TOL


def test_bigbird_all_valid_shortcut_is_the_same_function():
    m = apply_fast_path(bigbird_model(dropout=0.0))
    kw = inputs(256, False, T=12)
    kw["attention_mask"] = torch.ones_like(kw["attention_mask"])
    _, plan = static_plan(m, kw["input_ids"], kw["attention_mask"], None, kw["labels"])
    assert plan == {"all_valid": True}
    with torch.no_grad():
        a = fast_outputs(m, kw["input_ids"], kw["attention_mask"], labels=kw["labels"], all_valid=True)[1]
        b = fast_outputs(m, kw["input_ids"], kw["attention_mask"], labels=kw["labels"], all_valid=False)[1]
    assert rel(a, b) <= TOL


def test_cuda_graph_option_is_validated():
    with pytest.raises(ValueError, match="compile='reduce-overhead'"):
        apply_fast_path(led_model(), compile="reduce-overhead", cuda_graph=True)
    arch = dict(vocab_size=300, d_model=32)
    with pytest.raises(StudyError, match="model.cuda_graph=True needs model.attn_impl=fast"):
        ModelSpec(name="x", family="led", arch=arch, attn_impl="hf", cuda_graph=True)
    with pytest.raises(StudyError, match="model.cuda_graph=maybe is not one of"):
        ModelSpec(name="x", family="led", arch=arch, attn_impl="fast", cuda_graph="maybe")


def test_cuda_graph_is_inert_on_cpu():
    # the option names a GPU mechanism: on CPU the step runs as without it (same outputs, logits included)
    m = led_model(dropout=0.0)
    kw = inputs(256, True)
    a = apply_fast_path(copy.deepcopy(m), cuda_graph=True).train()(**kw)
    b = apply_fast_path(copy.deepcopy(m)).train()(**kw)
    assert a.logits is not None and torch.equal(a.logits, b.logits)


def test_a_capture_is_stale_once_its_parameters_are_replaced_or_moved():
    """A captured graph reads its parameters at the addresses of the capture: batch_size=auto's probe captured,
    moved the model to the CPU and back (same Parameter objects, new storage), and the run would have replayed it."""
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.zeros(2))]
    g = object.__new__(_Graph)  # the bookkeeping alone: a real capture needs CUDA
    g.params, g.ptrs = params, tuple(p.data_ptr() for p in params)
    assert not g.stale(params)
    params[1].data = params[1].data.clone()  # what module.to(device) does to each parameter
    assert g.stale(params)
    g.ptrs = tuple(p.data_ptr() for p in params)
    assert not g.stale(params)
    assert g.stale([params[0], torch.nn.Parameter(torch.zeros(2))])  # a parameter replaced (model.to(dtype))
    assert g.stale(params[:1])


def test_releasing_a_models_train_graphs_forgets_them():
    m = apply_fast_path(led_model(), cuda_graph=True)
    m._fast.train_graphs.graphs["key"] = object()
    m._fast.train_graphs.pool = object()
    release_train_graphs(m)
    assert len(m._fast.train_graphs) == 0 and m._fast.train_graphs.pool is None
    release_train_graphs(led_model())  # a model without the fast path, or without graphs: nothing to do
    release_train_graphs(apply_fast_path(led_model()))


def test_labels_pad_to_the_longest_length_captured_and_a_longer_one_replaces_the_graphs(monkeypatch):
    """One graph per label length a run has grown to, not per power of two it meets: a shorter batch pads to the
    capture it can replay (its loss and gradients unchanged: -100 is ignored), and a longer one first forgets the
    graphs before it (a new capture's warm-up runs outside the pool; with the old pool held, a step at the largest
    batch would need its activations twice). Shapes only, on the CPU: the captures are stand-ins."""
    import lightning_modules.fast.step_graph as sg

    captured = []

    class Capture:
        def __init__(self, fn, tensors, params, pool, autocast, warmup):
            captured.append(tensors[-1].shape[1])  # the padded labels' length
            self.inputs, self.params = [t.clone() for t in tensors], params
            self.fwd = type("G", (), {"replay": lambda self: None})()
            self.loss, self.grads = torch.tensor(1.0), [None] * len(params)

        def stale(self, params):
            return False

    monkeypatch.setattr(sg, "_Graph", Capture)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    m = apply_fast_path(led_model(), cuda_graph=True)
    graphs = m._fast.train_graphs
    for T, padded in ((20, 32), (10, 32), (40, 64), (20, 64), (12, 64)):
        kw = inputs(256, True, T=T)
        graphs.loss(m, kw["input_ids"], kw["attention_mask"], kw["global_attention_mask"], kw["labels"])
        assert graphs.label_len == padded
    assert captured == [32, 64] and len(graphs) == 1  # the 32 graph went when the 64 one came
    # LED's global slots likewise (QA: the question's tokens are global, and their count varies by batch)
    assert graphs.plan_floor == {"n_glob": 4}  # rows of 3, 2 and 1 global tokens
    many = inputs(256, True, T=12)
    many["global_attention_mask"][0, 10:16] = 1  # 9 in row 0: 16 slots
    for gm, slots in ((many["global_attention_mask"], 16), (kw["global_attention_mask"], 16)):
        graphs.loss(m, kw["input_ids"], kw["attention_mask"], gm, kw["labels"])
        assert graphs.plan_floor == {"n_glob": slots}
    assert captured == [32, 64, 64] and len(graphs) == 1 and [dict(k[2]) for k in graphs.graphs] == [{"n_glob": 16}]
    labels, _ = static_plan(m, kw["input_ids"], kw["attention_mask"], kw["global_attention_mask"], kw["labels"], floor=512)
    assert labels.shape[1] == 64  # never past the decoder's positions (64 here)
    release_train_graphs(m)
    assert graphs.label_len == 0  # a probe's captures (at the longest labels) do not set the run's length


def test_a_replayed_loss_lets_go_of_its_graph_once_backpropagated():
    """Lightning keeps the last step's loss; through it the replay's autograd node kept its captured graph, so a
    graph replaced by a longer label length stayed alive (and its pool reserved) while the next one was captured.
    After its backward the node holds none; a second backward of it is refused in one line."""
    from lightning_modules.fast.step_graph import TrainGraphs, _Replay

    w = torch.nn.Parameter(torch.ones(3))
    noop = type("G", (), {"replay": lambda self: None})()
    graph = type("Capture", (), {"fwd": noop, "bwd": noop, "loss": torch.tensor(2.0), "grad_out": torch.zeros(()),
                                 "grads": [torch.full((3,), 0.5)]})()
    graphs = TrainGraphs()
    graphs.replays = 1
    loss = _Replay.apply(graphs, graph, 1, w).clone()
    loss.backward(retain_graph=True)
    assert torch.equal(w.grad, torch.full((3,), 0.5))
    node = loss.grad_fn.next_functions[0][0]
    assert node.graph is None and node.graphs is None
    with pytest.raises(RuntimeError, match="backpropagates once"):
        loss.backward()


# ------------------------------------------------------------------------------------------------------- GPU
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_tf32():
    # fp32 comparisons: TF32 matmuls would round both sides to 10-bit mantissas
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def _cuda(kw):
    return {k: v.cuda() for k, v in kw.items()}


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("family", ["led", "bigbird"])
def test_graph_replays_match_eager_take_new_data_and_accumulate(family, no_tf32):
    led = family == "led"
    # head_dim 16: flex_attention's CUDA kernels need at least 16
    small = dict(dropout=0.0, d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128)
    base = (led_model(**small) if led else bigbird_model(**small)).cuda().train()
    eager = apply_fast_path(copy.deepcopy(base))
    graphed = apply_fast_path(copy.deepcopy(base), cuda_graph=True)
    b1, b2 = _cuda(inputs(256, led, seed=1)), _cuda(inputs(256, led, seed=2))
    for kw in (b1, b2, b1):  # the capture, then replays on other data
        l0, g0 = loss_and_grads(eager, lambda: eager(**kw).loss)
        l1, g1 = loss_and_grads(graphed, lambda: graphed(**kw).loss)
        assert abs(float(l1 - l0)) <= 1e-4 * abs(float(l0))
        assert set(g0) == set(g1)
        assert rel(torch.cat([g1[n].flatten() for n in g0]), torch.cat([g.flatten() for g in g0.values()])) <= 1e-4
    assert len(graphed._fast.train_graphs) == 1
    # gradient accumulation: two backwards without zero_grad sum their gradients
    _, a1 = loss_and_grads(eager, lambda: eager(**b1).loss)
    _, a2 = loss_and_grads(eager, lambda: eager(**b2).loss)
    graphed.zero_grad(set_to_none=True)
    graphed(**b1).loss.backward()
    graphed(**b2).loss.backward()
    got = torch.cat([p.grad.flatten() for n, p in graphed.named_parameters() if n in a1])
    want = torch.cat([(a1[n] + a2[n]).flatten() for n, _ in graphed.named_parameters() if n in a1])
    assert rel(got, want) <= 1e-4
    # a loss whose saved activations a later forward overwrote refuses to backpropagate
    graphed.zero_grad(set_to_none=True)
    stale = graphed(**b1).loss
    graphed(**b2).loss.backward()
    with pytest.raises(RuntimeError, match="replayed by a later training forward"):
        stale.backward()


@pytest.mark.gpu
@gpu
def test_a_model_moved_off_the_card_and_back_is_captured_again(no_tf32):
    """batch_size=auto's probe captures steps, then moves the model to the CPU; the run moves it back: its first
    step must capture anew (the old graph would read freed memory), and match the eager step."""
    small = dict(dropout=0.0, d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128)
    base = led_model(**small).cuda().train()
    eager = apply_fast_path(copy.deepcopy(base))
    graphed = apply_fast_path(copy.deepcopy(base), cuda_graph=True)
    kw = _cuda(inputs(256, True, seed=1))
    loss_and_grads(graphed, lambda: graphed(**kw).loss)
    first = graphed._fast.train_graphs.graphs[next(iter(graphed._fast.train_graphs.graphs))]
    graphed.to("cpu")
    torch.cuda.empty_cache()
    filler = torch.full((1 << 22,), 7.0, device="cuda")  # the freed storage, rewritten by whatever comes next
    graphed.to("cuda")
    l0, g0 = loss_and_grads(eager, lambda: eager(**kw).loss)
    l1, g1 = loss_and_grads(graphed, lambda: graphed(**kw).loss)
    del filler
    assert first not in graphed._fast.train_graphs.graphs.values() and len(graphed._fast.train_graphs) == 1
    assert abs(float(l1 - l0)) <= 1e-4 * abs(float(l0))
    assert rel(torch.cat([g1[n].flatten() for n in g0]), torch.cat([g.flatten() for g in g0.values()])) <= 1e-4
    before = torch.cuda.memory_reserved()
    graphed.zero_grad(set_to_none=True)
    release_train_graphs(graphed)
    torch.cuda.empty_cache()
    assert torch.cuda.memory_reserved() < before  # the pool goes back to the card


@pytest.mark.gpu
@gpu
def test_graph_under_bf16_autocast_trains():
    m = apply_fast_path(led_model(d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128).cuda().train(), cuda_graph=True)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    kw = _cuda(inputs(256, True))
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = m(**kw).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def _train_curve(base, graph, seed, steps=200):
    """Per-step losses of 200 AdamW steps on fresh batches (the same batches for every call), fp32."""
    m = apply_fast_path(copy.deepcopy(base), cuda_graph=graph).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(seed)  # the dropout draws
    losses = []
    for _ in range(steps):
        ids = torch.randint(3, 40, (4, 256), generator=g)
        gm = torch.zeros_like(ids)
        gm[:, 0] = 1
        kw = _cuda(dict(input_ids=ids, attention_mask=torch.ones_like(ids), global_attention_mask=gm,
                        labels=ids[:, :8].clone()))
        loss = m(**kw).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    return torch.tensor(losses)


def _smooth(x, k=20):
    return torch.nn.functional.avg_pool1d(x[None, None], k, 1)[0, 0]


@pytest.mark.gpu
@gpu
def test_graphed_training_follows_the_eager_loss_curve(no_tf32):
    """200 AdamW steps from one init on the same batches, fp32. Without dropout, graphed and eager losses agree
    step by step until rounding differences compound; with dropout (other draws) the graphed curve stays within
    the spread between two eager runs that differ only in their dropout draws."""
    small = dict(d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128)
    base = led_model(dropout=0.0, **small).cuda()
    eager, graphed = _train_curve(base, False, 0), _train_curve(base, True, 0)
    summary = f"eager {eager[::25].tolist()}\ngraphed {graphed[::25].tolist()}"
    # it learns (from ln 300 at init to about the ln 37 of the batches' unigram distribution within ~50 steps)
    assert eager[-20:].mean() < 0.8 * eager[0], summary
    assert float(((graphed[:30] - eager[:30]).abs() / eager[:30]).max()) < 1e-4, summary
    base = led_model(dropout=0.1, **small).cuda()
    e0, e1, g0 = _train_curve(base, False, 0), _train_curve(base, False, 1), _train_curve(base, True, 0)
    noise = float((_smooth(e1) - _smooth(e0)).abs().max())
    gap = float((_smooth(g0) - _smooth(e0)).abs().max())
    print(f"dropout 0.1: eager-vs-eager spread {noise:.4f}, graphed-vs-eager {gap:.4f}")
    assert gap <= 2 * noise + 0.05, f"gap {gap} noise {noise}\ne0 {e0[::25].tolist()}\ne1 {e1[::25].tolist()}\ng0 {g0[::25].tolist()}"
