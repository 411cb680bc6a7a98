"""The scaffolding every recipe shares: command line and YAML, DDP, loaders, the learning-rate schedule, fitting.

A recipe's ``train.py`` reads as SpeechBrain's do::

    hparams, run_opts = load_recipe(sys.argv[1:])
    train_data, valid_data = dataio_prepare(hparams)
    brain = SomeBrain(modules=..., hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    fit(brain, train_data, valid_data, hparams)

and these functions hold what would otherwise be repeated in each: the
renaming of keys that earlier versions used, DDP's process group, dynamic
batches shared between DDP processes, the checkpointed loader that resumes an
epoch at its next unseen batch, and the per-update schedule sized to the run.
"""

from __future__ import annotations

import logging
from typing import Any

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.dataio.dataset import DynamicItemDataset

from speechbrain_gendistill.data.pipelines import (
    AudioCrop,
    duration_batch_sampler,
    train_dataloader,
    valid_dataloader,
)

logger = logging.getLogger(__name__)

# YAML keys of earlier versions -> their names now; a recipe given the old one on its command line takes it.
RENAMED_KEYS = {"student_source": "upstream_source", "freeze_student": "freeze_upstream"}
WHOLE_UTTERANCES = AudioCrop(max_duration=0, random_crop=False)


def rename_keys(overrides: str | dict | None) -> dict:
    """Command-line overrides with the keys of :data:`RENAMED_KEYS` under their current names.

    Example
    -------
    >>> rename_keys("student_source: /s\\nlr: 0.1")
    {'upstream_source': '/s', 'lr': 0.1}
    """
    values = yaml.safe_load(overrides) if isinstance(overrides, str) else dict(overrides or {})
    renamed = {}
    for key, value in (values or {}).items():
        if key in RENAMED_KEYS:
            logger.warning("the key %r is now called %r", key, RENAMED_KEYS[key])
        renamed[RENAMED_KEYS.get(key, key)] = value
    return renamed


def load_recipe(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parses a recipe's command line, joins DDP's process group, loads the YAML, creates the output folder.

    Returns the loaded hyperparameters (with ``hparams_file`` and ``overrides``
    added, as they were applied) and SpeechBrain's run options.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = rename_keys(overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    hparams["hparams_file"], hparams["overrides"] = hparams_file, overrides
    return hparams, run_opts


def make_loaders(
    hparams: dict[str, Any],
    train_data: DynamicItemDataset,
    valid_data: DynamicItemDataset,
    crop: AudioCrop = WHOLE_UTTERANCES,
) -> tuple[SaveableDataLoader, SaveableDataLoader]:
    """Training batches of at most ``max_batch_length`` seconds (shared out under DDP), and validation batches.

    The training loader joins the checkpoint, so a resumed run continues its
    epoch at the next unseen batch. Reads ``max_batch_length``,
    ``num_buckets``, ``sorting``, ``seed``, ``max_batch_ex`` (optional),
    ``num_workers``, ``valid_batch_size`` and ``checkpointer``; ``crop`` is
    what the batches' durations are measured after.
    """
    distributed = torch.distributed.is_initialized()
    batch_sampler = duration_batch_sampler(
        train_data,
        hparams["max_batch_length"],
        hparams["num_buckets"],
        hparams["sorting"],
        crop,
        hparams["seed"],
        hparams.get("max_batch_ex"),
    )
    train_loader = train_dataloader(
        train_data,
        batch_sampler,
        hparams["num_workers"],
        world_size=torch.distributed.get_world_size() if distributed else 1,
        rank=torch.distributed.get_rank() if distributed else 0,
        seed=hparams["seed"],
        shuffle_batches=hparams["sorting"] == "random",
    )
    valid_loader = valid_dataloader(valid_data, hparams["valid_batch_size"], hparams["num_workers"])
    hparams["checkpointer"].add_recoverable("train_loader", train_loader)
    return train_loader, valid_loader


def schedule_per_update(brain: sb.Brain, hparams: dict[str, Any], train_loader: SaveableDataLoader) -> None:
    """Builds ``hparams["lr_scheduler"]`` (warm-up then decay, called before each update) for the run's length.

    The run lasts ``number_of_epochs`` epochs, or ``total_steps`` updates if
    that comes first (optional key). The scheduler sets the rate of update k
    just before it runs: with one update more than the run's, the last one
    still gets a small, non-zero rate. It joins the checkpoint.
    """
    steps = hparams["number_of_epochs"] * len(train_loader) // brain.grad_accumulation_factor
    if hparams.get("total_steps"):
        steps = min(steps, hparams["total_steps"])
    brain.hparams.lr_scheduler = hparams["lr_scheduler"](
        num_warmup_steps=round(hparams["warmup_fraction"] * steps), num_training_steps=steps + 1
    )
    hparams["checkpointer"].add_recoverable("lr_scheduler", brain.hparams.lr_scheduler)


def fit(brain: sb.Brain, train_loader: SaveableDataLoader, valid_loader: SaveableDataLoader, hparams: dict) -> None:
    """``brain.fit`` over ``hparams["epoch_counter"]``, with the Brain setting the batch sampler's epoch."""
    brain.train_sampler = train_loader.batch_sampler
    brain.fit(hparams["epoch_counter"], train_loader, valid_loader)
