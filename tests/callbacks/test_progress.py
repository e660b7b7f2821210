"""Progress without a terminal: one log line every N optimizer steps with step, loss, samples/s and time left."""

import re

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from callbacks.progress import ProgressLog
from study.errors import StudyError

LINE = re.compile(r"^step (\d+)(/\d+)? \| loss (\d+\.\d{4}) \| (\d+\.\d) samples/s \| (\d+:\d\d:\d\d) left to (max_steps|the epoch's end)$")


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch["input_ids"].float()).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(progress, bar=False, **trainer_args):
    data = DataLoader([{"input_ids": torch.randn(4)} for _ in range(24)], batch_size=2)  # 12 batches an epoch
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=bar, callbacks=[progress], **trainer_args)
    trainer.fit(Tiny(), data)
    return trainer


def test_a_line_every_n_steps_with_time_left_to_max_steps():
    progress = ProgressLog(every_n_steps=3)
    _fit(progress, max_steps=10)
    steps = [LINE.match(line) for line in progress.lines]
    assert all(steps), progress.lines
    assert [int(m.group(1)) for m in steps] == [3, 6, 9]
    assert all(m.group(2) == "/10" and m.group(6) == "max_steps" and float(m.group(4)) > 0 for m in steps)


def test_without_max_steps_time_left_is_to_the_epochs_end_and_counts_accumulated_steps():
    progress = ProgressLog(every_n_steps=2)
    _fit(progress, max_epochs=1, accumulate_grad_batches=2)  # 12 batches -> 6 optimizer steps
    steps = [LINE.match(line) for line in progress.lines]
    assert all(steps) and [int(m.group(1)) for m in steps] == [2, 4, 6]
    assert all(m.group(2) is None and m.group(6) == "the epoch's end" for m in steps)
    assert steps[-1].group(5) == "0:00:00"


def test_silent_when_lightnings_bar_is_shown():
    progress = ProgressLog(every_n_steps=1)
    _fit(progress, bar=True, max_steps=3)
    assert progress.lines == []


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_every_n_steps_must_be_a_positive_whole_number(bad):
    with pytest.raises(StudyError, match=f"callbacks.progress.every_n_steps={bad} must be a positive whole number"):
        ProgressLog(every_n_steps=bad)
