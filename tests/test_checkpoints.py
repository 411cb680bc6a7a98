"""A checkpoint left half-written by a kill is skipped in favour of the previous intact one."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from speechbrain_gendistill.training.checkpoints import IntegrityCheckpointer, seal_checkpoint

# Saves one checkpoint, then dies by SIGKILL in the middle of writing the next one.
KILLED_WHILE_SAVING = textwrap.dedent(
    """
    import os, signal, sys, torch
    from speechbrain.utils.checkpoints import register_checkpoint_hooks, mark_as_saver, mark_as_loader
    from speechbrain_gendistill.training.checkpoints import IntegrityCheckpointer

    @register_checkpoint_hooks
    class Counter:
        def __init__(self):
            self.value = 0
            self.die_while_saving = False

        @mark_as_saver
        def save(self, path):
            with open(path, "w") as handle:
                handle.write(str(self.value)[:1])
                handle.flush()
                if self.die_while_saving:
                    os.kill(os.getpid(), signal.SIGKILL)
                handle.write(str(self.value)[1:])

        @mark_as_loader
        def load(self, path, end_of_epoch):
            self.value = int(open(path).read())

    model, counter = torch.nn.Linear(3, 3), Counter()
    checkpointer = IntegrityCheckpointer(sys.argv[1], recoverables={"model": model, "counter": counter})
    counter.value = 41
    torch.save(model.state_dict(), sys.argv[1] + "/reference.pt")
    checkpointer.save_and_keep_only()
    counter.value, counter.die_while_saving = 42, True
    with torch.no_grad():
        model.weight.add_(1.0)
    checkpointer.save_and_keep_only()
    """
)


def test_checkpoint_killed_while_saving_is_skipped(tmp_path, caplog):
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WHILE_SAVING)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    assert len(list(tmp_path.glob("CKPT+*"))) == 2  # the second one exists, half-written

    model, counter_box = torch.nn.Linear(3, 3), {}

    class Counter:
        def load(self, path, end_of_epoch):
            counter_box["value"] = int(open(path).read())

    checkpointer = IntegrityCheckpointer(tmp_path, recoverables={"model": model})
    checkpointer.add_recoverable("counter", Counter(), custom_load_hook=Counter.load, custom_save_hook=lambda o, p: 0)
    with caplog.at_level(logging.WARNING):
        checkpoint = checkpointer.recover_if_possible()
    assert checkpoint is not None
    assert counter_box["value"] == 41
    reference = torch.load(tmp_path / "reference.pt", weights_only=True)
    assert torch.equal(model.weight, reference["weight"])
    assert any("never sealed" in record.getMessage() for record in caplog.records)


def test_a_damaged_file_is_detected(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpointer = IntegrityCheckpointer(tmp_path, recoverables={"model": model})
    first = checkpointer.save_checkpoint()
    second = checkpointer.save_checkpoint()
    (second.path / "model.ckpt").unlink()
    assert [c.path for c in checkpointer.list_checkpoints()] == [first.path]
    third = checkpointer.save_checkpoint()  # a new intact checkpoint clears the broken one away
    assert not second.path.exists() and first.path.exists() and third.path.exists()


class Payload:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_shared_checkpoint_holding_a_pickle_payload_is_refused(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpointer = IntegrityCheckpointer(tmp_path / "save", recoverables={"model": model})
    checkpoint = checkpointer.save_checkpoint()
    marker = tmp_path / "payload_ran"
    with open(checkpoint.path / "model.ckpt", "wb") as handle:
        pickle.dump({"weight": Payload(marker)}, handle)
    seal_checkpoint(checkpoint.path)  # whoever shared it sealed it too
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        checkpointer.recover_if_possible()
    assert not marker.exists()
