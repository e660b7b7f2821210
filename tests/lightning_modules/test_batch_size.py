"""batch_size: the paper's Table 5 lookup, the search for the largest batch that fits, and bad values."""

import pytest
import torch
from omegaconf import OmegaConf

import lightning_modules.batch_size as bs
from study.errors import StudyError

TABLE = OmegaConf.to_container(OmegaConf.load("conf/paper_batch_sizes.yaml"))["paper_batch_sizes"]


class Spec:
    def __init__(self, name):
        self.name = name
        self.global_attention_on_first_token = True


def test_paper_table_5_per_device():
    assert bs.paper_batch_size(TABLE, "summarization", "led_base", 4096) == 6
    assert bs.paper_batch_size(TABLE, "summarization", "led_large", 2048) == 4
    assert bs.paper_batch_size(TABLE, "summarization", "bigbird_large", 1500) == 4  # next tabulated length up: 2048
    assert bs.paper_batch_size(TABLE, "qa", "led_base", 1024) == 704 // 32  # QA totals are over 8 GPUs x accumulation 4
    assert bs.paper_batch_size(TABLE, "qa", "bigbird_large", 4096) == 1


def test_paper_table_has_limits():
    with pytest.raises(StudyError, match="tabulates model=led_base up to seq_len=4096, not 8192"):
        bs.paper_batch_size(TABLE, "summarization", "led_base", 8192)
    with pytest.raises(StudyError, match="no Table 5 entry for model=led_xl"):
        bs.paper_batch_size(TABLE, "summarization", "led_xl", 1024)


@pytest.mark.parametrize("value", ["big", "0", "-3", "2.5"])
def test_bad_batch_size(value):
    with pytest.raises(StudyError, match=f"batch_size={value} must be a positive whole number, paper or auto"):
        bs.resolve_batch_size(value, TABLE, "summarization", Spec("led_base"), 1024)


def test_auto_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(StudyError, match="batch_size=auto searches GPU memory"):
        bs.resolve_batch_size("auto", TABLE, "summarization", Spec("led_base"), 1024, model=torch.nn.Linear(2, 2))


@pytest.mark.parametrize("fits_up_to", [1, 7, 24, 1000])
def test_auto_finds_the_largest_batch_that_fits(monkeypatch, fits_up_to):
    """Doubling, then bisection, against a stand-in for 'a full-length training step fits'."""
    tried = []

    def fake_fits(model, size, *args):
        tried.append(size)
        return size <= fits_up_to

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(bs, "_fits", fake_fits)
    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(model, "to", lambda *a, **k: model)
    assert bs.find_max_batch_size(model, 1024, 128, "32-true", True, limit=1024) == fits_up_to
    assert len(tried) <= 2 * 11  # logarithmic in the limit
