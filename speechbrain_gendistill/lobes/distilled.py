"""An exported student as a SpeechBrain lobe: :class:`DistilledSSL`, and the loading behind it.

An export names its student class and constructor arguments in ``config.json``
(see :mod:`speechbrain_gendistill.core.export_format`); this module maps that
description to a student and back (:func:`student_config`), and loads the
weights from safetensors only, never from a pickle. An export on the hub is
fetched through the HuggingFace cache, its JSON and safetensors files only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from speechbrain.utils.checkpoints import mark_as_transfer, register_checkpoint_hooks
from torch import nn

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.export_format import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    WEIGHTS_FILE,
    check_export_config,
    read_export_config,
    write_atomically,
)
from speechbrain_gendistill.core.frames import chunk_windows, frame_hop, receptive_field
from speechbrain_gendistill.core.hub import resolve_source
from speechbrain_gendistill.lobes.students import DistilHuBERTStudent, DistillationStudent, GenDistillStudent

STUDENT_CLASSES: dict[str, type[DistillationStudent]] = {
    "GenDistillStudent": GenDistillStudent,
    "DistilHuBERTStudent": DistilHuBERTStudent,
}
# All that is fetched of an exported student on the hub: data, never code or pickles.
STUDENT_HUB_FILES = ("*.json", "*.safetensors")
# Constructor arguments that say how a student is used, not what it is: no export's config records them.
USAGE_ARGUMENTS = ("output_all_hiddens", "max_layers")


def student_config(student: DistillationStudent) -> dict[str, Any]:
    """What an export's ``config.json`` holds for ``student``: its class and constructor arguments, as JSON.

    Example
    -------
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> config = student_config(student)
    >>> config["class"], config["arguments"]["conv_layers"]
    ('GenDistillStudent', [[16, 10, 5], [16, 3, 2]])
    """
    class_name = type(student).__name__
    if class_name not in STUDENT_CLASSES:
        raise TypeError(f"cannot export a {class_name}; supported: {sorted(STUDENT_CLASSES)}")
    arguments = {name: value for name, value in student.config.items() if name not in USAGE_ARGUMENTS}
    if arguments.get("conv_layers") is not None:
        arguments["conv_layers"] = [list(layer) for layer in arguments["conv_layers"]]
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "class": class_name, "arguments": arguments}


def inference_weights(student: DistillationStudent) -> dict[str, torch.Tensor]:
    """The weights an export keeps: everything but what only distillation uses (the baseline's heads), on the CPU."""
    return {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in student.state_dict().items()
        if not name.startswith(student.DISTILLATION_ONLY)
    }


def build_exported_student(
    config: dict[str, Any], where: str, output_all_hiddens: bool = False, max_layers: int | None = None
) -> DistillationStudent:
    """The student an export's config describes, with fresh weights (and without the baseline's heads)."""
    config = check_export_config(config, where)
    usage = {"output_all_hiddens": output_all_hiddens, "max_layers": max_layers}
    try:
        student = STUDENT_CLASSES[config["class"]](**config["arguments"], **usage)
    except TypeError as error:
        raise ValueError(f"{where}: arguments do not build a {config['class']}: {error}") from error
    if isinstance(student, DistilHuBERTStudent):
        student.drop_prediction_heads()
    return student


def load_safetensors_into(student: DistillationStudent, path: str | Path) -> None:
    """Loads every weight of ``student`` from the safetensors file ``path``: no pickle, no missing or extra weight."""
    try:
        weights = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a safetensors file ({error}); refusing to load it any other way") from error
    missing, unexpected = student.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {type(student).__name__}: missing {missing}, unexpected {unexpected}")


def load_student(
    folder: str | Path, output_all_hiddens: bool = False, max_layers: int | None = None
) -> DistillationStudent:
    """Rebuilds an exported student from its JSON config and safetensors weights.

    Arguments
    ---------
    folder : str or Path
        A folder written by :func:`speechbrain_gendistill.export.export_student`,
        or the hub id of one (fetched into the HuggingFace cache, JSON and
        safetensors files only; offline, read from it).
    output_all_hiddens : bool
        Passed to the student (``forward`` returns every layer).
    max_layers : int, optional
        Passed to the student: an early exit after that many layers.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> student = DistilHuBERTStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> loaded = load_student(export_student(student, tempfile.mkdtemp())).eval()
    >>> wavs = torch.randn(1, 1600)
    >>> torch.equal(loaded(wavs), student.eval()(wavs)), loaded.prediction_heads is None
    (True, True)
    """
    folder = resolve_source(folder, files=STUDENT_HUB_FILES, required=(CONFIG_FILE, WEIGHTS_FILE))
    config = read_export_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ValueError(f"{folder} is not an exported student: {WEIGHTS_FILE} is missing")
    student = build_exported_student(config, str(folder / CONFIG_FILE), output_all_hiddens, max_layers)
    load_safetensors_into(student, weights_path)
    return student


@register_checkpoint_hooks
class DistilledSSL(nn.Module):
    """An exported student as a SpeechBrain SSL lobe, a drop-in for the HF ones.

    It takes the keyword arguments of ``speechbrain.integrations.huggingface``'s
    Wav2Vec2 / HuBERT / WavLM lobes, so swapping the class in a recipe's YAML
    is the only change: ``forward(wavs, wav_lens)`` gives [B, T, D], or every
    generated layer [K, B, T, D] with ``output_all_hiddens=True``.

    Arguments
    ---------
    source : str, optional
        Folder of an exported student, or its hub id (fetched into the
        HuggingFace cache, JSON and safetensors only; read from the cache
        alone with ``HF_HUB_OFFLINE=1``).
    save_path : str, optional
        Accepted for YAML compatibility with the HF lobes; unused (hub
        downloads go to the HuggingFace cache).
    output_norm : bool
        Apply a LayerNorm (no affine parameters) over the features of each frame.
    freeze : bool
        Frozen feature extractor (eval mode, no gradients) or fine-tuned.
    freeze_feature_extractor : bool
        When fine-tuning, keep the waveform CNN frozen.
    output_all_hiddens : bool
        Return all layers stacked on a new first axis.
    student_config : dict, optional
        Instead of ``source``: the contents of an export's ``config.json``. The
        weights then come from a SpeechBrain ``Pretrainer``, which loads them
        from a safetensors file (see :meth:`load_weights`): this is how an
        exported ASR model carries its encoder, so that its folder can be moved
        or shared.
    max_layers : int, optional
        An early exit: GenDistiller generates its first ``max_layers`` layers
        only (``num_layers`` is then ``max_layers``); DistilHuBERT runs its first
        ``max_layers`` encoder layers (``num_layers``: ``max_layers + 1``, the
        encoder input included).
    chunk_seconds : float, optional
        Long audio: run each item in windows of at most this many seconds
        (:func:`~speechbrain_gendistill.core.frames.chunk_windows`), one at a
        time, and join their frames, so that memory follows the window's
        length, not the audio's (20 s is a good value). The result has exactly
        the frames of the whole item. Every window is normalised with the
        whole item's first-layer CNN statistics (computed first, block by
        block), so the CNN gives the frames of the whole; the attention and
        the positional convolution see the window only, so the features differ
        a little from the whole's: each window keeps only the frames about
        ``overlap_seconds / 2`` or more from its edges. Measured on 30-60 s of
        speech: mean frame cosine with the whole 0.9993-0.9999, lowest 0.995
        or more (``tests/test_long_audio.py``). Frames past an item's end
        (padding of a batch) are zeros. ``None``: the whole input at once.
    overlap_seconds : float
        How much consecutive windows share, with ``chunk_seconds``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> encoder_source = str(export_student(student, tempfile.mkdtemp()))
    >>> encoder = DistilledSSL(source=encoder_source, freeze=True)
    >>> encoder(torch.randn(2, 1600), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 159, 24])
    >>> encoder.output_dim, encoder.num_layers
    (24, 2)
    >>> first = DistilledSSL(source=encoder_source, max_layers=1, output_all_hiddens=True)
    >>> first(torch.randn(2, 1600)).shape, first.num_layers
    (torch.Size([1, 2, 159, 24]), 1)
    >>> long = DistilledSSL(source=encoder_source, chunk_seconds=0.25, overlap_seconds=0.05)
    >>> wav = torch.randn(1, 16000)  # 1 s, in windows of 0.25 s
    >>> long(wav).shape == encoder(wav).shape
    True
    """

    def __init__(
        self,
        source: str | None = None,
        save_path: str | None = None,
        output_norm: bool = False,
        freeze: bool = True,
        freeze_feature_extractor: bool = False,
        output_all_hiddens: bool = False,
        student_config: dict[str, Any] | None = None,
        max_layers: int | None = None,
        chunk_seconds: float | None = None,
        overlap_seconds: float = 2.0,
    ) -> None:
        super().__init__()
        if (source is None) == (student_config is None):
            raise ValueError("DistilledSSL: give either source (a student's folder or hub id) or student_config")
        if source is not None:
            self.model = load_student(source, output_all_hiddens=output_all_hiddens, max_layers=max_layers)
        else:
            self.model = build_exported_student(
                student_config, "DistilledSSL student_config", output_all_hiddens, max_layers
            )
        self.freeze = freeze
        self.output_norm = output_norm
        self.output_all_hiddens = output_all_hiddens
        config = self.model.config
        if isinstance(self.model, GenDistillStudent):
            self.output_dim, self.num_layers = config["target_dim"], max_layers or config["num_target_layers"]
        else:
            self.output_dim, self.num_layers = config["d_model"], (max_layers or config["num_layers"]) + 1
        frozen = self.model if freeze else (self.model.frontend.feature_extractor if freeze_feature_extractor else None)
        if frozen is not None:
            for parameter in frozen.parameters():
                parameter.requires_grad = False
        if freeze:
            self.model.eval()
        conv_layers = self.model.frontend.conv_layers
        self.field, self.hop = receptive_field(conv_layers), frame_hop(conv_layers)
        self.chunk_samples = None if chunk_seconds is None else round(chunk_seconds * SAMPLE_RATE)
        self.overlap_samples = round(overlap_seconds * SAMPLE_RATE)
        if self.chunk_samples is not None:  # a bad pair is an error now, not at the first long input
            chunk_windows(self.field, self.field, self.hop, self.chunk_samples, self.overlap_samples)

    @mark_as_transfer
    def load_weights(self, path: str | Path) -> None:
        """The ``Pretrainer``'s hook: the student's weights from a safetensors file, all of them, never a pickle."""
        load_safetensors_into(self.model, path)

    def save_weights(self, path: str | Path) -> None:
        """Writes the student's current weights to ``path`` in the format :meth:`load_weights` reads."""
        weights = inference_weights(self.model)
        write_atomically(Path(path), lambda temporary: save_file(weights, temporary))

    def train(self, mode: bool = True) -> DistilledSSL:
        """A frozen student stays in eval mode (no dropout) whatever the Brain asks."""
        super().train(mode and not self.freeze)
        return self

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            out = self.model(wavs, wav_lens) if self.chunk_samples is None else self._chunked(wavs, wav_lens)
        if self.output_norm:
            out = F.layer_norm(out, out.shape[-1:])
        return out

    def _chunked(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None) -> torch.Tensor:
        """The student's output, each item window by window (see ``chunk_seconds``)."""
        lengths = self.model.frontend.sample_lengths(wavs, wav_lens).tolist()  # refuses items too short for a frame
        total = (wavs.shape[1] - self.field) // self.hop + 1
        items = []
        extractor = self.model.frontend.feature_extractor
        for wav, length in zip(wavs, lengths, strict=True):
            # Every window normalised as the whole item is: the CNN's frames are then those of the whole.
            statistics = extractor.statistics_from_moments(*extractor.patch_moments(wav[:length], self.chunk_samples))
            with extractor.fixed_statistics(statistics):
                pieces = [
                    # A copy of the kept frames: the window's whole output is freed before the next window runs.
                    self.model(wav[None, window.start : window.stop])[
                        ..., window.keep_start : window.keep_stop, :
                    ].clone()
                    for window in chunk_windows(length, self.field, self.hop, self.chunk_samples, self.overlap_samples)
                ]
            frames = torch.cat(pieces, dim=-2)  # [(N,) 1, T_item, D]
            items.append(F.pad(frames, (0, 0, 0, total - frames.shape[-2])))
        return torch.cat(items, dim=-3)
