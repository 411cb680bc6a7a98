"""The benchmark's summaries and its report: ratios of medians (and of minima), goals, and ``benchmark.md``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from settings import CPU_BATCH_SIZES, GPU_BATCH_SIZES, STUDENT_NAMES, Settings
from throughput import SATURATION_FRACTION

GOALS = {  # name -> (comparison, target); measured on every device and dtype the run covers
    "GenDistiller forward, speed-up over the teacher": (">=", 1.9),
    "GenDistiller forward, time / baseline's": ("<=", 1.0),
    "Free-running generation, KV cache speed-up over recomputing (generator)": (">=", 1.5),
    "KV cache and recomputing, max abs difference (fp32)": ("<=", 1e-4),
    "GenDistiller training step, teacher forcing, time / baseline's": ("<=", 1.3),
    "GenDistiller training step, free running, time / baseline's (reported)": ("", None),
    "Best compact front-end, speed-up over the teacher": (">=", 4.0),
}


REFERENCES = [
    {"what": "DistilHuBERT parameters (Chang et al., 2022; s3prl, without heads)", "value": "23.49M"},
    {"what": "GenDistiller parameters (Gao et al.): 82% reduction of WavLM Base+ (94.7M)", "value": "about 17M"},
    {
        "what": "s3prl DistilHuBERT forward vs WavLM Base, 10 s, 2 CPU threads (method page, this machine)",
        "value": "0.45 s vs 0.84 s: 1.9x",
    },
]


def student_part(times: dict[str, list[float]]) -> list[float]:
    """Per-step seconds minus the teacher's forward in that step."""
    return [total - teacher for total, teacher in zip(times["total"], times["teacher"], strict=True)]


def summarise_run(run: dict, memory: dict, statistic: Callable[[list[float]], float] = statistics.median) -> dict:
    """Seconds and ratios of one device/dtype run, each from ``statistic`` of the repetitions.

    Medians are the figures the tables lead with; minima, the runs least
    disturbed by other work on a shared machine, are kept beside them.
    """
    device, dtype = run["device"], run["dtype"]
    peaks = memory.get(f"{device}/{dtype}", {})  # on CPU, fp32 only
    baseline = STUDENT_NAMES["baseline"]
    forward = {name: statistic(times["total"]) for name, times in run["forward"].items()}
    forward_rows = [
        {
            "model": name,
            "seconds": seconds,
            "speedup_vs_teacher": forward["teacher"] / seconds,
            "time_vs_baseline": seconds / forward[baseline],
            "peak_memory_mib": peaks.get(f"forward: {name}"),
            "times_s": run["forward"][name]["total"],
        }
        for name, seconds in forward.items()
    ]
    generation = {name: statistic(times["total"]) for name, times in run["generation"]["times"].items()}
    generation_row = {
        "max_abs_diff": run["generation"]["max_abs_diff"],
        "seconds": generation,
        "speedup_generator": generation["recompute"] / generation["KV cache"],
        "speedup_with_frontend": generation["recompute, with front-end"] / generation["KV cache, with front-end"],
    }
    base_step = statistic(run["training"][baseline]["total"])
    base_student = statistic(student_part(run["training"][baseline]))
    training_rows = [
        {
            "mode": mode,
            "seconds": statistic(times["total"]),
            "teacher_s": statistic(times["teacher"]),
            "student_s": statistic(student_part(times)),
            "step_vs_baseline": statistic(times["total"]) / base_step,
            "student_vs_baseline": statistic(student_part(times)) / base_student,
            "peak_memory_mib": peaks.get(f"training step: {mode}"),
            "times_s": times["total"],
        }
        for mode, times in run["training"].items()
    ]
    return {
        "device": device,
        "dtype": dtype,
        "forward": forward_rows,
        "generation": generation_row,
        "training": training_rows,
    }


def evaluate_goals(runs: list[dict], settings: Settings) -> list[dict]:
    """Issue 6's goals, on every device/dtype run."""
    compact = [variant.name for variant in settings.variants if variant.compact]
    goals = []
    for run in runs:
        forward = {row["model"]: row for row in run["forward"]}
        training = {row["mode"]: row for row in run["training"]}
        best_compact = max(compact, key=lambda name: forward[name]["speedup_vs_teacher"], default=None)
        measured = {
            "GenDistiller forward, speed-up over the teacher": forward["GenDistiller"]["speedup_vs_teacher"],
            "GenDistiller forward, time / baseline's": forward["GenDistiller"]["time_vs_baseline"],
            "Free-running generation, KV cache speed-up over recomputing (generator)": run["generation"][
                "speedup_generator"
            ],
            "GenDistiller training step, teacher forcing, time / baseline's": training["GenDistiller, teacher forcing"][
                "step_vs_baseline"
            ],
            "GenDistiller training step, free running, time / baseline's (reported)": training[
                "GenDistiller, free running"
            ]["step_vs_baseline"],
        }
        if run["dtype"] == "fp32":
            measured["KV cache and recomputing, max abs difference (fp32)"] = run["generation"]["max_abs_diff"]
        if best_compact is not None:
            measured["Best compact front-end, speed-up over the teacher"] = forward[best_compact]["speedup_vs_teacher"]
        for goal, (comparison, target) in GOALS.items():
            if goal not in measured:
                continue
            value = measured[goal]
            met = None if target is None else (value >= target if comparison == ">=" else value <= target)
            row = {"goal": goal, "device": run["device"], "dtype": run["dtype"], "measured": value}
            row.update({"target": f"{comparison} {target}" if target is not None else "", "met": met})
            if goal.startswith("Best compact"):
                row["note"] = best_compact
            goals.append(row)
    return goals


# ----------------------------------------------------------------------------------------------------------------
# Output


def fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def render_markdown(results: dict, command: str = "") -> str:
    """The tables of ``benchmark.md``: medians first, minima (least disturbed runs) beside them."""
    settings, machine = results["settings"], results["machine"]
    repetitions = f"{settings['repeats']} runs after {settings['warmup']} warm-up runs"
    lines = [
        "# Benchmark: WavLM Base+ teacher, DistilHuBERT baseline, GenDistiller",
        "",
        f"Command: `{command}`" if command else "",
        f"Machine: {machine['cpu']} ({machine['cpu_count']} CPUs), {machine['torch_threads']} torch threads"
        + (f", GPU {machine['gpu']}" if "gpu" in machine else "")
        + f"; torch {machine['torch']}; load average at start {machine['load_average_start'][0]:.2f},"
        f" at end {machine['load_average_end'][0]:.2f}.",
        f"Random weights (speed does not depend on them). Forward: batch 1, {settings['forward_seconds']:g} s of"
        f" audio, {repetitions}, models interleaved round robin in each repetition; ratios of medians (of minima"
        " in the columns so named)."
        f" Training step: batch {settings['train_batch']} x {settings['train_seconds']:g} s (relative lengths 1.0"
        " down to 0.8): teacher forward without gradients, student forward, loss, backward, AdamW step."
        + (" Quick run: fewer repetitions, shorter training audio." if settings["quick"] else ""),
        "Peak memory: on CPU (fp32 only), VmHWM - VmRSS around the second call in a fresh process (after"
        " malloc_trim); on GPU, torch.cuda.max_memory_allocated beyond the memory allocated before the call.",
        "",
        "## Parameters",
        "",
    ]
    lines += table(
        ["Model", "Parameters (M)", "Fraction of the teacher"],
        [
            [row["model"], fmt(row["parameters"] / 1e6, 2), f"{100 * row['fraction_of_teacher']:.1f}%"]
            for row in results["parameters"]
        ],
    )
    lines += ["", f"## Arithmetic of one forward on {settings['forward_seconds']:g} s of audio", ""]
    lines += [
        "Floating-point operations counted by `torch.utils.flop_counter` (multiply and add counted apart):"
        " the teacher's count over a model's is the speed-up that equal efficiency would give.",
        "",
    ]
    lines += table(
        ["Model", "GFLOPs", "Fraction of the teacher", "Teacher / model", "Model / baseline"],
        [
            [row["model"], fmt(row["flops"] / 1e9, 1), f"{100 * row['fraction_of_teacher']:.1f}%"]
            + [ratio(1 / row["fraction_of_teacher"]), ratio(row["vs_baseline"])]
            for row in results["flops"]
        ],
    )
    runs = list(zip(results["runs"], results["runs_min"], strict=True))
    lines += ["", "## Forward", ""]
    rows = []
    for run, run_min in runs:
        for row, row_min in zip(run["forward"], run_min["forward"], strict=True):
            rows.append(
                [row["model"], run["device"], run["dtype"], fmt(row["seconds"]), fmt(row_min["seconds"])]
                + [ratio(row["speedup_vs_teacher"]), ratio(row_min["speedup_vs_teacher"])]
                + [ratio(row["time_vs_baseline"]), ratio(row_min["time_vs_baseline"]), fmt(row["peak_memory_mib"], 0)]
            )
    lines += table(
        ["Model", "Device", "dtype", "Median (s)", "Min (s)", "Speed-up over teacher", "(minima)"]
        + ["Time / baseline's", "(minima)", "Peak memory (MiB)"],
        rows,
    )
    lines += ["", "## Free-running generation: KV cache against recomputing the prefix at each step", ""]
    rows = []
    for run, run_min in runs:
        gen, gen_min = run["generation"], run_min["generation"]
        seconds = gen["seconds"]
        rows.append(
            [run["device"], run["dtype"], fmt(seconds["KV cache"]), fmt(seconds["recompute"])]
            + [ratio(gen["speedup_generator"]), ratio(gen_min["speedup_generator"])]
            + [fmt(seconds["KV cache, with front-end"]), fmt(seconds["recompute, with front-end"])]
            + [
                ratio(gen["speedup_with_frontend"]),
                ratio(gen_min["speedup_with_frontend"]),
                f"{gen['max_abs_diff']:.2e}",
            ]
        )
    lines += table(
        ["Device", "dtype", "Generator, cache (s)", "Generator, recompute (s)", "Speed-up", "(minima)"]
        + ["With front-end, cache (s)", "With front-end, recompute (s)", "Speed-up", "(minima)", "Max abs diff"],
        rows,
    )
    lines += ["", "## One training step", ""]
    rows = []
    for run, run_min in runs:
        for row, row_min in zip(run["training"], run_min["training"], strict=True):
            rows.append(
                [row["mode"], run["device"], run["dtype"], fmt(row["seconds"]), fmt(row["teacher_s"])]
                + [fmt(row["student_s"]), ratio(row["step_vs_baseline"]), ratio(row_min["step_vs_baseline"])]
                + [ratio(row["student_vs_baseline"]), fmt(row["peak_memory_mib"], 0)]
            )
    lines += table(
        ["Student, history", "Device", "dtype", "Step (s)", "Teacher part (s)", "Student part (s)"]
        + ["Step / baseline's", "(minima)", "Student part / baseline's", "Peak memory (MiB)"],
        rows,
    )
    lines += render_throughput(results)
    lines += ["", "## Published reference figures", ""]
    lines += table(["Reference", "Figure"], [[ref["what"], ref["value"]] for ref in results["references"]])
    lines += ["", "## Goals (issue 6)", ""]
    rows = []
    for goal in results["goals"]:
        shown = (lambda v: f"{v:.2e}") if "difference" in goal["goal"] else (lambda v: fmt(v, 2))
        name = goal["goal"] + (f" ({goal['note']})" if goal.get("note") else "")
        verdicts = [{True: "yes", False: "**no**", None: ""}[goal[key]] for key in ("met", "met_min")]
        rows.append([name, goal["device"], goal["dtype"], shown(goal["measured"]), shown(goal["measured_min"])])
        rows[-1] += [goal["target"]] + verdicts
    lines += table(["Goal", "Device", "dtype", "Medians", "Minima", "Target", "Met", "Met (minima)"], rows)
    return "\n".join(lines) + "\n"


def render_throughput(results: dict) -> list[str]:
    """The throughput section: a table per device, dtype and mode, then the saturation and the ratios there."""
    lines = ["", "## Throughput: batches of utterances", ""]
    summaries = results.get("throughput", [])
    if not summaries:
        return lines + ["Not measured in this run (`--throughput` runs it; `--quick` leaves it out unless asked)."]
    seconds = summaries[0]["utterance_seconds"]
    lines += [
        f"Batches of {seconds:g} s utterances through each model, models interleaved round robin in each repetition."
        " Each cell: audio seconds processed per second of wall clock, and the latency per utterance (batch time /"
        " batch size), from medians. The teacher's saturating batch is the smallest reaching"
        f" {100 * SATURATION_FRACTION:.0f}% of its best throughput; the speed ratios are taken there."
    ]
    if any(summary["cpu_default_batch_sizes"] for summary in summaries):
        lines[-1] += (
            f" On CPU the batch sizes default to {', '.join(map(str, CPU_BATCH_SIZES))} (a GPU's are"
            f" {', '.join(map(str, GPU_BATCH_SIZES))}), so that the section finishes; `--batch_sizes` chooses others."
        )
    notes = []
    for summary in summaries:
        where = f"{summary['device']}, {summary['dtype']}, {summary['mode']}"
        batches, judged = summary["batch_sizes"], summary["ratios"]["batch_size"]
        cells: dict[str, dict[int, dict]] = {}
        for row in summary["rows"]:
            cells.setdefault(row["model"], {})[row["batch_size"]] = row
            if row["status"] != "ok":
                notes.append(f"- {where}, {row['model']}, batch {row['batch_size']}: {row['status']} ({row['note']})")
        lines += ["", f"### {where}", ""]

        def cell(row: dict | None) -> str:
            if row is None or row["status"] != "ok":
                return "" if row is None else row["status"].upper() if row["status"] == "oom" else row["status"]
            return f"{row['audio_s_per_s']:.1f} s/s, {1000 * row['latency_s']:.1f} ms"

        def at_judged(row: dict | None, key: str) -> str:
            value = None if row is None else row.get(key)
            return "" if value is None else ratio(value)

        rows = []
        for model, by_batch in cells.items():
            judged_row = by_batch.get(judged)
            rows.append(
                [model]
                + [cell(by_batch.get(batch)) for batch in batches]
                + [at_judged(judged_row, key) for key in ("speedup_vs_teacher", "speedup_vs_teacher_min")]
                + [at_judged(judged_row, key) for key in ("time_vs_baseline", "time_vs_baseline_min")]
            )
        at = f" at batch {judged}" if judged is not None else ""
        lines += table(
            ["Model"]
            + [f"Batch {batch}" for batch in batches]
            + [f"Speed-up over teacher{at}", "(minima)", f"Time / baseline's{at}", "(minima)"],
            rows,
        )
    lines += ["", "### The teacher's saturating batch, and the speed ratios there", ""]
    rows = []
    for summary in summaries:
        saturation, ratios, latency = summary["saturation"], summary["ratios"], summary["latency_batch1_s"]
        saturating = "" if saturation["batch_size"] is None else str(saturation["batch_size"])
        saturating += " (the largest run: may not have saturated)" if saturation["at_largest_batch"] else ""
        rows.append(
            [summary["device"], summary["dtype"], summary["mode"], saturating]
            + [fmt(saturation["teacher_audio_s_per_s"], 1), fmt(saturation["teacher_best_audio_s_per_s"], 1)]
            + [
                "" if ratios[key] is None else ratio(ratios[key])
                for key in (
                    "teacher_over_gendistill",
                    "teacher_over_gendistill_min",
                    "gendistill_over_baseline",
                    "gendistill_over_baseline_min",
                )
            ]
            + [fmt(1000 * latency[name], 1) if name in latency else "" for name in ("teacher", *STUDENT_NAMES.values())]
        )
    lines += table(
        ["Device", "dtype", "Mode", "Teacher saturates at batch", "Teacher there (audio s/s)", "Teacher's best"]
        + ["Teacher / GenDistiller time", "(minima)", "GenDistiller / baseline time", "(minima)"]
        + ["Batch-1 latency (ms): teacher", "baseline", "GenDistiller"],
        rows,
    )
    if notes:
        lines += ["", "Batches that did not run:", ""] + notes
    return lines


def write_outputs(results: dict, out_dir: Path, command: str = "") -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(results, command)
    (out_dir / "benchmark.md").write_text(markdown)
    (out_dir / "benchmark.json").write_text(json.dumps(results, indent=1))
    return markdown
