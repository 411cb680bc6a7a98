"""Throughput: batches of utterances through every model, the view of speed that a GPU gives.

At batch 1 x 10 s a GPU mostly measures kernel launches, not the models. Here
each model runs batches of ``forward_seconds`` utterances (1, 8, 32 and 64 on
a GPU unless the settings say otherwise; 1, 2 and 4 on CPU, so that the
section finishes), in every dtype of the run, eager and, on the devices that
``compile_devices`` names, under ``torch.compile``. Per model and batch:
audio seconds processed per second of wall clock and the latency per
utterance (batch time / batch size), from the median (and the minimum) of
repeats in which the models are interleaved. The teacher's saturating batch is
the smallest reaching 90% of its best throughput; the speed ratios are judged
at that batch, with the batch-1 latency beside them. A batch that runs out of
GPU memory is recorded (status "oom"), and that model skips the larger ones.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable

import torch
from measurements import inference, noise, synchronizer
from settings import STUDENT_NAMES, Settings, batch_sizes_for, dtypes_for

from speechbrain_gendistill.measure import time_interleaved

SATURATION_FRACTION = 0.9
GOALS = {  # name -> (comparison, target, key of the ratios at the teacher's saturating batch)
    "Throughput at the teacher's saturating batch: GenDistiller speed-up over the teacher": (
        ">=",
        1.9,
        "teacher_over_gendistill",
    ),
    "Throughput at the teacher's saturating batch: GenDistiller time / baseline's": (
        "<=",
        1.0,
        "gendistill_over_baseline",
    ),
}

Workload = Callable[[], object]


def free_memory() -> None:
    """Hands freed GPU memory back after a failed batch, so that the next one starts clean."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failure(error: BaseException) -> dict:
    """How a batch that failed is recorded: "oom" for running out of GPU memory, "error" otherwise."""
    status = "oom" if isinstance(error, torch.cuda.OutOfMemoryError) else "error"
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return {"status": status, "note": f"{type(error).__name__}: {lines[0][:200]}"}


def time_batch_sizes(
    factories: dict[str, Callable[[int], Workload]],
    batch_sizes: list[int],
    repeats: int,
    warmup: int = 1,
    synchronize: Callable[[], None] = lambda: None,
    catch: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,),
    before_batch: Callable[[int], None] | None = None,
) -> dict[str, dict[int, dict]]:
    """Seconds per batch of every model at every batch size, the models interleaved within a batch size.

    ``factories`` maps a model's name to a function that gives its workload
    for a batch size. A workload that raises one of ``catch`` (building it,
    warming up or timed) is recorded as failed at that batch size
    (:func:`failure`) and its model skips the larger ones; the others go on.
    At least one warm-up round runs, where compilation and running out of
    memory show. Per model and batch size: ``status`` ("ok", "oom", "error" or
    "skipped"), and ``times_s`` / ``cpu_s`` (wall-clock and CPU seconds per
    batch) when ok, else a ``note``.
    """
    results: dict[str, dict[int, dict]] = {name: {} for name in factories}
    failed: dict[str, str] = {}  # model -> what stopped it
    for batch in sorted(batch_sizes):
        if before_batch is not None:
            before_batch(batch)
        errors: dict[str, dict] = {}
        workloads: dict[str, Workload] = {}
        for name, factory in factories.items():
            if name in failed:
                results[name][batch] = {"status": "skipped", "note": failed[name]}
                continue
            try:
                workloads[name] = guarded(factory(batch), name, errors, catch)
            except catch as error:
                errors[name] = failure(error)
                free_memory()
        times = time_interleaved(workloads, repeats, max(warmup, 1), synchronize) if workloads else {}
        for name in factories:
            if name in errors:
                results[name][batch] = errors[name]
                failed[name] = f"skipped after {errors[name]['status']} at batch {batch}"
            elif name in times:
                results[name][batch] = {"status": "ok", "times_s": times[name]["total"], "cpu_s": times[name]["cpu"]}
        workloads.clear()
        free_memory()
    return results


def guarded(workload: Workload, name: str, errors: dict[str, dict], catch: tuple[type[BaseException], ...]) -> Workload:
    """``workload``, recording in ``errors`` what it raises of ``catch`` and doing nothing once it has failed."""

    def call() -> object:
        if name in errors:
            return None
        try:
            return workload()
        except catch as error:
            errors[name] = failure(error)
            free_memory()
            return None

    return call


def measure_throughput(settings: Settings, teacher, students: dict[str, torch.nn.Module], device: str) -> list[dict]:
    """Every dtype and mode (eager; compiled where asked) of the throughput section on ``device``."""
    batch_sizes, cpu_default = batch_sizes_for(device, settings)
    models = {"teacher": teacher, **students}
    modes = ["eager"] + (["compile"] if device in settings.compile_devices else [])
    current: dict[int, torch.Tensor] = {}  # the batch of the batch size being timed, shared by the models

    def wavs_for(batch: int) -> torch.Tensor:
        if batch not in current:
            current.clear()
            current[batch] = noise(batch, settings.forward_seconds, settings.seed, device)
        return current[batch]

    runs = []
    for dtype in dtypes_for(device, settings):
        for mode in modes:
            runnables, catch, before_batch = models, (torch.cuda.OutOfMemoryError,), None
            if mode == "compile":
                # One compilation per model and batch size (static shapes); a failed one is recorded, not raised.
                runnables = {name: torch.compile(model, dynamic=False) for name, model in models.items()}
                catch, before_batch = (Exception,), lambda _batch: torch.compiler.reset()
            factories = {
                name: (lambda batch, model=model, dtype=dtype: inference(model, wavs_for(batch), device, dtype))
                for name, model in runnables.items()
            }
            times = time_batch_sizes(
                factories, batch_sizes, settings.repeats, settings.warmup, synchronizer(device), catch, before_batch
            )
            current.clear()
            if mode == "compile":
                torch.compiler.reset()
            runs.append(
                {
                    "device": device,
                    "dtype": dtype,
                    "mode": mode,
                    "batch_sizes": batch_sizes,
                    "cpu_default_batch_sizes": cpu_default,
                    "utterance_seconds": settings.forward_seconds,
                    "times": times,
                }
            )
    return runs


def saturation_batch(throughput: dict[int, float], fraction: float = SATURATION_FRACTION) -> int | None:
    """The smallest batch size whose throughput reaches ``fraction`` of the best; None without any.

    Example
    -------
    >>> saturation_batch({1: 10.0, 8: 70.0, 32: 95.0, 64: 100.0})
    32
    """
    if not throughput:
        return None
    best = max(throughput.values())
    return min(batch for batch, value in throughput.items() if value >= fraction * best)


def summarise_throughput(run: dict) -> dict:
    """Rows per model and batch size (medians, and minima in the ``_min`` keys), the saturation and the ratios."""
    seconds, teacher = run["utterance_seconds"], "teacher"
    gendistill, baseline = STUDENT_NAMES["gendistill"], STUDENT_NAMES["baseline"]
    statistics_ = {"": statistics.median, "_min": min}
    rows, ok = [], {}  # ok: (model, batch) -> row
    for name, by_batch in run["times"].items():
        for batch, entry in sorted(by_batch.items()):
            row = {"model": name, "batch_size": batch, "status": entry["status"], "note": entry.get("note", "")}
            if entry["status"] == "ok":
                for suffix, statistic in statistics_.items():
                    batch_s = statistic(entry["times_s"])
                    row["batch_s" + suffix] = batch_s
                    row["audio_s_per_s" + suffix] = batch * seconds / batch_s
                    row["latency_s" + suffix] = batch_s / batch
                row["times_s"] = entry["times_s"]
                ok[name, batch] = row
            rows.append(row)
    for (_, batch), row in ok.items():  # ratios of batch times at the same batch size (None if one failed)
        by_teacher, by_baseline = ok.get((teacher, batch)), ok.get((baseline, batch))
        for suffix in statistics_:
            key = "batch_s" + suffix
            row["speedup_vs_teacher" + suffix] = by_teacher[key] / row[key] if by_teacher else None
            row["time_vs_baseline" + suffix] = row[key] / by_baseline[key] if by_baseline else None
    teacher_throughput = {batch: row["audio_s_per_s"] for (name, batch), row in ok.items() if name == teacher}
    saturating = saturation_batch(teacher_throughput)
    ratios: dict = {"batch_size": saturating}
    judged = ok.get((gendistill, saturating), {})
    for suffix in statistics_:
        ratios["teacher_over_gendistill" + suffix] = judged.get("speedup_vs_teacher" + suffix)
        ratios["gendistill_over_baseline" + suffix] = judged.get("time_vs_baseline" + suffix)
    return {
        **{key: run[key] for key in ("device", "dtype", "mode", "batch_sizes", "cpu_default_batch_sizes")},
        "utterance_seconds": seconds,
        "rows": rows,
        "saturation": {
            "fraction": SATURATION_FRACTION,
            "batch_size": saturating,
            "teacher_audio_s_per_s": teacher_throughput.get(saturating),
            "teacher_best_audio_s_per_s": max(teacher_throughput.values(), default=None),
            # Reached only at the largest batch that ran: the teacher may not have saturated yet.
            "at_largest_batch": saturating is not None and saturating == max(teacher_throughput),
        },
        "ratios": ratios,
        "latency_batch1_s": {name: row["latency_s"] for (name, batch), row in ok.items() if batch == 1},
    }


def meets(value: float, comparison: str, target: float) -> bool:
    return value >= target if comparison == ">=" else value <= target


def throughput_goals(summaries: list[dict]) -> list[dict]:
    """The goals rows of the speed ratios at the teacher's saturating batch, by medians and by minima."""
    goals = []
    for summary in summaries:
        ratios = summary["ratios"]
        for goal, (comparison, target, key) in GOALS.items():
            value, value_min = ratios[key], ratios[key + "_min"]
            if value is None:
                continue
            goals.append(
                {
                    "goal": goal,
                    "device": summary["device"],
                    "dtype": summary["dtype"],
                    "measured": value,
                    "target": f"{comparison} {target}",
                    "met": meets(value, comparison, target),
                    "note": f"{summary['mode']}, batch {ratios['batch_size']}",
                    "measured_min": value_min,
                    "met_min": meets(value_min, comparison, target),
                }
            )
    return goals
