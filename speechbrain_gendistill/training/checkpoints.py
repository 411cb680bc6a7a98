"""A SpeechBrain Checkpointer that notices checkpoints left half-written by a crash.

SpeechBrain writes a checkpoint's meta file first and its parameter files after,
so a process killed while saving leaves a folder that looks complete and fails
to load (or, worse, loads a truncated file). Here each checkpoint gets a seal,
written last and atomically, holding the size and SHA-256 of every file; a
checkpoint without a seal, or whose files differ from it, is skipped with a
warning and the newest intact one is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from speechbrain.utils.checkpoints import Checkpoint, Checkpointer

logger = logging.getLogger(__name__)

SEAL = "INTACT.json"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def seal_checkpoint(folder: Path) -> None:
    """Records size and hash of every file of a finished checkpoint, atomically."""
    files = {p.name: {"size": p.stat().st_size, "sha256": _digest(p)} for p in sorted(folder.iterdir()) if p.is_file()}
    files.pop(SEAL, None)
    temporary = folder / f".{SEAL}.tmp"
    temporary.write_text(json.dumps(files, indent=1))
    os.replace(temporary, folder / SEAL)


def is_intact(folder: Path) -> str | None:
    """None if the checkpoint matches its seal, else what is wrong with it."""
    seal = folder / SEAL
    if not seal.is_file():
        return "it was never sealed (the run stopped while saving it)"
    try:
        files = json.loads(seal.read_text())
    except json.JSONDecodeError:
        return f"{SEAL} is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"] or _digest(path) != expected["sha256"]:
            return f"{name} differs from what was saved"
    return None


class IntegrityCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, plus a seal per checkpoint; takes the same arguments.

    Example
    -------
    >>> import tempfile, torch
    >>> model = torch.nn.Linear(2, 2)
    >>> checkpointer = IntegrityCheckpointer(tempfile.mkdtemp(), recoverables={"model": model})
    >>> first = checkpointer.save_checkpoint()
    >>> second = checkpointer.save_checkpoint()
    >>> (second.path / "model.ckpt").write_bytes(b"truncated")  # a crash while saving
    9
    >>> checkpointer.find_checkpoint().path == first.path
    True
    """

    def save_checkpoint(self, *args, **kwargs) -> Checkpoint | None:
        checkpoint = super().save_checkpoint(*args, **kwargs)
        if checkpoint is not None:  # the main process, once every file is written
            seal_checkpoint(Path(checkpoint.path))
            self._remove_broken(keep=Path(checkpoint.path))
        return checkpoint

    def list_checkpoints(self) -> list[Checkpoint]:
        intact = []
        for checkpoint in super().list_checkpoints():
            problem = is_intact(Path(checkpoint.path))
            if problem is None:
                intact.append(checkpoint)
            else:
                logger.warning("skipping checkpoint %s: %s; an earlier intact one is used", checkpoint.path, problem)
        return intact

    def _remove_broken(self, keep: Path) -> None:
        """Deletes unsealed or damaged checkpoints once a newer one is safely written."""
        for folder in self.checkpoints_dir.iterdir():
            if folder != keep and self._is_checkpoint_dir(folder) and is_intact(folder) is not None:
                shutil.rmtree(folder)
