#!/usr/bin/env python3
"""Distils a self-supervised teacher into a GenDistiller or DistilHuBERT student on LibriSpeech.

    python train.py hparams/distill.yaml --data_folder=/path/to/LibriSpeech
    torchrun --nproc_per_node=8 train.py hparams/distill.yaml --data_folder=/path/to/LibriSpeech

Running the same command again resumes from the last checkpoint (mid-epoch
included) and does nothing once the run is finished. At the end the student is
exported to ``<output_folder>/student`` (see export.py to export any checkpoint).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_gendistill.audio_check import check_manifest
from speechbrain_gendistill.brains import (
    DistillBrain,
    StudentGeneration,
    build_student,
    check_frame_alignment,
    check_history_mode,
)
from speechbrain_gendistill.data import (
    duration_batch_sampler,
    load_manifest,
    sort_dataset,
    total_hours,
    train_dataloader,
    valid_dataloader,
)
from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.librispeech_prepare import prepare_librispeech

logger = logging.getLogger(__name__)


def load_recipe(argv: list[str]) -> tuple[dict, dict]:
    """Parses the command line, loads the YAML, builds teacher and student; returns (hparams, run_opts)."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    check_history_mode(hparams.get("history_mode"))
    teacher = hparams["teacher"]
    model_hparams = Path(hparams_file).parent / hparams["student_hparams"]  # relative to the recipe's YAML
    student = build_student(model_hparams, teacher, hparams["init_cnn_from_teacher"], hparams["student_overrides"])
    check_frame_alignment(student, teacher)
    hparams["student"] = student
    hparams["checkpointer"].add_recoverable("student", student)
    return hparams, run_opts


def prepare_datasets(hparams: dict) -> tuple:
    """Writes and checks the manifests (main process), then builds the datasets."""
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "train_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "skip_prep": hparams["skip_prep"],
            "num_workers": hparams["prep_workers"],
        },
    )
    manifests = {}
    for name in ("train_csv", "valid_csv"):
        run_on_main(check_manifest, args=[hparams[name]], kwargs={"skip_bad_audio": hparams["skip_bad_audio"]})
        manifests[name] = check_manifest(hparams[name], skip_bad_audio=hparams["skip_bad_audio"], num_workers=1)
    train_data = load_manifest(manifests["train_csv"], hparams["data_folder"], hparams["train_crop"])
    valid_data = load_manifest(manifests["valid_csv"], hparams["data_folder"], hparams["valid_crop"])
    return sort_dataset(train_data, hparams["sorting"]), valid_data


def model_card(hparams: dict, checkpoint) -> dict:
    """What the exported student's README records: teacher, layers, data, steps, final dev figures."""
    meta = checkpoint.meta if checkpoint is not None else {}
    train_csv = Path(hparams["train_csv"])
    hours = (
        total_hours(load_manifest(train_csv, hparams["data_folder"], hparams["train_crop"]))
        if train_csv.is_file()
        else None
    )
    card = {
        "teacher": hparams["teacher_source"],
        "target layers": hparams["teacher"].target_layers,
        "history mode in training": hparams.get("history_mode", "none (prediction heads)"),
        "train data": ", ".join(hparams["train_splits"]),
        "train hours": round(hours, 3) if hours is not None else "unknown",
        "dev data": ", ".join(hparams["dev_splits"]),
        "optimizer steps": meta.get("optimizer_steps"),
        "epochs": meta.get("epoch"),
        "dev loss": meta.get("valid_loss"),
    }
    for layer in hparams["teacher"].target_layers:
        card[f"dev L1, layer {layer}"] = meta.get(f"valid_l1_layer{layer}")
        card[f"dev cosine, layer {layer}"] = meta.get(f"valid_cosine_layer{layer}")
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in card.items()}


def main(argv: list[str]) -> None:
    hparams, run_opts = load_recipe(argv)
    train_data, valid_data = prepare_datasets(hparams)
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    batch_sampler = duration_batch_sampler(
        train_data,
        hparams["max_batch_length"],
        hparams["num_buckets"],
        hparams["sorting"],
        hparams["train_crop"],
        hparams["seed"],
        hparams["max_batch_ex"],
    )
    train_loader = train_dataloader(
        train_data,
        batch_sampler,
        hparams["num_workers"],
        world_size,
        rank,
        hparams["seed"],
        hparams["sorting"] == "random",
    )
    valid_loader = valid_dataloader(valid_data, hparams["valid_batch_size"], hparams["num_workers"])

    checkpointer = hparams["checkpointer"]
    checkpointer.add_recoverable("train_loader", train_loader)
    modules = {"teacher": hparams["teacher"], "student": StudentGeneration(hparams["student"])}
    brain = DistillBrain(modules, hparams["opt_class"], hparams, run_opts, checkpointer)
    brain.train_sampler = train_loader.batch_sampler  # so that the Brain sets its epoch

    # The schedule spans the run: number_of_epochs, or total_steps if that comes first.
    steps = hparams["number_of_epochs"] * len(train_loader) // brain.grad_accumulation_factor
    if hparams["total_steps"]:
        steps = min(steps, hparams["total_steps"])
    # The scheduler sets the rate of step k just before it runs: with steps + 1
    # the last step still gets a small, non-zero rate.
    brain.hparams.lr_scheduler = hparams["lr_scheduler"](
        num_warmup_steps=round(hparams["warmup_fraction"] * steps), num_training_steps=steps + 1
    )
    checkpointer.add_recoverable("lr_scheduler", brain.hparams.lr_scheduler)
    brain.fit(hparams["epoch_counter"], train_loader, valid_loader)

    if if_main_process():
        card = model_card(hparams, checkpointer.find_checkpoint())
        folder = export_student(hparams["student"], hparams["export_folder"], card)
        logger.info("exported the student to %s", folder)


if __name__ == "__main__":
    main(sys.argv[1:])
