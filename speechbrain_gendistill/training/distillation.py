"""The distillation Brain: a student trained to produce a frozen teacher's layers.

:class:`DistillBrain` trains a student with DistilHuBERT's loss. The teacher
runs in eval mode under no_grad and belongs to no checkpoint. Each training
batch reseeds the random generators from (seed, process, epoch, batch), and
the batch order and crops depend on the epoch only, so a run resumed from a
mid-epoch checkpoint replays exactly what an uninterrupted run does. What the
recipe builds it from (student, data, model card) is in
:mod:`~speechbrain_gendistill.training.distillation_recipe`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from torch import nn

from speechbrain_gendistill.lobes.students import DistillationStudent

logger = logging.getLogger(__name__)

HISTORY_MODES = ("teacher_forcing", "free_running", "scheduled", "free_running_detached")


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
