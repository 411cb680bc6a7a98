"""Forward time of a student in PyTorch fp32, ONNX fp32 and ONNX int8, on a few CPU threads.

The student is built from its YAML (paper scale by default) with random
weights, which do not change speed, and exported with
:mod:`speechbrain_gendistill.export.onnx`. One utterance of ``--seconds`` of
noise is run by the three in turn, round robin, the first of each round moving
on by one, so that a slow-down of a shared machine lands on all of them; the
figures are medians, and the speed-ups are ratios of medians from the same run.
The int8 graph's mean cosine similarity to PyTorch's output is printed beside.

Usage::

    python benchmarks/onnx_speed.py [--yaml hparams/models/gendistill_wavlm_base_plus.yaml] [--threads 2]
        [--seconds 10] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnxruntime
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_gendistill.export.onnx import SAMPLE_RATE, export_onnx, parity, quantize_int8
from speechbrain_gendistill.measure import time_interleaved

REPO = Path(__file__).resolve().parents[1]
GENDISTILL_YAML = REPO / "hparams" / "models" / "gendistill_wavlm_base_plus.yaml"
RUNTIMES = ("pytorch_fp32", "onnx_fp32", "onnx_int8")


def onnx_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_medians(
    workloads: dict[str, Callable[[], object]], repeats: int, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall-clock and CPU seconds per call of each workload, timed by :func:`time_interleaved`.

    CPU time (all threads of the process) is what a busy machine inflates least
    on one thread; on several it also counts threads spinning while they wait.
    """
    times = time_interleaved(workloads, repeats, warmup)
    return (
        {name: statistics.median(parts["total"]) for name, parts in times.items()},
        {name: statistics.median(parts["cpu"]) for name, parts in times.items()},
    )


def measure_onnx_speed(
    yaml_path: str | Path = GENDISTILL_YAML,
    seconds: float = 10.0,
    threads: int = 2,
    repeats: int = 15,
    warmup: int = 2,
    seed: int = 0,
) -> dict:
    """Times one forward pass of the YAML's student in the three runtimes.

    Returns ``seconds`` and ``cpu_seconds`` (medians per runtime), ``speedup`` (PyTorch fp32's
    median over each runtime's, and ``int8_over_onnx_fp32``), ``int8_cosine``
    (mean over frames, to PyTorch fp32) and the settings.
    """
    torch.manual_seed(seed)
    with open(yaml_path) as yaml_file:
        student = load_hyperpyyaml(yaml_file)["student"].eval()
    wavs = torch.randn(1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(seed))
    wav_lens = torch.ones(1)
    feeds = {"wavs": wavs.numpy(), "wav_lens": wav_lens.numpy()}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as folder:
            fp32 = export_onnx(student, Path(folder) / "student.onnx")
            int8 = quantize_int8(fp32, Path(folder) / "student.int8.onnx")
            sessions = {"onnx_fp32": onnx_session(fp32, threads), "onnx_int8": onnx_session(int8, threads)}
            int8_cosine = parity(student, int8, wavs, wav_lens)["mean_cosine"]

            def pytorch() -> None:
                with torch.inference_mode():
                    student(wavs, wav_lens)

            workloads = {"pytorch_fp32": pytorch}
            for name, session in sessions.items():
                workloads[name] = lambda session=session: session.run(None, feeds)
            medians, cpu_medians = interleaved_medians(workloads, repeats, warmup)
    finally:
        torch.set_num_threads(previous_threads)
    speedup = {name: medians["pytorch_fp32"] / medians[name] for name in RUNTIMES[1:]}
    speedup["int8_over_onnx_fp32"] = medians["onnx_fp32"] / medians["onnx_int8"]
    return {
        "yaml": str(yaml_path),
        "audio_seconds": seconds,
        "threads": threads,
        "repeats": repeats,
        "seconds": medians,
        "cpu_seconds": cpu_medians,
        "speedup": speedup,
        "int8_cosine": int8_cosine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--yaml", default=str(GENDISTILL_YAML), help="a student YAML (key 'student')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the utterance")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    result = measure_onnx_speed(args.yaml, args.seconds, args.threads, args.repeats)
    print(f"{Path(args.yaml).name}: {args.seconds:g} s of audio, {args.threads} threads, median of {args.repeats}")
    for name in RUNTIMES:
        print(f"  {name:13s} {result['seconds'][name]:.3f} s (CPU time {result['cpu_seconds'][name]:.3f} s)")
    speedup = result["speedup"]
    print(
        f"  speed-up over PyTorch fp32: ONNX fp32 {speedup['onnx_fp32']:.2f}x, ONNX int8 {speedup['onnx_int8']:.2f}x "
        f"(int8 over ONNX fp32 {speedup['int8_over_onnx_fp32']:.2f}x); int8 mean cosine {result['int8_cosine']:.4f}"
    )


if __name__ == "__main__":
    main()
