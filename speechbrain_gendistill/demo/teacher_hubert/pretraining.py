"""Pretrains a small WavLM the way HuBERT's first iteration is trained: masked prediction of MFCC k-means units.

The model is the demo's CTC teacher's small WavLM (``save_random_model``, the
same config and seed, HuBERT's mask settings), trained without labels: spans of
its CNN features are replaced by the learned mask embedding, and a HuBERT head
(:class:`HubertPredictionHead`) predicts, at masked frames only, the k-means
unit of each frame's MFCCs (:mod:`.units`).

The model is loaded through SpeechBrain's WavLM lobe, as the CTC teacher is,
but the lobe's ``forward`` takes no mask, so the Brain calls the lobe's HF
model itself, with the lobe's padding mask and explicit ``mask_time_indices``:
the loss must know which frames were masked.

The data is any folder (or CSV list) of audio, read through
:func:`~speechbrain_gendistill.data.audio_folder.audio_folder_manifests`: every
file is checked before training, and a share ``dev_fraction`` of the files,
chosen by a hash of their IDs, is the dev set. The first shipped run of this
recipe (the earlier ``speechbrain_gendistill.hubert_pretraining``) held out a
seeded random choice of 16 of its 251 files instead, so its dev set differs
from the one this code draws from the same folder (``dev_fraction: 0.064``
holds out as many files, not the same ones).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.dataio.dataset import DynamicItemDataset, add_dynamic_item, set_output_keys
from speechbrain.integrations.huggingface.huggingface import make_padding_masks
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from transformers import WavLMModel
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from speechbrain_gendistill.data import AudioCrop, load_manifest, sort_dataset
from speechbrain_gendistill.data.audio_folder import audio_folder_manifests
from speechbrain_gendistill.demo.teacher_hubert.card import INITIAL_DEV_FILE, UNITS_FILE, write_pack
from speechbrain_gendistill.demo.teacher_hubert.units import UnitLabeler, fit_or_load_units, manifest_digest
from speechbrain_gendistill.lobes.teacher import is_saved_model, save_hf_model
from speechbrain_gendistill.training import fit, load_recipe, make_loaders, schedule_per_update
from speechbrain_gendistill.training.recipe import WHOLE_UTTERANCES

logger = logging.getLogger(__name__)


@contextmanager
def _numpy_seed(key: str):
    """Seeds numpy's global generator (which transformers' mask sampler draws from) for a block, then restores it."""
    state = np.random.get_state()
    np.random.seed(int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little"))
    try:
        yield
    finally:
        np.random.set_state(state)


def span_mask(
    frame_lengths: torch.Tensor, num_frames: int, mask_prob: float, mask_length: int, min_masks: int, key: str
) -> torch.Tensor:
    """HuBERT's span masks (transformers' ``_compute_mask_indices``), never on padding, drawn from ``key``.

    About ``mask_prob * frames / mask_length`` span starts per utterance; spans
    may overlap, so somewhat fewer than ``mask_prob`` of the frames are masked.

    Example
    -------
    >>> mask = span_mask(torch.tensor([100, 60]), 100, 0.8, 10, 2, key="x")
    >>> again = span_mask(torch.tensor([100, 60]), 100, 0.8, 10, 2, key="x")
    >>> mask.shape, bool(mask[1, 60:].any()), torch.equal(mask, again)
    (torch.Size([2, 100]), False, True)
    """
    valid = torch.arange(num_frames) < frame_lengths.cpu()[:, None]
    with _numpy_seed(key):
        mask = _compute_mask_indices((len(frame_lengths), num_frames), mask_prob, mask_length, valid.long(), min_masks)
    return torch.from_numpy(mask) & valid


class HubertPredictionHead(torch.nn.Module):
    """HuBERT's head: projection to ``final_dim``, cosine similarity with learned unit embeddings over a temperature.

    Arguments
    ---------
    input_size : int
        Width of the encoder's last layer.
    final_dim : int
        Width of the projection and of the unit embeddings.
    num_units : int
        Number of units (classes).
    temperature : float
        The cosine similarities are divided by it.

    Example
    -------
    >>> head = HubertPredictionHead(input_size=16, final_dim=8, num_units=5)
    >>> head(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 5])
    """

    def __init__(self, input_size: int, final_dim: int, num_units: int, temperature: float = 0.1) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(input_size, final_dim)
        # Uniform in [0, 1), as fairseq initialises HuBERT's label embeddings.
        self.unit_embeddings = torch.nn.Parameter(torch.rand(num_units, final_dim))
        self.temperature = temperature

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, input_size]`` hidden states to ``[batch, frames, num_units]`` logits."""
        projected = F.normalize(self.projection(hidden), dim=-1)
        return projected @ F.normalize(self.unit_embeddings, dim=-1).T / self.temperature


@register_checkpoint_hooks
class TrainingClock:
    """Seconds spent in training and validation, summed over interrupted runs (kept in the checkpoints)."""

    def __init__(self) -> None:
        self.saved, self.since = 0.0, time.monotonic()

    def seconds(self) -> float:
        return self.saved + time.monotonic() - self.since

    @mark_as_saver
    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"seconds": self.seconds()}))

    @mark_as_loader
    def load(self, path: str | Path, end_of_epoch: bool = False) -> None:
        self.saved, self.since = json.loads(Path(path).read_text())["seconds"], time.monotonic()


class HubertPretrainingBrain(sb.Brain):
    """Masked prediction of units with an HF WavLM inside SpeechBrain's lobe.

    Modules: ``teacher`` (SpeechBrain's WavLM lobe, ``freeze=False``,
    ``apply_spec_augment=True`` so that HF applies the given masks) and
    ``head`` (:class:`HubertPredictionHead`). Hyperparameters read: ``seed``,
    ``mask_prob``, ``mask_length``, ``mask_min_spans``, ``train_crop``,
    ``lr_scheduler`` (called before each update), ``train_logger``; the recipe sets ``clock``.
    Validation logs and keeps the checkpoint of best dev loss.
    """

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        lobe = self.modules.teacher
        frame_lengths = lobe.model._get_feat_extract_output_lengths(torch.round(wav_lens * wavs.shape[1]).long())
        num_frames = int(lobe.model._get_feat_extract_output_lengths(torch.tensor(wavs.shape[1])))
        # Training masks depend on where the batch is in the run (a resumed run draws the same ones);
        # evaluation masks on the utterances only, so dev figures compare across epochs.
        hparams = self.hparams
        ids = ",".join(batch.id)
        key = f"{hparams.seed}/{self.epoch}/{self.step}" if stage == sb.Stage.TRAIN else f"{hparams.seed}/eval/{ids}"
        mask = span_mask(frame_lengths, num_frames, hparams.mask_prob, hparams.mask_length, hparams.mask_min_spans, key)
        mask = mask.to(self.device)
        if lobe.normalize_wav:  # what the lobe's own forward does
            wavs = F.layer_norm(wavs, wavs.shape[1:])
        hidden = lobe.model(wavs, attention_mask=make_padding_masks(wavs, wav_lens), mask_time_indices=mask)
        return self.modules.head(hidden.last_hidden_state), mask

    def compute_objectives(self, predictions, batch, stage):
        logits, mask = predictions
        units, _ = batch.units
        if units.shape[1] != logits.shape[1]:
            raise ValueError(f"{units.shape[1]} unit labels for {logits.shape[1]} model frames")
        # Masked frames only (HuBERT base weighs unmasked frames 0); the mask never covers padding.
        logits, units = logits[mask].float(), units.to(self.device)[mask]
        with torch.no_grad():
            self.correct += int((logits.argmax(-1) == units).sum())
            self.unit_counts += torch.bincount(units.cpu(), minlength=self.unit_counts.numel())
        return F.cross_entropy(logits, units)

    def on_fit_batch_start(self, batch, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        self.epoch = epoch
        if stage == sb.Stage.TRAIN:
            self.hparams.train_crop.set_epoch(epoch)
        self.correct, self.unit_counts = 0, torch.zeros(self.modules.head.unit_embeddings.shape[0], dtype=torch.long)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        masked = max(1, int(self.unit_counts.sum()))
        stats = {"loss": stage_loss, "acc": 100.0 * self.correct / masked}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        # What always answering the dev set's most frequent unit would score.
        stats["majority acc"] = 100.0 * int(self.unit_counts.max()) / masked
        if stage == sb.Stage.TEST:
            self.test_stats = stats
            return
        meta = {
            "epoch": epoch,
            "updates": self.optimizer_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(self.hparams.clock.seconds()),
            "threads": torch.get_num_threads(),
            **{f"train {name}": value for name, value in self.train_stats.items()},
            **stats,
        }
        self.hparams.train_logger.log_stats(
            stats_meta={name: meta[name] for name in ("epoch", "lr", "updates", "seconds")},
            train_stats=self.train_stats,
            valid_stats=stats,
        )
        self.checkpointer.save_and_keep_only(meta=meta, min_keys=["loss"])


def unit_dataset(
    csv_path: str | Path, data_folder: str | Path, crop: AudioCrop, labeler: UnitLabeler
) -> DynamicItemDataset:
    """A manifest's dataset giving ``id``, ``sig`` (the crop) and ``units`` (the crop's labels).

    The units are computed from ``sig`` itself, so whichever crop is drawn, its labels go with it.
    """
    dataset = load_manifest(csv_path, data_folder, crop)
    add_dynamic_item([dataset], labeler, takes=["sig"], provides="units")
    set_output_keys([dataset], ["id", "sig", "units"])
    return dataset


def is_trained(folder: str | Path) -> bool:
    """True when ``folder`` holds the trained encoder and, beside it, its unit centroids."""
    return is_saved_model(folder) and (Path(folder) / UNITS_FILE).is_file()


def train_hubert(argv: list[str]) -> Path:
    """The whole recipe; returns the trained folder. A finished run is not redone, an interrupted one resumes.

    With ``pack_folder`` set, the trained encoder is also packed there with its model card.
    """
    hparams, run_opts = load_recipe(argv)
    if hparams.get("torch_threads"):
        torch.set_num_threads(hparams["torch_threads"])
    trained_folder = Path(hparams["trained_teacher_folder"])
    if is_trained(trained_folder):
        logger.info("the trained teacher in %s is reused", trained_folder)
    else:
        _train(hparams, run_opts)
    if hparams.get("pack_folder"):
        folder = write_pack(hparams)
        logger.info("packed the trained teacher into %s", folder)
    return trained_folder


def _check_frames(features, model: WavLMModel) -> None:
    """The MFCC grid must be the model's frame grid, or labels and frames drift apart."""
    for samples in (400, 16000, 16321, 40123):
        expected = int(model._get_feat_extract_output_lengths(torch.tensor(samples)))
        if features(torch.zeros(samples) + torch.randn(samples) * 1e-3).shape[0] != expected:
            raise ValueError(f"MFCC options {features.options} do not give the model's {expected} frames")


def _train(hparams: dict, run_opts: dict) -> None:
    """Manifests, units, data, the initial weights' dev figures, training; saves the epoch with the best dev loss."""
    output_folder, data_folder = Path(hparams["output_folder"]), hparams["data_folder"]
    manifests = audio_folder_manifests(hparams)  # every file checked before anything is fitted or trained
    features, model = hparams["mfcc"], hparams["teacher"].model
    _check_frames(features, model)
    whole = load_manifest(manifests["train"], data_folder, WHOLE_UTTERANCES)
    centroids = fit_or_load_units(
        output_folder / UNITS_FILE,
        (item["sig"] for item in whole),
        features,
        hparams["num_units"],
        iterations=hparams["kmeans_iterations"],
        seed=hparams["seed"],
        max_points=hparams["kmeans_max_frames"],
        fitted_on=manifest_digest(manifests["train"]),
    )
    labeler = UnitLabeler(centroids, features)
    train_data = unit_dataset(manifests["train"], data_folder, hparams["train_crop"], labeler)
    valid_data = unit_dataset(manifests["valid"], data_folder, hparams["valid_crop"], labeler)
    train_loader, valid_loader = make_loaders(
        hparams, sort_dataset(train_data, hparams["sorting"]), valid_data, crop=hparams["train_crop"]
    )
    checkpointer = hparams["checkpointer"]
    brain = HubertPretrainingBrain(hparams["modules"], hparams["opt_class"], hparams, run_opts, checkpointer)

    initial_record = output_folder / INITIAL_DEV_FILE
    if not initial_record.is_file() and checkpointer.find_checkpoint() is None:
        # The untrained weights on the same dev set and masks, for contrast (before any update).
        brain.evaluate(valid_loader)
        initial_record.write_text(json.dumps(brain.test_stats, indent=2) + "\n")

    schedule_per_update(brain, hparams, train_loader)  # warm-up and linear decay over the whole run
    brain.hparams.clock = TrainingClock()
    checkpointer.add_recoverable("clock", brain.hparams.clock)
    fit(brain, train_loader, valid_loader, hparams)

    checkpointer.recover_if_possible(min_key="loss")  # the epoch with the best dev loss is the teacher
    # Saved as a hub HuBERT is: the config's mask_time_prob is the fine-tuning SpecAugment value, not the
    # pretraining one (the pretraining masks were explicit); the weights do not depend on it.
    model.config.mask_time_prob = hparams["saved_mask_time_prob"]
    trained_folder = save_hf_model(model, hparams["trained_teacher_folder"])
    shutil.copyfile(output_folder / UNITS_FILE, trained_folder / UNITS_FILE)
    logger.info("saved the trained teacher to %s", trained_folder)
