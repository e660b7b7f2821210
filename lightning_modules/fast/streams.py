"""The side stream every CUDA-graph capture of the fast path warms up on: one per device, for the process.

torch.cuda.Stream() hands out the next of 32 pooled streams, and cuBLAS keeps a workspace (32 MiB on Hopper) for
every stream a matmul ran on, never freed, so warming each capture up on a new stream leaves one more workspace
behind each time. On the H200 (2026-12-02) the memory a process held besides its model grew by about 0.1 GiB with
each batch_size=auto probe (0.00 -> 0.54 GiB over five; each probe warms a training capture and a decoder
capture), memory a run held to a cap then lacked: this is the likely cause (the sizes agree), not yet measured
with one stream. With one warm-up stream the workspace is allocated once.
"""

import torch

_STREAMS: dict[int, "torch.cuda.Stream"] = {}


def warmup_stream(device=None) -> "torch.cuda.Stream":
    """This device's warm-up stream (the current device by default), made on first use."""
    index = device if isinstance(device, int) else None if device is None else torch.device(device).index
    if index is None:
        index = torch.cuda.current_device()
    if index not in _STREAMS:
        _STREAMS[index] = torch.cuda.Stream(device=index)
    return _STREAMS[index]
