"""The distillation Brain, and the checks and pieces a distillation recipe builds it from.

:class:`DistillBrain` trains a student to produce a frozen teacher's layers
with DistilHuBERT's loss. The teacher runs in eval mode under no_grad and
belongs to no checkpoint. Each training batch reseeds the random generators
from (seed, process, epoch, batch), and the batch order and crops depend on
the epoch only, so a run resumed from a mid-epoch checkpoint replays exactly
what an uninterrupted run does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import Checkpoint
from speechbrain.utils.distributed import if_main_process
from torch import nn

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.data.librispeech import librispeech_manifests
from speechbrain_gendistill.data.pipelines import load_manifest, sort_dataset, total_hours
from speechbrain_gendistill.lobes.from_teacher import teacher_encoder_fits
from speechbrain_gendistill.lobes.students import DistillationStudent
from speechbrain_gendistill.lobes.teacher import SSLTeacher

logger = logging.getLogger(__name__)

HISTORY_MODES = ("teacher_forcing", "free_running", "scheduled", "free_running_detached")


def check_history_mode(history_mode: str | None) -> str | None:
    """Validates ``history_mode`` (None: a student that takes no history, the baseline).

    Example
    -------
    >>> check_history_mode("scheduled")
    'scheduled'
    >>> check_history_mode("greedy")
    Traceback (most recent call last):
    ...
    ValueError: history_mode: 'greedy' is not one of teacher_forcing, free_running, scheduled, free_running_detached
    """
    if history_mode is not None and history_mode not in HISTORY_MODES:
        raise ValueError(f"history_mode: {history_mode!r} is not one of {', '.join(HISTORY_MODES)}")
    return history_mode


def check_init_from_teacher(init_cnn_from_teacher: bool, init_from_teacher: bool) -> None:
    """``init_from_teacher`` copies the teacher's CNN too, so it needs the teacher's CNN layout.

    Example
    -------
    >>> check_init_from_teacher(init_cnn_from_teacher=False, init_from_teacher=True)
    Traceback (most recent call last):
    ...
    ValueError: init_from_teacher: True starts the whole student from the teacher, its CNN included: ...
    """
    if init_from_teacher and not init_cnn_from_teacher:
        raise ValueError(
            "init_from_teacher: True starts the whole student from the teacher, its CNN included: it needs "
            "init_cnn_from_teacher: True (the teacher's CNN layout), not False"
        )


def build_student(
    model_hparams: str | Path,
    teacher: SSLTeacher,
    init_cnn_from_teacher: bool = True,
    overrides: dict[str, Any] | None = None,
    init_from_teacher: bool = False,
) -> DistillationStudent:
    """Builds the student of a model file in ``hparams/models/`` for ``teacher``.

    The teacher gives the target width and layers; with
    ``init_cnn_from_teacher`` the student's CNN takes the teacher's layout and
    weights (so both yield the same frames). With ``init_from_teacher`` (which
    needs ``init_cnn_from_teacher``) every part of the student with a
    same-shaped counterpart in the teacher starts from it: the CNN and feature
    projection, the positional convolution and, for DistilHuBERT, the encoder
    LayerNorm and the teacher's first layers (s3prl's initialisation; see
    :meth:`DistillationStudent.load_teacher`). ``overrides`` sets any other
    top-level key of the model file (e.g. a smaller ``d_model``). What was
    copied is logged and kept in ``student.initialised_from_teacher``.
    """
    check_init_from_teacher(init_cnn_from_teacher, init_from_teacher)
    model_hparams = Path(model_hparams)
    if not model_hparams.is_file():
        raise FileNotFoundError(f"student_hparams: {model_hparams} not found")
    values: dict[str, Any] = dict(overrides or {})
    values.update(target_dim=teacher.hidden_size, target_layers=list(teacher.target_layers))
    if init_cnn_from_teacher:
        values.update(conv_layers=[list(layer) for layer in teacher.conv_layers], extractor_norm=teacher.extractor_norm)
    with open(model_hparams, encoding="utf-8") as handle:
        try:
            student = load_hyperpyyaml(handle, values)["student"]
        except KeyError as error:
            raise ValueError(f"student_hparams {model_hparams}: {error} (no such key, or no `student`)") from error
    copied: list[str] = []
    if init_from_teacher:
        encoder = teacher_encoder_fits(student.config.get("num_heads"), teacher)
        copied = student.load_teacher(teacher.model_state(), encoder=encoder)
    elif init_cnn_from_teacher:
        copied = student.load_teacher_cnn(teacher.model_state())
    state = student.state_dict()
    student.initialised_from_teacher = {
        "tensors": len(copied),
        "parameters": sum(state[name].numel() for name in copied),
    }
    logger.info(
        "initialised %(tensors)d student tensors (%(parameters)d parameters) from the teacher",
        student.initialised_from_teacher,
    )
    return student


@torch.no_grad()
def check_frame_alignment(student: DistillationStudent, teacher: SSLTeacher, sample_rate: int = SAMPLE_RATE) -> int:
    """Fails unless student and teacher yield as many frames for the same audio; returns that count.

    The length (1 s plus 123 samples) is deliberately not a multiple of the hop.
    """
    wavs = torch.zeros(1, sample_rate + 123, device=next(student.parameters()).device)
    teacher_frames = teacher(wavs.to(next(teacher.parameters()).device)).shape[2]
    student_frames = student.frame_mask(wavs).shape[1]
    if teacher_frames != student_frames:
        raise ValueError(
            f"the student's CNN gives {student_frames} frames for {wavs.shape[1]} samples where teacher "
            f"{teacher.source!r} gives {teacher_frames}: set init_cnn_from_teacher: True, or give the student "
            f"the teacher's conv_layers {teacher.conv_layers}"
        )
    return student_frames


class StudentForDDP(nn.Module):
    """A student whose ``forward`` is its ``predict_targets``.

    DDP synchronises gradients of what runs through ``forward`` only, so the
    Brain trains this wrapper; the checkpoint and the export hold the student.

    Example
    -------
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1, num_heads=4,
    ...     d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> StudentForDDP(student)(torch.randn(2, 1600)).shape
    torch.Size([2, 2, 159, 24])
    """

    def __init__(self, student: DistillationStudent) -> None:
        super().__init__()
        self.student = student

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
        detach_history: bool = False,
    ) -> torch.Tensor:
        return self.student.predict_targets(wavs, wav_lens, teacher_history, teacher_history_prob, detach_history)


def batch_seed(*parts: int) -> int:
    """A 63-bit seed drawn from integers (seed, process, epoch, batch).

    Example
    -------
    >>> batch_seed(1, 0, 2, 5) == batch_seed(1, 0, 2, 5), batch_seed(1, 0, 2, 5) == batch_seed(1, 1, 2, 5)
    (True, False)
    """
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@sb.utils.checkpoints.register_checkpoint_hooks
class LayerStatistics:
    """Running means of each target layer's L1 and cosine over a stage.

    Checkpointed with the training state, so the figures of an epoch resumed
    in its middle cover the whole epoch.

    Example
    -------
    >>> stats = LayerStatistics([4, 8])
    >>> stats.update({"l1": torch.tensor([1.0, 2.0]), "cosine": torch.tensor([0.25, 0.5])})
    >>> stats.update({"l1": torch.tensor([3.0, 2.0]), "cosine": torch.tensor([0.75, 0.5])})
    >>> stats.means()
    {'l1_layer4': 2.0, 'l1_layer8': 2.0, 'cosine_layer4': 0.5, 'cosine_layer8': 0.5}
    """

    NAMES = ("l1", "cosine")

    def __init__(self, layers: list[int]) -> None:
        self.layers = list(layers)
        self.reset()

    def reset(self) -> None:
        self.sums = {name: [0.0] * len(self.layers) for name in self.NAMES}
        self.batches = 0

    def update(self, values: dict[str, torch.Tensor]) -> None:
        for name in self.NAMES:
            self.sums[name] = [
                total + value for total, value in zip(self.sums[name], values[name].tolist(), strict=True)
            ]
        self.batches += 1

    def means(self) -> dict[str, float]:
        batches = max(1, self.batches)
        return {
            f"{name}_layer{layer}": total / batches
            for name in self.NAMES
            for layer, total in zip(self.layers, self.sums[name], strict=True)
        }

    @sb.utils.checkpoints.mark_as_saver
    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"sums": self.sums, "batches": self.batches}))

    @sb.utils.checkpoints.mark_as_loader
    def load(self, path: str | Path, end_of_epoch: bool) -> None:
        state = json.loads(Path(path).read_text())
        self.sums, self.batches = state["sums"], state["batches"]


class DistillBrain(sb.Brain):
    """Distils a frozen teacher (module ``teacher``) into a student (module ``student``).

    Modules: ``teacher`` (an :class:`SSLTeacher`) and ``student`` (a
    :class:`StudentForDDP`). Hyperparameters read: ``loss``
    (DistillationLoss), ``seed``, ``history_mode`` (``teacher_forcing``,
    ``free_running``, ``scheduled`` or ``free_running_detached``: free running
    without gradients through the student's own layers read as history;
    absent for a student without history, the baseline), ``scheduled_min_teacher_prob`` and
    ``scheduled_anneal_steps`` (scheduled sampling: the probability of the
    teacher's history falls linearly from 1 to the minimum over that many
    optimizer steps), ``lr_scheduler`` (called before each optimizer step),
    ``train_crop`` (its epoch is set at each epoch's start), ``epoch_counter``,
    ``train_logger``, and ``tensorboard_logger`` (a class to build, on the main
    process, when ``use_tensorboard`` is true).

    Validation always runs the student free (its own history), as at inference.
    """

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        # Dropout and scheduled sampling draw from generators that depend on
        # where the batch is in the run only, not on what ran before.
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        torch.manual_seed(batch_seed(self.hparams.seed, rank, self.epoch, self.step))
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def teacher_history_prob(self) -> float:
        """Probability that a training step reads the teacher's history."""
        mode = getattr(self.hparams, "history_mode", None)
        if mode == "teacher_forcing":
            return 1.0
        if mode == "scheduled":
            floor = self.hparams.scheduled_min_teacher_prob
            progress = min(1.0, self.optimizer_step / max(1, self.hparams.scheduled_anneal_steps))
            return 1.0 - (1.0 - floor) * progress
        return 0.0

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        targets = self.modules.teacher(wavs, wav_lens)
        training = stage == sb.Stage.TRAIN
        teacher_history_prob = self.teacher_history_prob() if training else 0.0
        history = targets if teacher_history_prob > 0.0 else None
        detach = training and getattr(self.hparams, "history_mode", None) == "free_running_detached"
        predictions = self.modules.student(wavs, wav_lens, history, teacher_history_prob, detach)
        frame_mask = self.hparams.student.frame_mask(wavs, wav_lens)
        return predictions, targets, frame_mask

    def compute_objectives(self, predictions, batch, stage):
        predictions, targets, frame_mask = predictions
        out = self.hparams.loss(predictions.float(), targets.float(), frame_mask)
        self.layer_stats[stage].update(out)
        return out["loss"]

    def on_fit_start(self):
        layers = self.hparams.teacher.target_layers
        self.layer_stats = {stage: LayerStatistics(layers) for stage in sb.Stage}
        # Like the Brain's running train loss, the train figures resume with the epoch.
        self.checkpointer.add_recoverable("train_layer_stats", self.layer_stats[sb.Stage.TRAIN])
        super().on_fit_start()

    def on_stage_start(self, stage, epoch=None):
        self.epoch = epoch
        if stage == sb.Stage.TRAIN:
            self.hparams.train_crop.set_epoch(epoch)
        else:
            self.layer_stats[stage].reset()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss, **self.layer_stats[stage].means()}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            self.layer_stats[stage].reset()
            return
        if stage != sb.Stage.VALID:
            return
        epoch_counter = self.hparams.epoch_counter
        if self._optimizer_step_limit_exceeded:
            # The step budget is spent: the run is finished, and a rerun must not train again.
            epoch_counter.current = epoch_counter.limit
        meta = {"valid_loss": stats["loss"], "optimizer_steps": self.optimizer_step, "epoch": epoch}
        meta.update({f"valid_{name}": value for name, value in stats.items() if name != "loss"})
        self.checkpointer.save_and_keep_only(meta=meta, min_keys=["valid_loss"])
        stats_meta = {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "optimizer_steps": self.optimizer_step,
        }
        self.hparams.train_logger.log_stats(stats_meta=stats_meta, train_stats=self.train_stats, valid_stats=stats)
        if getattr(self.hparams, "use_tensorboard", False) and if_main_process():
            if getattr(self, "tensorboard", None) is None:
                self.tensorboard = self.hparams.tensorboard_logger()
            self.tensorboard.log_stats(stats_meta=stats_meta, train_stats=self.train_stats, valid_stats=stats)


def build_distillation(hparams: dict) -> DistillationStudent:
    """Builds and checks the student of a distillation recipe's ``hparams`` for its teacher; returns it.

    The student's model file (``student_hparams``) is read relative to the
    recipe's YAML. The history mode, the initialisation keys, the student's
    arguments and the frame alignment of student and teacher are checked
    before any data is read (the first three together: one error names every
    fault), and the student joins the checkpoint.
    """
    teacher = hparams["teacher"]
    model_hparams = Path(hparams["hparams_file"]).parent / hparams["student_hparams"]
    init_cnn, init_all = hparams["init_cnn_from_teacher"], hparams.get("init_from_teacher", False)
    problems = []
    for check in (
        lambda: check_history_mode(hparams.get("history_mode")),
        lambda: check_init_from_teacher(init_cnn, init_all),
    ):
        try:
            check()
        except ValueError as error:
            problems.append(str(error))
    try:  # the student's own arguments, whatever the keys above
        student = build_student(model_hparams, teacher, init_cnn, hparams["student_overrides"], init_all and init_cnn)
    except ValueError as error:
        problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    check_frame_alignment(student, teacher)
    hparams["checkpointer"].add_recoverable("student", student)
    hparams["student"] = student
    return student


def dataio_prepare(
    hparams: dict, manifests: Callable[[dict], dict[str, Path]] = librispeech_manifests
) -> tuple[DynamicItemDataset, DynamicItemDataset]:
    """The training set (randomly cropped, in the YAML's ``sorting``) and the dev set (centre-cropped).

    ``manifests`` prepares and checks the data of ``hparams`` and returns its
    ``train`` and ``valid`` CSV files: LibriSpeech's layout by default, or
    :func:`~speechbrain_gendistill.data.audio_folder.audio_folder_manifests`.
    """
    manifests = manifests(hparams)
    train_data = load_manifest(manifests["train"], hparams["data_folder"], hparams["train_crop"])
    valid_data = load_manifest(manifests["valid"], hparams["data_folder"], hparams["valid_crop"])
    return sort_dataset(train_data, hparams["sorting"]), valid_data


def distillation_card(hparams: dict, checkpoint: Checkpoint | None) -> dict[str, Any]:
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
        "initialised from the teacher": "{tensors} tensors, {parameters} parameters".format(
            **hparams["student"].initialised_from_teacher
        ),
        "train data": ", ".join(hparams["train_splits"]) if "train_splits" in hparams else str(hparams["data_folder"]),
        "train hours": round(hours, 3) if hours is not None else "unknown",
        "dev data": (
            ", ".join(hparams["dev_splits"])
            if "dev_splits" in hparams
            else f"{hparams['dev_fraction']:.0%} of the files"
        ),
        "optimizer steps": meta.get("optimizer_steps"),
        "epochs": meta.get("epoch"),
        "dev loss": meta.get("valid_loss"),
    }
    for layer in hparams["teacher"].target_layers:
        card[f"dev L1, layer {layer}"] = meta.get(f"valid_l1_layer{layer}")
        card[f"dev cosine, layer {layer}"] = meta.get(f"valid_cosine_layer{layer}")
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in card.items()}
