"""A training step's forward and backward replayed as CUDA graphs (`model.cuda_graph=true`).

Why: at the paper's batch sizes the compiled fast path is host-bound: on the H100 the GPU was busy 40 of the
65 ms of an LED-base step at 4096 tokens (43 of 84 ms for LED-large; BENCHMARKS.md). A replay issues the whole
forward, or the whole backward, with one launch. The optimizer, gradient clipping and the training loop stay
eager (a few dozen launches a step).

What is captured: the fast path's loss as a function of the batch's tensors, and its gradient with respect to
every trainable parameter. The host decisions a forward makes are taken before the replay and choose the graph:
LED's number of global tokens (rounded up to a power of two; unused slots are inert, see led.global_rows),
BigBird's "no padding" shortcut, and the decoder length. One graph per (batch shapes, those decisions, autocast
dtype); all share one memory pool.

Rules that keep a replay the same function as an eager step:
- Labels are padded with -100 to a power-of-two length, and never shorter than the longest padded length this
  model has trained on: the decoder is causal and the loss ignores -100, so loss and gradients are unchanged, and a
  run keeps one graph per label length it has grown to, not one per target length. The same for a family's counts
  whose extra slots are inert (FastPath.plan_floors: LED's global slots, which vary with a QA batch's questions).
  A longer one replaces the graphs before it is captured: a new capture's warm-up runs outside the pool, and with
  the old pool still held a step at batch_size=auto's batch would need its activations twice (out of memory,
  within a cap or not).
- Gradients are handed to autograd as the graph's own buffers (no copy). Before the next replay, a .grad still
  pointing into them (gradient accumulation, zero_grad(set_to_none=False)) is copied out, so accumulation stays
  correct.
- A loss can be backpropagated only until the next training forward replays a graph (that overwrites the saved
  activations): a backward after that raises instead of returning wrong gradients.
- Warm-up and capture run under autocast with its weight-cast cache off: a cast cached outside the capture and
  read inside it would be freed after the step while the graph keeps reading its address.
Dropout is random on every replay (the capture registers the CUDA generator; each replay advances it), but its
draws differ from an eager step's.
"""

import torch
import torch.nn.functional as F

from .streams import warmup_stream

IGNORE_INDEX = -100


def pow2(n):
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(n - 1, 0).bit_length()


def static_plan(model, input_ids, attention_mask, global_attention_mask, labels, floor: int = 0):
    """The host decisions of one training forward -> (labels padded to the graph's length, plan kwargs);
    floor: the shortest label length to pad to (the longest a run has padded to so far)."""
    cfg = model.config
    T = labels.shape[1]
    limit = getattr(cfg, "max_decoder_position_embeddings", None) or cfg.max_position_embeddings
    Tg = max(T, min(pow2(T), limit), min(floor, limit))
    if Tg > T:
        labels = F.pad(labels, (0, Tg - T), value=IGNORE_INDEX)
    return labels, model._fast.path.static_plan(input_ids, attention_mask, global_attention_mask)


class _Graph:
    """One captured forward (-> loss) and backward (-> parameter gradients) over static input buffers."""

    def __init__(self, fn, tensors, params, pool, autocast, warmup):
        self.inputs = [t.clone() for t in tensors]
        self.params = params
        self.ptrs = tuple(p.data_ptr() for p in params)  # the addresses the captured kernels read
        enabled, dtype = autocast

        def cast():
            return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)

        side = warmup_stream()  # warm-up (compiles, lazy inits) off the capturing stream, as torch's recipe
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                with cast():
                    loss = fn(*self.inputs)
                torch.autograd.grad(loss, params, allow_unused=True)
                del loss
        torch.cuda.current_stream().wait_stream(side)
        # give the warm-up's cached blocks back before the capture takes its own pool: they are a whole step's
        # activations, and a capture cannot free them when it runs short (a run held to a cap would fail there)
        side.synchronize()
        torch.cuda.empty_cache()
        self.fwd, self.bwd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.fwd, pool=pool, capture_error_mode="thread_local"):
            with cast():
                self.loss = fn(*self.inputs)
        self.grad_out = torch.ones_like(self.loss)
        with torch.cuda.graph(self.bwd, pool=pool, capture_error_mode="thread_local"):
            self.grads = torch.autograd.grad(self.loss, params, self.grad_out, allow_unused=True)
        # drop the captured autograd graph: it kept the parameters' gradient accumulators of the capture stream
        # alive, and every later backward then synchronised with that stream (torch warned on each step)
        self.loss = self.loss.detach()

    def stale(self, params) -> bool:
        """Whether a replay would read parameters that are no longer where the capture found them: replaced
        (model.to(dtype)) or moved (model.to("cpu") and back, as batch_size=auto's probe did before a run: the same
        Parameter objects, new storage, and the graph would read freed memory)."""
        return (len(self.params) != len(params) or any(a is not b for a, b in zip(self.params, params))
                or self.ptrs != tuple(p.data_ptr() for p in params))


class _Replay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, graphs, graph, n, *params):
        ctx.graphs, ctx.graph, ctx.n = graphs, graph, n
        graph.fwd.replay()
        return graph.loss.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        if ctx.graph is None:
            raise RuntimeError("model.cuda_graph: a captured step's loss backpropagates once (retain_graph is not "
                               "supported); set model.cuda_graph=false")
        if ctx.graphs.replays != ctx.n:
            raise RuntimeError("model.cuda_graph: this loss's graph was replayed by a later training forward before "
                               "its backward (saved activations overwritten); backpropagate each loss before the "
                               "next forward, or set model.cuda_graph=false")
        g = ctx.graph
        g.grad_out.copy_(grad)
        g.bwd.replay()
        # a logged loss (Lightning keeps the last step's) would otherwise keep a replaced graph and its pool alive
        ctx.graph = ctx.graphs = None
        return (None, None, None) + tuple(None if t is None else t.detach() for t in g.grads)


class TrainGraphs:
    """The CUDA graphs of one model's training steps, keyed by what changes a capture."""

    def __init__(self, warmup=2):
        self.warmup = warmup  # eager passes before a capture: the first compiles
        self.graphs = {}
        self.pool = None
        self.replays = 0  # training forwards replayed, model-wide: a backward must follow its own forward
        self._grad_ptrs = set()
        self.label_len = 0  # the longest padded label length captured since the last reset: shorter labels pad to it
        self.plan_floor = {}  # the same for the family's plan_floors (e.g. LED's n_glob)

    def __len__(self):
        return len(self.graphs)

    def reset(self, keep_floors: bool = False):
        """Forget every capture (their memory goes back once no .grad points into it); keep_floors: the label length
        and plan floors stay (the run's batches still pad to them)."""
        self.graphs.clear()
        self._grad_ptrs.clear()
        self.pool = None
        if not keep_floors:
            self.label_len, self.plan_floor = 0, {}

    def _release_grads(self, params):
        # a .grad that is one of our buffers would be overwritten by the next replay: give it its own memory
        if self._grad_ptrs:
            for p in params:
                if p.grad is not None and p.grad.data_ptr() in self._grad_ptrs:
                    p.grad = p.grad.clone()

    def loss(self, model, input_ids, attention_mask, global_attention_mask, labels):
        from .model import fast_outputs

        labels, plan = static_plan(model, input_ids, attention_mask, global_attention_mask, labels, self.label_len)
        floors = model._fast.path.plan_floors
        plan = {k: max(v, self.plan_floor.get(k, 0)) if k in floors else v for k, v in plan.items()}
        grew = labels.shape[1] > self.label_len or any(plan[k] > self.plan_floor.get(k, 0) for k in floors if k in plan)
        given = dict(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                     labels=labels)
        names = tuple(k for k, v in given.items() if v is not None)
        tensors = [given[k] for k in names]
        autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
        key = (names, tuple((tuple(t.shape), t.dtype) for t in tensors), tuple(sorted(plan.items())), autocast,
               str(input_ids.device))
        params = [p for p in model.parameters() if p.requires_grad]
        self._release_grads(params)
        graph = self.graphs.get(key)
        if graph is not None and graph.stale(params):
            self.reset(keep_floors=True)  # parameters were replaced or moved: every capture is stale
            graph = None
        if graph is None and grew and self.graphs:
            self.reset()  # longer labels (or more slots) than any capture so far: later ones pad to these, the old graphs go
        if graph is None:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()

            def fn(*ts):
                return fast_outputs(model, **dict(zip(names, ts)), **plan, need_logits=False)[0]

            try:
                graph = _Graph(fn, tensors, params, self.pool, autocast, self.warmup)
            except BaseException:
                self.reset()  # e.g. out of memory during the capture: leave no half-made pool behind
                raise
            self.graphs[key] = graph
            self._grad_ptrs.update(t.data_ptr() for t in graph.grads if t is not None)
            self.label_len = max(self.label_len, labels.shape[1])
            self.plan_floor = {k: plan[k] for k in floors if k in plan}  # plan was raised to the floors above
        for static, t in zip(graph.inputs, tensors):
            static.copy_(t)
        self.replays += 1
        # clone: the graph's loss buffer is rewritten by the next replay, a logged loss must not change with it
        return _Replay.apply(self, graph, self.replays, *params).clone()
