#!/usr/bin/env python3
"""Distils a self-supervised teacher into a GenDistiller student on any folder (or CSV list) of unlabeled audio.

    python train.py hparams/distill.yaml --data_folder=/path/to/audio
    python train.py hparams/distill.yaml --data_folder=/path/to/list.csv   # a CSV with a `wav` column
    torchrun --nproc_per_node=8 train.py hparams/distill.yaml --data_folder=/path/to/audio

Files of any format soundfile reads, at any sample rate and channel count, are
read as 16 kHz mono; long files are cut into stretches of ``max_file_seconds``;
a share ``dev_fraction`` of the files is held out for validation. Every bad file
is named in one error before training (or skipped with ``skip_bad_audio``).
Running the same command again resumes from the last checkpoint and does
nothing once the run is finished. At the end the student is exported to
``<output_folder>/student`` (``recipes/LibriSpeech/distill/export.py`` exports
any checkpoint with this recipe's YAML and overrides).
"""

import logging
import sys

from speechbrain.utils.distributed import if_main_process

from speechbrain_gendistill.data.audio_folder import audio_folder_manifests
from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.training import fit, load_recipe, make_loaders, schedule_per_update
from speechbrain_gendistill.training.distillation import DistillBrain, StudentForDDP
from speechbrain_gendistill.training.distillation_recipe import build_distillation, dataio_prepare, distillation_card

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    student = build_distillation(hparams)  # checked against the teacher before any data is read
    train_data, valid_data = dataio_prepare(hparams, manifests=audio_folder_manifests)
    train_loader, valid_loader = make_loaders(hparams, train_data, valid_data, crop=hparams["train_crop"])

    modules = {"teacher": hparams["teacher"], "student": StudentForDDP(student)}
    brain = DistillBrain(modules, hparams["opt_class"], hparams, run_opts, hparams["checkpointer"])
    schedule_per_update(brain, hparams, train_loader)  # warm-up and decay over the whole run
    fit(brain, train_loader, valid_loader, hparams)

    if if_main_process():
        card = distillation_card(hparams, hparams["checkpointer"].find_checkpoint())
        folder = export_student(student, hparams["export_folder"], card)
        logger.info("exported the student to %s", folder)
