"""What a distillation recipe builds its Brain from: the student for its teacher (checked), the data, the model card.

Every check here runs before any data is read, so a bad configuration fails
in seconds, not after an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import Checkpoint

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.data.librispeech import librispeech_manifests
from speechbrain_gendistill.data.pipelines import load_manifest, sort_dataset, total_hours
from speechbrain_gendistill.lobes.from_teacher import teacher_encoder_fits
from speechbrain_gendistill.lobes.students import DistillationStudent
from speechbrain_gendistill.lobes.teacher import SSLTeacher
from speechbrain_gendistill.training.distillation import HISTORY_MODES

logger = logging.getLogger(__name__)


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
