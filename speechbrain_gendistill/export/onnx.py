"""ONNX export of a distilled student, and its int8 dynamic quantization, for CPUs and small devices.

The graph is the student's whole inference path: the waveform CNN, the
front-end and, for GenDistiller, the K generation steps unrolled one after
another with their key/value cache (free running: no teacher is needed).

* inputs: ``wavs`` [B, S] float32 (16 kHz, zero padded) and ``wav_lens`` [B]
  float32 (relative lengths, SpeechBrain's convention: 1.0 is the whole row);
* output: ``features`` [B, T, D] (the last layer), or ``hidden_states``
  [N, B, T, D] (every layer the student gives downstream) with ``--all_layers``;
  ``--max_layers k`` exports an early exit: the graph computes the first k
  layers only (GenDistiller: k generation steps unrolled);
* batch and time axes are dynamic; frames whose receptive field reaches into
  the padding are not valid (their number is in the metadata, see below);
* metadata (``session.get_modelmeta().custom_metadata_map``): ``sample_rate``,
  ``receptive_field`` and ``frame_hop`` in samples, so item b has
  ``(samples_b - receptive_field) // frame_hop + 1`` valid frames;
  ``student_class``; ``output``; ``max_layers`` (for an early exit).
* ``--long_audio`` (students whose CNN has wav2vec 2.0's first-layer group
  norm): two more inputs, ``patch_mean`` [k] and ``patch_moment`` [k, k], the
  moments of the first layer's input patches over a whole waveform (metadata
  ``patch_kernel`` = k and ``patch_stride``), so that the windows of a long
  waveform are each normalised as the whole is; ``docs/onnx_long_audio.py``
  runs such a graph window by window with numpy alone (see
  :class:`~speechbrain_gendistill.lobes.DistilledSSL`'s ``chunk_seconds``).

After writing the file, the command runs it with onnxruntime beside PyTorch on
a padded batch and prints the largest difference on valid frames (fp32) or the
mean cosine similarity to PyTorch's fp32 output (int8).

Usage::

    python -m speechbrain_gendistill.export.onnx --student exported_student/ --out student.onnx
    python -m speechbrain_gendistill.export.onnx --student exported_student/ --out student.int8.onnx --quantize int8
    python -m speechbrain_gendistill.export.onnx --student exported_student/ --out first2.onnx --max_layers 2
    python -m speechbrain_gendistill.export.onnx --student exported_student/ --out student.long.onnx --long_audio
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.frames import frame_hop, receptive_field
from speechbrain_gendistill.lobes.distilled import load_student
from speechbrain_gendistill.lobes.students import DistillationStudent

ONNX_OPSET = 17
INPUT_NAMES = ["wavs", "wav_lens"]
LONG_AUDIO_INPUTS = ["patch_mean", "patch_moment"]
# The command warns when its parity check falls short of these (fp32: max abs diff; int8: cosine to fp32).
FP32_TOLERANCE = 1e-4
INT8_MIN_COSINE = 0.99


def samples_for(student: DistillationStudent, frames: int) -> int:
    """The shortest waveform that gives ``frames`` frames."""
    return receptive_field(student.frontend.conv_layers) + (frames - 1) * frame_hop(student.frontend.conv_layers)


def output_name(student: DistillationStudent) -> str:
    return "hidden_states" if student.output_all_hiddens else "features"


class WithPatchMoments(nn.Module):
    """A student whose first-layer group norm takes a whole waveform's statistics, from its patch moments.

    The graph of ``--long_audio``: its inputs are the student's and
    ``patch_mean``, ``patch_moment`` (``ConvFeatureExtractor.patch_moments``).
    """

    def __init__(self, student: DistillationStudent) -> None:
        super().__init__()
        self.student = student

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor, patch_mean: torch.Tensor, patch_moment: torch.Tensor
    ) -> torch.Tensor:
        extractor = self.student.frontend.feature_extractor
        with extractor.fixed_statistics(extractor.statistics_from_moments(patch_mean, patch_moment)):
            return self.student(wavs, wav_lens)


def export_onnx(
    student: DistillationStudent, path: str | Path, opset: int = ONNX_OPSET, long_audio: bool = False
) -> Path:
    """Writes the student's inference path (in eval mode) to an ONNX file.

    Arguments
    ---------
    student : DistillationStudent
        A GenDistillStudent or DistilHuBERTStudent; with ``output_all_hiddens``
        the graph returns every layer.
    path : str or Path
        The ``.onnx`` file to write.
    opset : int
        ONNX opset of the graph.
    long_audio : bool
        Add the inputs ``patch_mean`` and ``patch_moment`` (see the module's
        docstring), for students whose CNN has a first-layer group norm.

    Returns
    -------
    Path
        The file.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.lobes.students import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> path = export_onnx(student, Path(tempfile.mkdtemp()) / "student.onnx")
    >>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> wavs, wav_lens = np.zeros((3, 1600), np.float32), np.array([1.0, 0.7, 0.4], np.float32)
    >>> session.run(None, {"wavs": wavs, "wav_lens": wav_lens})[0].shape
    (3, 159, 24)
    """
    path = Path(path)
    # Two items of different lengths, so that the traced graph includes the padding masks.
    example = (torch.randn(2, samples_for(student, 50)), torch.tensor([1.0, 0.5]))
    name = output_name(student)
    first = student.frontend.feature_extractor.conv_layers[0]
    model, input_names, long_audio_metadata = student, INPUT_NAMES, {}
    if long_audio:
        if first.norm_kind != "group_norm":
            raise ValueError(
                "--long_audio: this student's CNN normalises each frame on its own (layer-norm mode), so the "
                "standard graph already runs a long waveform window by window"
            )
        kernel, stride = first.conv.kernel_size[0], first.conv.stride[0]
        model, input_names = WithPatchMoments(student), INPUT_NAMES + LONG_AUDIO_INPUTS
        example = (*example, torch.zeros(kernel), torch.eye(kernel))
        long_audio_metadata = {"patch_kernel": kernel, "patch_stride": stride}
    time_axes = {1: "batch", 2: "frames"} if student.output_all_hiddens else {0: "batch", 1: "frames"}
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript-based exporter: the torch.export-based one needs onnxscript, not a dependency here.
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            torch.onnx.export(
                model,
                example,
                str(path),
                input_names=input_names,
                output_names=[name],
                dynamic_axes={"wavs": {0: "batch", 1: "samples"}, "wav_lens": {0: "batch"}, name: time_axes},
                opset_version=opset,
                dynamo=False,
            )
    finally:
        student.train(was_training)
    model = onnx.load(str(path))
    metadata = {
        "sample_rate": SAMPLE_RATE,
        "receptive_field": receptive_field(student.frontend.conv_layers),
        "frame_hop": frame_hop(student.frontend.conv_layers),
        "student_class": type(student).__name__,
        "output": f"{name} [N, B, T, D]" if student.output_all_hiddens else f"{name} [B, T, D]",
        **long_audio_metadata,
    }
    if student.max_layers is not None:
        metadata["max_layers"] = student.max_layers
    onnx.helper.set_model_props(model, {key: str(value) for key, value in metadata.items()})
    onnx.save(model, str(path))
    return path


def quantize_int8(source: str | Path, target: str | Path) -> Path:
    """Int8 dynamic quantization of the matrix products' weights of an fp32 student graph.

    Activations are quantized on the fly, per call: no calibration data. The
    convolutions stay fp32: onnxruntime's integer convolution (ConvInteger) ran
    about twice as slow as its fp32 one on the CNN front-end (2 CPU threads).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.lobes.students import DistilHuBERTStudent
    >>> student = DistilHuBERTStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = quantize_int8(export_onnx(student, folder / "fp32.onnx"), folder / "int8.onnx")
    >>> "MatMulInteger" in {node.op_type for node in onnx.load(path).graph.node}
    True
    """
    source, target = Path(source), Path(target)
    with tempfile.TemporaryDirectory() as folder:
        # Folds the exporter's Identity nodes in front of shared weights (the generation
        # steps reuse one set), which would otherwise hide them from the quantizer.
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(prepared, target, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    model = onnx.load(str(target))
    metadata = {entry.key: entry.value for entry in onnx.load(str(source), load_external_data=False).metadata_props}
    onnx.helper.set_model_props(model, {**metadata, "quantization": "int8 dynamic (MatMul weights)"})
    onnx.save(model, str(target))
    return target


def parity(student: DistillationStudent, path: str | Path, wavs: torch.Tensor, wav_lens: torch.Tensor) -> dict:
    """Compares onnxruntime's output with PyTorch's (eval mode) on the valid frames of one batch.

    Returns ``max_abs_diff`` and ``mean_cosine`` (per frame, over valid frames).
    """
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"wavs": wavs.numpy(), "wav_lens": wav_lens.numpy()}
    if LONG_AUDIO_INPUTS[0] in {value.name for value in session.get_inputs()}:
        # A --long_audio graph given one whole waveform: its own statistics, those PyTorch computes.
        if wavs.shape[0] != 1 or bool(wav_lens[0] != 1.0):
            raise ValueError("the parity of a --long_audio graph is checked on one unpadded waveform")
        moments = student.frontend.feature_extractor.patch_moments(wavs[0], wavs.shape[1])
        feed.update(zip(LONG_AUDIO_INPUTS, (moment.float().numpy() for moment in moments), strict=True))
    (ours,) = session.run(None, feed)
    was_training = student.training
    with torch.no_grad():
        reference = student.eval()(wavs, wav_lens).numpy()
    student.train(was_training)
    mask = student.frame_mask(wavs, wav_lens).numpy()
    ours, reference = ours[..., mask, :], reference[..., mask, :]  # [..., valid frames, D]
    cosine = (ours * reference).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(reference, axis=-1))
    return {"max_abs_diff": float(np.abs(ours - reference).max()), "mean_cosine": float(cosine.mean())}


def check_batch(student: DistillationStudent, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three noise waveforms of 100, 75 and 50 frames, zero padded: a batch unlike the export example."""
    generator = torch.Generator().manual_seed(seed)
    samples = samples_for(student, 100)
    wav_lens = torch.tensor([1.0, 0.75, 0.5])
    padding = torch.arange(samples)[None, :] >= wav_lens[:, None] * samples
    return torch.randn(3, samples, generator=generator).masked_fill(padding, 0.0), wav_lens


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", required=True, help="folder of an exported student (export_student)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="int8 dynamic quantization")
    parser.add_argument("--all_layers", action="store_true", help="output every layer [N, B, T, D]")
    parser.add_argument("--max_layers", type=int, default=None, help="an early exit: the first k layers only")
    parser.add_argument(
        "--long_audio", action="store_true", help="inputs for long audio run window by window (docs/onnx_long_audio.py)"
    )
    parser.add_argument("--opset", type=int, default=ONNX_OPSET)
    args = parser.parse_args(argv)
    student = load_student(args.student, output_all_hiddens=args.all_layers, max_layers=args.max_layers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.quantize:
        with tempfile.TemporaryDirectory() as folder:
            quantize_int8(export_onnx(student, Path(folder) / "fp32.onnx", args.opset, args.long_audio), out)
    else:
        export_onnx(student, out, args.opset, args.long_audio)
    wavs, wav_lens = check_batch(student)
    if args.long_audio:  # one waveform, whole: the statistics it is given are its own
        wavs, wav_lens = wavs[:1], wav_lens[:1]
    figures = parity(student, out, wavs, wav_lens)
    checked_on = "one waveform" if args.long_audio else "a padded batch"
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); against PyTorch fp32 on {checked_on}, valid frames: "
        f"max abs diff {figures['max_abs_diff']:.2e}, mean cosine {figures['mean_cosine']:.5f}"
    )
    if args.quantize and figures["mean_cosine"] < INT8_MIN_COSINE:
        warnings.warn(f"int8 mean cosine {figures['mean_cosine']:.4f} is below {INT8_MIN_COSINE}", stacklevel=1)
    if not args.quantize and figures["max_abs_diff"] > FP32_TOLERANCE:
        warnings.warn(f"fp32 max abs diff {figures['max_abs_diff']:.2e} exceeds {FP32_TOLERANCE}", stacklevel=1)
    return figures


if __name__ == "__main__":
    main()
