"""Measuring models: parameters, forward FLOPs, and wall-clock times of interleaved workloads.

Shared by the demo's report and the benchmark scripts, so that every figure
of size and speed in this project is measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters of ``module`` (what the model holds, trainable or not).

    Example
    -------
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(parameter.numel() for parameter in module.parameters())


def forward_flops(model: Callable[[torch.Tensor], object], wavs: torch.Tensor, warmup_samples: int = 16000) -> int:
    """Floating-point operations of one forward on ``wavs``, as ``torch.utils.flop_counter`` counts them.

    Example
    -------
    >>> forward_flops(torch.nn.Linear(3, 2), torch.ones(4, 3))  # 4 rows x 3 inputs x 2 outputs, x2 (multiply-add)
    48
    """
    # Weight-norm parametrisations are computed once (a short input fills the cache), outside the
    # counting mode, which cannot run them.
    with torch.inference_mode(), parametrize.cached():
        model(wavs[..., :warmup_samples])
        with FlopCounterMode(display=False) as counter:
            model(wavs)
    return counter.get_total_flops()


def time_interleaved(
    workloads: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    synchronize: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each workload: ``repeats`` rounds after ``warmup`` rounds.

    Each round runs every workload once, starting one further along the list
    than the round before, so that a slow-down of the machine lands on all of
    them and none always runs first. Per workload: ``total`` (wall clock),
    ``cpu`` (CPU time of the process, all threads: what a busy machine inflates
    least on one thread) and the parts a workload may time itself and return
    as a dict (e.g. ``{"teacher": seconds}``; any other return value is
    ignored). ``synchronize`` waits for an accelerator.

    Example
    -------
    >>> times = time_interleaved({"a": lambda: None, "b": lambda: {"part": 0.5}}, repeats=3)
    >>> sorted(times["b"]), len(times["a"]["total"])
    (['cpu', 'part', 'total'], 3)
    """
    names = list(workloads)
    for _ in range(warmup):
        for name in names:
            workloads[name]()
    times: dict[str, dict[str, list[float]]] = {name: {"total": [], "cpu": []} for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            parts = workloads[name]()
            synchronize()
            times[name]["total"].append(time.perf_counter() - start)
            times[name]["cpu"].append(time.process_time() - start_cpu)
            for part, seconds in (parts if isinstance(parts, dict) else {}).items():
                times[name].setdefault(part, []).append(seconds)
    return times
