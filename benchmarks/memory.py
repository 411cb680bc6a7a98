"""Peak memory of each forward and each training step: on CPU in a fresh process, on a GPU in place.

Run as a script, this module is that fresh process: ``python benchmarks/memory.py REQUEST.json``
builds the models the request names, measures every workload and prints one JSON line.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from measurements import forward_input, inference, teacher_targets, training_batch, training_step
from models import build_models
from settings import HISTORY_MODES, STUDENT_NAMES, Settings

from speechbrain_gendistill.lobes import SSLTeacher


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_mib(workload: Callable[[], object]) -> float:
    """Peak resident memory one call adds to the process, in MiB (Linux).

    A first call makes the lazy allocations (oneDNN primitives, the optimizer
    state); then the memory freed since is handed back to the system
    (``malloc_trim``), the kernel's high-water mark is reset
    (``/proc/self/clear_refs``) and a second call is measured: VmHWM after it
    minus VmRSS before it.
    """
    workload()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _proc_status_kib("VmRSS")
    workload()
    return (_proc_status_kib("VmHWM") - before) / 1024


def peak_cuda_mib(workload: Callable[[], object]) -> float:
    """Peak GPU memory one call allocates beyond what was allocated before it, in MiB."""
    workload()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    workload()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def memory_workloads(
    settings: Settings, teacher: SSLTeacher, students: dict[str, torch.nn.Module], device: str, dtype: str
) -> dict[str, Callable[[], object]]:
    """Forward of every model on the forward input; training steps of the baseline and GenDistiller's modes."""
    wavs = forward_input(settings, device)
    workloads: dict[str, Callable[[], object]] = {"forward: teacher": inference(teacher, wavs, device, dtype)}
    for name, student in students.items():
        workloads[f"forward: {name}"] = inference(student, wavs, device, dtype)
    batch, lens = training_batch(settings, device)
    targets = teacher_targets(teacher, batch, lens, device, dtype)
    for mode, (key, teacher_history_prob) in HISTORY_MODES.items():
        student = students[STUDENT_NAMES[key]]
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

        def step(student=student, optimizer=optimizer, teacher_history_prob=teacher_history_prob) -> None:
            student.train()
            training_step(student, optimizer, batch, lens, targets, teacher_history_prob, device, dtype)
            student.eval()

        workloads[f"training step: {mode}"] = step
    return workloads


def measure_cuda_memory(settings, teacher, students, dtype: str) -> dict[str, float]:
    """GPU peak memory of every workload, in this process (the models already on the GPU)."""
    workloads = memory_workloads(settings, teacher, students, "cuda", dtype)
    return {name: peak_cuda_mib(workload) for name, workload in workloads.items()}


def measure_memory_in_subprocess(settings: Settings, teacher_dir: Path) -> dict[str, float]:
    """CPU peak memory of every workload, measured in a fresh Python process (see :func:`peak_rss_mib`)."""
    with tempfile.TemporaryDirectory() as folder:
        request = Path(folder) / "request.json"
        request.write_text(json.dumps({"settings": dataclasses.asdict(settings), "teacher_dir": str(teacher_dir)}))
        process = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(request)],
            capture_output=True,
            text=True,
            check=False,
        )
    if process.returncode != 0:
        raise RuntimeError(f"the memory probe failed (exit {process.returncode}):\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def memory_probe(request_path: str) -> None:
    """The subprocess side: builds the models, measures each workload, prints one JSON line."""
    request = json.loads(Path(request_path).read_text())
    settings = Settings.from_dict(request["settings"])
    torch.set_num_threads(settings.threads)
    teacher, students = build_models(settings, Path(request["teacher_dir"]))
    workloads = memory_workloads(settings, teacher, students, "cpu", "fp32")
    print(json.dumps({name: peak_rss_mib(workload) for name, workload in workloads.items()}))


if __name__ == "__main__":
    memory_probe(sys.argv[1])
