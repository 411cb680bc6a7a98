"""Size, speed and memory of the students against their teacher, measured in one run.

Models, at paper scale unless the settings say otherwise (``models.py``):

* teacher: a WavLM Base+ architecture (random weights, which do not change
  speed), saved to a temporary folder and loaded through ``SSLTeacher``, as a
  recipe loads it;
* the DistilHuBERT baseline and GenDistiller, built from their YAML files
  (``hparams/models``) by HyperPyYAML, so the YAML is the source of truth;
* variants of GenDistiller built from its YAML with other values: compact
  front-ends (``conv_layers`` with fewer channels), and with ``--candidates``
  other generators (smaller ones, and the paper's d_model 768 with 1 block).

Measured: parameters; the arithmetic of one forward (floating-point operations
counted by ``torch.utils.flop_counter``: the speed-up that equal efficiency
would give); forward time on one utterance (models interleaved round robin
within each repetition; medians; ratios to the teacher measured in the same
run); peak memory (``memory.py``); GenDistiller's free-running generation with
its KV cache against recomputing the whole prefix at each step (and whether
both give the same layers); one training step of each student and each history
mode, as ratios to the baseline's step (``measurements.py``); throughput over
batch sizes, eager and optionally compiled (``throughput.py``). Writes
``benchmark.md`` and ``benchmark.json`` (``report.py``).

Usage::

    python benchmarks/benchmark.py [--quick] [--threads 2] [--out DIR] [--devices cpu cuda] [--candidates]
        [--throughput | --no-throughput] [--batch_sizes 1 8 32 64] [--compile [cpu cuda]]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch
from measurements import forward_input, measure_forward, measure_generation, measure_training
from memory import measure_cuda_memory, measure_memory_in_subprocess
from models import build_models, flop_rows, parameter_rows, save_teacher
from report import REFERENCES, evaluate_goals, summarise_run, write_outputs
from settings import Settings, batch_sizes_for, dtypes_for, generator_candidates, quick_settings
from throughput import measure_throughput, summarise_throughput, throughput_goals


def machine_info(settings: Settings) -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": settings.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_benchmark(settings: Settings) -> dict:
    """Every measurement, as the JSON-ready dict :func:`report.render_markdown` reads."""
    torch.set_num_threads(settings.threads)
    results: dict = {"settings": dataclasses.asdict(settings), "machine": machine_info(settings)}
    with tempfile.TemporaryDirectory() as folder:
        teacher_dir = save_teacher(Path(folder) / "teacher", settings.teacher_config, settings.seed)
        teacher, students = build_models(settings, teacher_dir)
        results["parameters"] = parameter_rows(teacher, students)
        results["flops"] = flop_rows(teacher, students, forward_input(settings, "cpu"))
        memory = {"cpu/fp32": measure_memory_in_subprocess(settings, teacher_dir)} if settings.memory else {}
        runs, throughput = [], []
        for device in settings.devices:
            teacher.to(device)
            for student in students.values():
                student.to(device)
            for dtype in dtypes_for(device, settings):
                if settings.memory and device == "cuda":
                    memory[f"cuda/{dtype}"] = measure_cuda_memory(settings, teacher, students, dtype)
                runs.append(
                    {
                        "device": device,
                        "dtype": dtype,
                        "forward": measure_forward(settings, teacher, students, device, dtype),
                        "generation": measure_generation(settings, students["GenDistiller"], device, dtype),
                        "training": measure_training(settings, teacher, students, device, dtype),
                    }
                )
            if settings.throughput:
                batch_sizes, cpu_default = batch_sizes_for(device, settings)
                if cpu_default:
                    print(f"throughput on CPU: batch sizes {batch_sizes} (the CPU's default)", file=sys.stderr)
                throughput += measure_throughput(settings, teacher, students, device)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["memory"] = memory
    results["runs"] = [summarise_run(run, memory) for run in runs]
    results["runs_min"] = [summarise_run(run, memory, min) for run in runs]
    results["throughput"] = [summarise_throughput(run) for run in throughput]
    results["goals"] = evaluate_goals(results["runs"], settings)
    for goal, by_minima in zip(results["goals"], evaluate_goals(results["runs_min"], settings), strict=True):
        goal["measured_min"], goal["met_min"] = by_minima["measured"], by_minima["met"]
    results["goals"] += throughput_goals(results["throughput"])
    results["references"] = REFERENCES
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 3 s training audio, no throughput")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmark"), help="folder for benchmark.md/json")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None, help="default: all present")
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], help="default: fp32, and bf16 on a GPU")
    parser.add_argument("--candidates", action="store_true", help="add rows for other generators")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    throughput = parser.add_mutually_exclusive_group()
    throughput.add_argument("--throughput", action="store_true", help="run the throughput section (even in --quick)")
    throughput.add_argument("--no-throughput", action="store_true", help="skip the throughput section")
    parser.add_argument(
        "--batch_sizes",
        type=int,
        nargs="+",
        help="throughput batch sizes (default 1 8 32 64 on a GPU, 1 2 4 on CPU); implies --throughput",
    )
    parser.add_argument(
        "--compile",
        nargs="*",
        choices=["cpu", "cuda"],
        metavar="DEVICE",
        help="throughput under torch.compile too, on these devices (none named: cuda); implies --throughput",
    )
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = Settings(threads=args.threads, memory=not args.no_memory)
    if args.devices:
        settings.devices = args.devices
    settings.dtypes = args.dtypes
    if args.candidates:
        settings.variants += generator_candidates()
    settings.batch_sizes = args.batch_sizes
    if args.compile is not None:
        settings.compile_devices = args.compile or ["cuda"]
    asked = args.throughput or args.batch_sizes is not None or args.compile is not None
    if args.quick:
        settings = quick_settings(settings, throughput=asked)
    if args.no_throughput:
        settings.throughput = False
    return settings


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from_args(args)
    command = "python benchmarks/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_benchmark(settings)
    print(write_outputs(results, args.out, command.strip()))


if __name__ == "__main__":
    main()
