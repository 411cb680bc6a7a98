#!/usr/bin/env python3
"""Distils a self-supervised teacher into a GenDistiller or DistilHuBERT student on LibriSpeech.

    python train.py hparams/distill.yaml --data_folder=/path/to/LibriSpeech
    torchrun --nproc_per_node=8 train.py hparams/distill.yaml --data_folder=/path/to/LibriSpeech

Running the same command again resumes from the last checkpoint (mid-epoch
included) and does nothing once the run is finished. At the end the student is
exported to ``<output_folder>/student`` (see export.py to export any checkpoint).
"""

import logging
import sys

from speechbrain.utils.distributed import if_main_process

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.training import fit, load_recipe, make_loaders, schedule_per_update
from speechbrain_gendistill.training.distillation import DistillBrain, StudentForDDP
from speechbrain_gendistill.training.distillation_recipe import build_distillation, dataio_prepare, distillation_card

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    student = build_distillation(hparams)  # checked against the teacher before any data is read
    train_data, valid_data = dataio_prepare(hparams)
    train_loader, valid_loader = make_loaders(hparams, train_data, valid_data, crop=hparams["train_crop"])

    modules = {"teacher": hparams["teacher"], "student": StudentForDDP(student)}
    brain = DistillBrain(modules, hparams["opt_class"], hparams, run_opts, hparams["checkpointer"])
    schedule_per_update(brain, hparams, train_loader)  # warm-up and decay over the whole run
    fit(brain, train_loader, valid_loader, hparams)

    if if_main_process():
        card = distillation_card(hparams, hparams["checkpointer"].find_checkpoint())
        folder = export_student(student, hparams["export_folder"], card)
        logger.info("exported the student to %s", folder)
