"""The demo's report.md and its two plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechbrain_gendistill.demo.corpus import RECORD_NAME
from speechbrain_gendistill.demo.measurements import read_train_log

if TYPE_CHECKING:
    from speechbrain_gendistill.demo.stages import Demo


METRIC_NAMES = {"WER": "WER %", "PER": "PER %", "CER": "CER %", "accuracy": "accuracy %"}


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def _spread(summary: dict[str, float]) -> str:
    """``mean (sd)`` over seeds, or the value alone for one seed."""
    if summary["seeds"] == 1:
        return f"{summary['mean']:.1f}"
    return f"{summary['mean']:.1f} ({summary['std']:.1f})"


def _parameters(params: dict[str, Any], name: str) -> str:
    counts = params[name]
    if isinstance(counts, int):
        return _millions(counts)
    text = _millions(counts["inference"])
    if counts["distillation"] != counts["inference"]:
        text += f" ({_millions(counts['distillation'])} with its prediction heads)"
    return text


def results_table(demo: Demo, measurements: dict[str, Any]) -> list[str]:
    """Every upstream against every task: test metric, mean (sd) over seeds; size and speed beside."""
    probes, params, seconds = measurements["probes"], measurements["parameters"], measurements["forward_seconds"]
    tasks = list(probes)
    header = ["upstream", "parameters", f"forward, {measurements['timing_audio_seconds']:g} s (vs teacher)"]
    header += [f"{task} {METRIC_NAMES.get(probes[task]['metric'], probes[task]['metric'])}" for task in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, label in demo.labels().items():
        forward = "-"
        if name in seconds:
            forward = f"{seconds[name] * 1000:.0f} ms ({seconds[name] / seconds['teacher']:.2f}x)"
        size = _parameters(params, name if name != "random_teacher" else "teacher")
        cells = [label, size, forward]
        cells += [_spread(probes[task]["upstreams"][name]["test"]) for task in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def comparison_table(demo: Demo, measurements: dict[str, Any]) -> list[str]:
    """Each student against the baseline, per task: the difference and its 95% interval; a tie when it holds 0."""
    probes = measurements["probes"]
    labels = demo.labels()
    lines = [
        "| student | task | difference vs DistilHuBERT | 95% interval | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for task, statistics in probes.items():
        for name, bootstrap in statistics["against_baseline"].items():
            better = "higher" if statistics["higher_is_better"] else "lower"
            low, high = bootstrap["interval"]
            lines.append(
                f"| {labels[name]} | {task} ({statistics['metric']}, {better} is better) | "
                f"{bootstrap['difference']:+.1f} | [{low:+.1f}, {high:+.1f}] | {bootstrap['verdict']} |"
            )
    return lines


def layer_table(demo: Demo, measurements: dict[str, Any]) -> list[str]:
    """Each student's generated layers against the teacher's on the dev split: L1 and cosine."""
    layers = measurements["target_layers"]
    header = ["student"] + [f"L1 layer {layer}" for layer in layers] + [f"cosine layer {layer}" for layer in layers]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, figures in measurements["layers"].items():
        cells = [demo.labels()[name], *(f"{value:.3f}" for value in figures["l1"] + figures["cosine"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_report(demo: Demo, measurements: dict[str, Any]) -> str:
    """report.md: the SUPERB-style table, the students against the baseline, layer figures, settings, stage times."""
    probes, steps = measurements["probes"], measurements["distill_steps"]
    teacher_settings = demo.config["teacher"]
    teacher_source = (
        "in this run"
        if demo.train_teacher_here
        else f"the repository's `{teacher_settings['shipped']}`, trained by `{teacher_settings['hparams']}`"
    )
    corpus_record = json.loads((demo.corpus / RECORD_NAME).read_text())["splits"]
    seeds = measurements["seeds"]
    jobs, threads = measurements["recipe_jobs_threads"]
    seed_text = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})" if len(seeds) > 1 else f"one seed ({seeds[0]})"
    lines = [
        "# GenDistiller demo: the paper's comparison in miniature, SUPERB-style",
        "",
        f"Test metrics, mean (standard deviation) over {seed_text}; recipes run {jobs} at a time on {threads} CPU "
        f"thread(s) each; forward times on {measurements['threads']}.",
        "",
        *results_table(demo, measurements),
        "",
        "## Students against DistilHuBERT",
        "",
        "The difference is the student's metric minus the baseline's; the interval, a paired bootstrap over test "
        "items and seeds (2000 resamples). An interval that holds zero is a tie.",
        "",
        *comparison_table(demo, measurements),
        "",
        "## Distillation: generated layers against the teacher's (dev split, first seed)",
        "",
        *layer_table(demo, measurements),
        "",
        "## How these figures were obtained",
        "",
        "- Corpus (ASR and PR): "
        + "; ".join(
            f"{split}: {info['speakers']} speakers, {info['utterances']} utterances, {info['hours'] * 60:.1f} min"
            for split, info in corpus_record.items()
        )
        + " (espeak-ng voices; no speaker in two splits).",
        f"- Teacher: {teacher_settings['label']} with {measurements['teacher_layers']} layers ({teacher_source}); "
        f"target layers {measurements['target_layers']}.",
        "- Distillation: "
        + ", ".join(f"{demo.students[name]['label']} {count} updates" for name, count in steps.items())
        + " (same data, batches and schedule; each seed distils anew).",
        "- Probes: every upstream frozen, its transformer (or generated) layers computed once and cached, a "
        "softmax-weighted layer sum (weights from zero) read by a small head; one head per learning rate, the "
        "best on dev tested. "
        + "; ".join(
            f"{task}: {settings['label']}, {probes[task]['test_items']} test items"
            for task, settings in demo.tasks.items()
        )
        + ".",
        f"- Forward time: median of {demo.config['timing']['repeats']} interleaved runs on "
        f"{measurements['timing_audio_seconds']:g} s of dev audio, relative to the teacher. Parameters: what "
        "inference uses (and, for DistilHuBERT, with the prediction heads distillation also trains).",
        "",
        "Plots: `training_curves.png` (dev L1 and cosine per layer during distillation), "
        "`layer_cosine.png` (cosine of each generated layer with each teacher layer, dev split).",
        "",
        "## Stage times (wall clock)",
        "",
        f"Each stage's own time; with {demo.stages.jobs} job(s), recipes ran side by side, so the total is more "
        "than the run's wall-clock time when jobs > 1.",
        "",
        "| stage | seconds |",
        "| --- | --- |",
    ]
    by_kind = demo.stages.seconds_by_kind()
    lines += [f"| {kind} | {seconds:.0f} |" for kind, seconds in by_kind.items()]
    lines.append(f"| total | {sum(by_kind.values()):.0f} |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(demo: Demo, path: Path) -> None:
    """Dev (solid) and train (dashed) L1 and cosine of each target layer against updates, per student."""
    plt = _pyplot()
    layers = demo.config["target_layers"]
    figure, axes = plt.subplots(2, len(layers), figsize=(4 * len(layers), 6), squeeze=False)
    for name, student in demo.students.items():
        log = read_train_log(demo.distill_folder(name, demo.seeds[0]) / "train_log.txt")
        steps = [row["optimizer_steps"] for row in log]
        for column, layer in enumerate(layers):
            for row_index, metric in enumerate(("l1", "cosine")):
                axis = axes[row_index][column]
                (line,) = axis.plot(steps, [row[f"valid_{metric}_layer{layer}"] for row in log], marker="o")
                axis.plot(
                    steps, [row[f"train_{metric}_layer{layer}"] for row in log], linestyle="--", color=line.get_color()
                )
                line.set_label(student["label"])
                axis.set_title(f"layer {layer}: {'L1' if metric == 'l1' else 'cosine'}")
                axis.set_xlabel("updates")
    axes[0][0].legend(fontsize="small")
    figure.suptitle("Distillation: dev (solid) and train (dashed) figures per target layer")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_layer_cosine(measurements: dict[str, Any], labels: dict[str, str], path: Path) -> None:
    """One heat map per student: cosine of each generated layer (rows) with each teacher layer (columns)."""
    plt = _pyplot()
    students = measurements["layers"]
    figure, axes = plt.subplots(1, len(students), figsize=(5 * len(students), 3.2), squeeze=False)
    for axis, (name, figures) in zip(axes[0], students.items(), strict=True):
        matrix = figures["cosine_matrix"]
        image = axis.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        axis.set_xticks(range(len(matrix[0])))
        axis.set_yticks(range(len(matrix)))
        axis.set_yticklabels([f"gen. {layer}" for layer in measurements["target_layers"]])
        axis.set_xlabel("teacher layer")
        axis.set_title(labels[name])
        for row, values in enumerate(matrix):
            for column, value in enumerate(values):
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7)
        figure.colorbar(image, ax=axis)
    figure.suptitle("Cosine similarity, dev split")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _task_header(probes: dict[str, Any]) -> list[str]:
    return [f"{task} {METRIC_NAMES.get(stats['metric'], stats['metric'])}" for task, stats in probes.items()]


def _relative_size(parameters: dict[str, Any], name: str, baseline: str) -> str:
    own, base = parameters[name]["inference"], parameters[baseline]["inference"]
    return f"{_millions(own)} ({own / base:.0%})"


def _threads_text(measurements: dict[str, Any]) -> str:
    """How the recipes behind ``measurements`` ran: jobs at once and CPU threads each."""
    if "recipe_jobs_threads" not in measurements:  # a run before the demo had jobs: one recipe at a time
        return f"{measurements['threads']} threads"
    jobs, threads = measurements["recipe_jobs_threads"]
    return f"{jobs} recipe(s) at a time, {threads} thread(s) each"


def render_tables(results: dict[str, Any], study: dict[str, Any]) -> str:
    """The study's tables for the README, from its ``results.json``: screen, learning rates, confirmation, budgets."""
    baseline = "distilhubert"
    lines: list[str] = []
    if "screen" in results:
        record = results["screen"]
        measurements = record["measurements"]
        probes, parameters = measurements["probes"], measurements["parameters"]
        labels = {name: student["label"] for name, student in record["students"].items()}
        lines += [
            f"**Screen** (teacher {record['teacher']}, seed {record['seeds'][0]}, "
            f"{_threads_text(measurements)}): dev / test per task; finalists by mean dev rank: "
            + ", ".join(labels[name] for name in record["finalists"]),
            "",
            "| student | parameters (vs baseline) | " + " | ".join(_task_header(probes)) + " |",
            "|" + " --- |" * (2 + len(probes)),
        ]
        for name in record["students"]:
            cells = [labels[name], _relative_size(parameters, name, baseline)]
            for stats in probes.values():
                figures = stats["upstreams"][name]
                cells.append(f"{figures['dev']['mean']:.1f} / {figures['test']['mean']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if "learning_rate" in results:
        record = results["learning_rate"]
        lines += ["**Distillation learning rate** (dev loss at the end of the run; the lowest is kept)", ""]
        lines += ["| student | " + " | ".join(f"lr {lr:g}" for lr in study["learning_rate"]["values"]) + " | chosen |"]
        lines += ["|" + " --- |" * (2 + len(study["learning_rate"]["values"]))]
        for name, chosen in record["chosen"].items():
            losses = [f"{record['dev_loss'][f'{name}@{lr:g}']:.3f}" for lr in study["learning_rate"]["values"]]
            lines.append(f"| {name} | " + " | ".join(losses) + f" | {chosen:g} |")
        lines.append("")
    for teacher, record in results.get("confirm", {}).items():
        measurements = record["measurements"]
        probes, parameters = measurements["probes"], measurements["parameters"]
        labels = {name: student["label"] for name, student in record["students"].items()}
        seeds = ", ".join(map(str, record["seeds"]))
        lines += [
            f"**Confirmation, {study['teachers'][teacher]['label']}** (seeds {seeds}; {_threads_text(measurements)}): "
            "test, mean (sd); against the baseline: difference [95% interval], verdict",
            "",
            "| student | parameters (vs baseline) | " + " | ".join(_task_header(probes)) + " |",
            "|" + " --- |" * (2 + len(probes)),
        ]
        for name in ("teacher", "random_teacher", *record["students"]):
            label = labels.get(name, {"teacher": "teacher", "random_teacher": "untrained teacher"}.get(name))
            size = _relative_size(parameters, name, baseline) if name in record["students"] else "-"
            cells = [label, size]
            for stats in probes.values():
                cell = _spread(stats["upstreams"][name]["test"])
                if name in stats["against_baseline"]:
                    bootstrap = stats["against_baseline"][name]
                    low, high = bootstrap["interval"]
                    cell += f": {bootstrap['difference']:+.1f} [{low:+.1f}, {high:+.1f}], {bootstrap['verdict']}"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if "early_exit" in results:
        record = results["early_exit"]
        layers = list(record["figures"])
        tasks = list(record["figures"][layers[0]])
        seconds = record["forward_seconds"]
        lines += [
            f"**Early exit** ({record['student']}, teacher {record['teacher']}, seed {record['seed']}; forward time "
            f"on {record['threads']} threads): the student stopped after k of its {layers[-1]} generated layers, "
            "dev / test per task",
            "",
            "| layers generated | forward (vs all layers; vs the baseline) | "
            + " | ".join(f"{task} {record['figures'][layers[0]][task]['metric']}" for task in tasks)
            + " |",
            "|" + " --- |" * (2 + len(tasks)),
        ]
        for k in layers:
            ratios = f"{seconds[k] / seconds[layers[-1]]:.2f}x; {seconds[k] / seconds[baseline]:.2f}x"
            cells = [k, f"{seconds[k] * 1000:.0f} ms ({ratios})"]
            cells += [
                f"{record['figures'][k][task]['dev']:.1f} / {record['figures'][k][task]['test']:.1f}" for task in tasks
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if "budgets" in results:
        lines += ["**Budgets** (one seed): updates, final dev distillation loss, test per task", ""]
        first = next(iter(results["budgets"].values()))
        probes = first["measurements"]["probes"]
        lines += ["| updates x | student | updates | dev loss | " + " | ".join(_task_header(probes)) + " |"]
        lines += ["|" + " --- |" * (4 + len(probes))]
        for factor, record in results["budgets"].items():
            measurements = record["measurements"]
            for name, student in record["students"].items():
                cells = [f"{factor}x", student["label"], str(measurements["distill_steps"][name])]
                cells.append(f"{record['dev_loss'][name]:.3f}" if "dev_loss" in record else "-")
                cells += [
                    f"{stats['upstreams'][name]['test']['mean']:.1f}" for stats in measurements["probes"].values()
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
