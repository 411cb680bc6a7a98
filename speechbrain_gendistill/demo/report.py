"""The demo's report.md and its two plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechbrain_gendistill.demo.config import BASELINE, GENDISTILLER
from speechbrain_gendistill.demo.corpus import RECORD_NAME
from speechbrain_gendistill.demo.measurements import read_train_log

if TYPE_CHECKING:
    from speechbrain_gendistill.demo.stages import Demo


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def render_report(demo: Demo, measurements: dict[str, Any]) -> str:
    """report.md: the comparison table, the random-teacher control, the settings and the stage times."""
    layers = measurements["target_layers"]
    params, seconds, probes = measurements["parameters"], measurements["forward_seconds"], measurements["probes"]
    steps = measurements["distill_steps"]
    teacher_settings = demo.config["teacher"]
    teacher_source = (
        "in this run"
        if demo.train_teacher_here
        else f"the repository's `{teacher_settings['shipped']}`, trained by `{teacher_settings['hparams']}`"
    )
    corpus_record = json.loads((demo.corpus / RECORD_NAME).read_text())["splits"]
    header = ["model", "parameters", f"forward time ({measurements['timing_audio_seconds']:g} s audio)"]
    header += [f"L1 layer {layer}" for layer in layers] + [f"cosine layer {layer}" for layer in layers]
    header += ["dev WER %", "test WER %", "test CER %"]

    def row(name: str, label: str) -> str:
        cells = [label, _millions(params[name])]
        cells.append(f"{seconds[name] / seconds['teacher']:.2f}x ({seconds[name] * 1000:.0f} ms)")
        if name == "teacher":
            cells += ["-"] * (2 * len(layers))
        else:
            figures = measurements["layers"][name]
            cells += [f"{value:.3f}" for value in figures["l1"]] + [f"{value:.3f}" for value in figures["cosine"]]
        cells += [f"{probes[name][key]:.2f}" for key in ("dev_WER", "WER", "CER")]
        return "| " + " | ".join(cells) + " |"

    table = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    table.append(row("teacher", "Teacher (WavLM)"))
    table += [row(name, demo.students[name]["label"]) for name in demo.students]
    baseline_params = params[BASELINE]
    lines = [
        "# GenDistiller demo: the paper's comparison in miniature",
        "",
        *table,
        "",
        f"GenDistiller has {params[GENDISTILLER] / baseline_params:.0%} of DistilHuBERT's parameters "
        f"and {params[GENDISTILLER] / params['teacher']:.0%} of the teacher's. "
        f"Test WER: GenDistiller {probes[GENDISTILLER]['WER']:.2f}%, DistilHuBERT {probes[BASELINE]['WER']:.2f}%.",
        "",
        f"Control: the same probe on the teacher's untrained initial weights (same shape) reaches a test WER of "
        f"{probes['random_teacher']['WER']:.2f}% (CER {probes['random_teacher']['CER']:.2f}%), against "
        f"{probes['teacher']['WER']:.2f}% for the trained teacher.",
        "",
        "## How these figures were obtained",
        "",
        "- Corpus: "
        + "; ".join(
            f"{split}: {info['speakers']} speakers, {info['utterances']} utterances, {info['hours'] * 60:.1f} min"
            for split, info in corpus_record.items()
        )
        + " (espeak-ng voices; no speaker in two splits).",
        f"- Teacher: WavLM with {measurements['teacher_layers']} layers, trained from scratch with character CTC "
        f"on its last layer ({teacher_source}); target layers {layers}.",
        "- Distillation: "
        + ", ".join(f"{demo.students[name]['label']} {count} updates" for name, count in steps.items())
        + " (same data, batches and schedule).",
        f"- L1 and cosine: each generated layer against its target layer, frame-weighted over the "
        f"{measurements['dev_utterances']} dev utterances, whole and unpadded; students generate freely "
        "(no teacher history), DistilHuBERT through its prediction heads. Parameters: what inference uses "
        "(DistilHuBERT without its heads).",
        f"- Forward time: median of {demo.config['timing']['repeats']} interleaved runs on "
        f"{measurements['timing_audio_seconds']:g} s of dev audio, {measurements['threads']} CPU threads, "
        "relative to the teacher.",
        "- WER/CER: the frozen-feature CTC probe (`recipes/LibriSpeech/ASR/CTC`, "
        f"`{demo.config['probe']['hparams'].split('/')[-1]}`, greedy decoding) on the test split.",
        "",
        "Plots: `training_curves.png` (dev L1 and cosine per layer during distillation), "
        "`layer_cosine.png` (cosine of each generated layer with each teacher layer, dev split).",
        "",
        "## Stage times (wall clock)",
        "",
        "| stage | seconds |",
        "| --- | --- |",
    ]
    record = demo.stages.record
    lines += [f"| {name} | {info['seconds']:.0f} |" for name, info in record.items()]
    lines.append(f"| total | {sum(info['seconds'] for info in record.values()):.0f} |")
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
        log = read_train_log(demo.distill_folder(name) / "train_log.txt")
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
