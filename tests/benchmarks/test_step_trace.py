"""The diagnostic callback that found the checkpoint write counted as training: its events and its summary."""

import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from benchmarks.step_trace import StepTrace, summarize


class Stalls(pl.LightningModule):
    """Fast steps; after each validation a 0.6 s stall inside a named function, like a checkpoint write."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def training_step(self, batch, i):
        return (self.w * batch.float().mean()).sum()

    def validation_step(self, batch, i):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class SlowWriter(pl.Callback):
    def on_validation_end(self, trainer, pl_module):
        write_checkpoint_slowly()


def write_checkpoint_slowly():
    time.sleep(0.6)


def test_trace_times_every_hook_and_names_what_ran_in_the_slow_stretch(tmp_path, capsys):
    path = tmp_path / "trace.json"
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=4, val_check_interval=2, check_val_every_n_epoch=None, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[StepTrace(str(path), every_s=0.02), SlowWriter()],
    )
    loader = DataLoader([torch.ones(4) for _ in range(8)], batch_size=2)
    trainer.fit(Stalls(), loader, loader)
    summarize(str(path))
    out = capsys.readouterr().out
    assert out.count("batch_end") == 4 and out.count("validation_start") == 2
    # the stretch from a validation's end to the next step holds the stall, and the samples say where it was
    assert "== validation_end -> batch_start" in out
    assert "write_checkpoint_slowly" in out.split("== validation_end -> batch_start")[1]
