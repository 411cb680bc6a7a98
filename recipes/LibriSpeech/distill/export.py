#!/usr/bin/env python3
"""Exports the student of a distillation run from any of its checkpoints.

    python export.py hparams/distill.yaml --data_folder=/path/to/LibriSpeech [--checkpoint=<CKPT folder>]

With the same YAML and overrides as the training command, it rebuilds the
student, loads it from ``--checkpoint`` (a ``CKPT+...`` folder under
``<output_folder>/save``; default: the newest intact one) and writes it, with
its model card, to ``<output_folder>/student`` (``--export_folder`` to change).
Training writes the same export when it finishes.
"""

import logging
import sys
from pathlib import Path

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.training import load_recipe
from speechbrain_gendistill.training.distillation_recipe import build_distillation, distillation_card

logger = logging.getLogger(__name__)


def pop_option(argv: list[str], name: str) -> str | None:
    """Removes ``--name=value`` from ``argv`` and returns the value."""
    prefix = f"--{name}="
    values = [arg[len(prefix) :] for arg in argv if arg.startswith(prefix)]
    argv[:] = [arg for arg in argv if not arg.startswith(prefix)]
    return values[-1] if values else None


def main(argv: list[str]) -> Path:
    argv = list(argv)
    checkpoint_folder = pop_option(argv, "checkpoint")
    hparams, _ = load_recipe(argv)
    student = build_distillation(hparams)
    checkpointer = hparams["checkpointer"]
    if checkpoint_folder is None:
        checkpoint = checkpointer.find_checkpoint()
        if checkpoint is None:
            raise FileNotFoundError(f"no intact checkpoint in {checkpointer.checkpoints_dir}: nothing to export")
    else:
        wanted = Path(checkpoint_folder).resolve()
        found = [ckpt for ckpt in checkpointer.list_checkpoints() if Path(ckpt.path).resolve() == wanted]
        if not found:
            raise FileNotFoundError(f"--checkpoint={checkpoint_folder} is not an intact checkpoint of this run")
        checkpoint = found[0]
    checkpointer.load_checkpoint(checkpoint)
    folder = export_student(student, hparams["export_folder"], distillation_card(hparams, checkpoint))
    logger.info("exported the student of %s to %s", checkpoint.path, folder)
    return folder


if __name__ == "__main__":
    main(sys.argv[1:])
