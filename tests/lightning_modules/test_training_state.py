"""The training state's files: written atomically (a failed write leaves the old file and no partial one),
checked before a resume (a truncated checkpoint is one line naming it), and the loader resumes mid-epoch."""

import errno

import pytest
import torch

from data.resumable import EpochShuffle, ResumableLoader
from lightning_modules import training_state
from lightning_modules.training_state import AtomicCheckpointIO, check_checkpoint
from study.errors import RunFailed


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training_state.torch, "save", full_disk)
    with pytest.raises(OSError) as e:
        io.save_checkpoint({"step": 2}, path)
    assert e.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_truncated_checkpoint_is_one_line_naming_it(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(10_000)}, path)
    check_checkpoint(path)  # whole: fine
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RunFailed, match=f"checkpoint {path} is unreadable") as e:
        check_checkpoint(path)
    assert "\n" not in str(e.value)


def test_the_training_loader_resumes_at_its_position_with_the_same_order():
    data = list(range(20))
    whole = [b.tolist() for b in ResumableLoader(data, batch_size=4, sampler=EpochShuffle(20, seed=3), drop_last=True)]
    loader = ResumableLoader(data, batch_size=4, sampler=EpochShuffle(20, seed=3), drop_last=True)
    loader.position = lambda: 2  # two batches trained in this epoch when the state was saved
    state = loader.state_dict()
    resumed = ResumableLoader(data, batch_size=4, sampler=EpochShuffle(20, seed=3), drop_last=True)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == whole[2:]
    assert [b.tolist() for b in resumed] == whole  # the next epoch pass starts at its beginning
    other = EpochShuffle(20, seed=3)
    other.set_epoch(1)
    assert list(other) != [i for b in whole for i in b]  # each epoch its own order
