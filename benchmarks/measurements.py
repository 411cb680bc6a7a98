"""The timed workloads: one forward per model, free-running generation, and training steps.

Workloads are timed by :func:`speechbrain_gendistill.measure.time_interleaved`:
the models of a section interleaved round robin in each repetition, the
first one moving on by one each round, so that a slow-down of a shared
machine lands on all of them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from settings import HISTORY_MODES, STUDENT_NAMES, Settings

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.lobes import SSLTeacher
from speechbrain_gendistill.loss import DistillationLoss
from speechbrain_gendistill.measure import time_interleaved


def autocast(device: str, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``dtype`` "bf16", nothing for "fp32"."""
    if dtype == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronizer(device: str) -> Callable[[], None]:
    """What waits for the device's queued work before a clock is read."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def timing(settings: Settings, device: str) -> dict:
    """:func:`time_interleaved`'s keyword arguments for ``device``."""
    return {"repeats": settings.repeats, "warmup": settings.warmup, "synchronize": synchronizer(device)}


def noise(batch: int, seconds: float, seed: int, device: str) -> torch.Tensor:
    """[batch, seconds * 16 kHz] of quiet Gaussian noise, the same for a seed whatever the device."""
    generator = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=generator)).to(device)


def forward_input(settings: Settings, device: str) -> torch.Tensor:
    """The forward section's input: one utterance of ``forward_seconds``."""
    return noise(1, settings.forward_seconds, settings.seed, device)


def inference(model: Callable[[torch.Tensor], object], wavs: torch.Tensor, device: str, dtype: str) -> Callable:
    """A workload: one forward of ``model`` on ``wavs`` without gradients, under ``dtype``'s autocast.

    The output is dropped: a timed workload returns nothing (or the seconds of its parts).
    """

    def run() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            model(wavs)

    return run


def training_batch(settings: Settings, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``train_batch`` utterances of ``train_seconds``, the later ones padded (relative lengths down to 0.8)."""
    wavs = noise(settings.train_batch, settings.train_seconds, settings.seed, "cpu")
    samples = wavs.shape[1]
    wav_lens = torch.linspace(1.0, 0.8, settings.train_batch) if settings.train_batch > 1 else torch.ones(1)
    for item, rel in enumerate(wav_lens.tolist()):
        wavs[item, round(rel * samples) :] = 0.0
    return wavs.to(device), wav_lens.to(device)


def training_step(
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    wavs: torch.Tensor,
    wav_lens: torch.Tensor,
    targets: torch.Tensor,
    teacher_history_prob: float | None,
    device: str,
    dtype: str,
) -> None:
    """Student forward, the distillation loss, backward and an optimizer step.

    ``teacher_history_prob`` None: the baseline's heads; 1.0 teacher forcing; 0.0 free
    running; in between, scheduled history.
    """
    loss_fn = DistillationLoss()
    with autocast(device, dtype):
        if teacher_history_prob is None or teacher_history_prob == 0.0:
            predictions = student.predict_targets(wavs, wav_lens)
        else:
            predictions = student.predict_targets(
                wavs, wav_lens, teacher_history=targets, teacher_history_prob=teacher_history_prob
            )
    loss = loss_fn(predictions.float(), targets.float(), student.frame_mask(wavs, wav_lens))["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def teacher_targets(teacher: SSLTeacher, wavs: torch.Tensor, wav_lens: torch.Tensor, device: str, dtype: str):
    """The teacher's target layers [K, B, T, D], without gradients."""
    with torch.no_grad(), autocast(device, dtype):
        return teacher(wavs, wav_lens)


def measure_forward(settings, teacher, students, device, dtype) -> dict[str, dict[str, list[float]]]:
    """Seconds of one forward on one utterance, per model (the teacher first)."""
    wavs = forward_input(settings, device)
    models = {"teacher": teacher, **students}
    workloads = {name: inference(model, wavs, device, dtype) for name, model in models.items()}
    return time_interleaved(workloads, **timing(settings, device))


def measure_generation(settings, student, device, dtype) -> dict:
    """KV-cache generation against recomputing the whole prefix at each step, generator alone and with the front-end.

    Recomputing is the generator's own ``generate(..., use_cache=False)``: step
    k runs the blocks again over steps 1..k, the work the cache saves. The two
    outputs' largest absolute difference is kept beside the times.
    """
    wavs = forward_input(settings, device)
    generator = student.generator
    with torch.inference_mode(), autocast(device, dtype):
        x0, mask = student.frontend(wavs)
        cached = generator.generate(x0, mask)
        recomputed = generator.generate(x0, mask, use_cache=False)
    max_abs_diff = (cached.float() - recomputed.float()).abs().max().item()

    def run(fn: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                fn()

        return call

    workloads = {
        "KV cache": run(lambda: generator.generate(x0, mask)),
        "recompute": run(lambda: generator.generate(x0, mask, use_cache=False)),
        "KV cache, with front-end": run(lambda: student.predict_targets(wavs)),
        "recompute, with front-end": run(lambda: generator.generate(*student.frontend(wavs), use_cache=False)),
    }
    times = time_interleaved(workloads, **timing(settings, device))
    return {"max_abs_diff": max_abs_diff, "times": times}


def measure_training(settings, teacher, students, device, dtype) -> dict[str, dict[str, list[float]]]:
    """Seconds of one training step per history mode, with the teacher's part (``teacher``) beside the total."""
    wavs, wav_lens = training_batch(settings, device)
    synchronize = synchronizer(device)
    workloads = {}
    for mode, (key, teacher_history_prob) in HISTORY_MODES.items():
        student = students[STUDENT_NAMES[key]]
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

        def step(student=student, optimizer=optimizer, teacher_history_prob=teacher_history_prob) -> dict[str, float]:
            start = time.perf_counter()
            targets = teacher_targets(teacher, wavs, wav_lens, device, dtype)
            synchronize()
            teacher_seconds = time.perf_counter() - start
            training_step(student, optimizer, wavs, wav_lens, targets, teacher_history_prob, device, dtype)
            return {"teacher": teacher_seconds}

        workloads[mode] = step
    for student in students.values():
        student.train()
    try:
        return time_interleaved(workloads, **timing(settings, device))
    finally:
        for student in students.values():
            student.eval()
