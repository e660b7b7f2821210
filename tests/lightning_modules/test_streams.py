"""The fast path's captures warm up on one side stream per device (lightning_modules/fast/streams.py)."""

import torch

import lightning_modules.fast.streams as streams


def test_every_capture_warms_up_on_the_same_stream_of_its_device(monkeypatch):
    """A new stream per capture left a cuBLAS workspace behind each time (on the H200, +0.1 GiB a probe): one per
    device, made once, however many captures ask."""
    made = []

    class Stream:
        def __init__(self, device=None):
            made.append(device)

    monkeypatch.setattr(streams, "_STREAMS", {})
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    first = streams.warmup_stream()
    assert streams.warmup_stream() is first and streams.warmup_stream("cuda:0") is first
    assert streams.warmup_stream(torch.device("cuda")) is first  # no index: the current device's
    other = streams.warmup_stream("cuda:1")
    assert other is not first and streams.warmup_stream(1) is other
    assert made == [0, 1]
