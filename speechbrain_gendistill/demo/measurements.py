"""What the demo's report measures: parameters, forward time, and each generated layer against the teacher's."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.export_format import read_export_config
from speechbrain_gendistill.data.audio import load_audio
from speechbrain_gendistill.demo.config import BASELINE, DEV_SPLIT
from speechbrain_gendistill.lobes import SSLTeacher
from speechbrain_gendistill.lobes.distilled import STUDENT_CLASSES, load_student
from speechbrain_gendistill.lobes.students import DistilHuBERTStudent, DistillationStudent, parameter_counts
from speechbrain_gendistill.measure import count_parameters, time_interleaved
from speechbrain_gendistill.tasks.probing.stats import compare, seed_summary
from speechbrain_gendistill.training.checkpoints import IntegrityCheckpointer

if TYPE_CHECKING:
    from speechbrain_gendistill.demo.stages import Demo

CONTROLS = ("teacher", "random_teacher")  # the upstreams that are not distilled


def student_for_distillation_figures(folder: Path) -> DistillationStudent:
    """A distilled student able to ``predict_targets``: its K predicted layers.

    GenDistiller: the exported student. DistilHuBERT: the export drops the
    prediction heads, so the student is rebuilt from the export's config and
    the recipe's last checkpoint (which holds the heads); its other weights
    must equal the export's.
    """
    exported = load_student(folder / "student").eval()
    if not isinstance(exported, DistilHuBERTStudent):
        return exported
    config = read_export_config(folder / "student")
    student = STUDENT_CLASSES[config["class"]](**config["arguments"])
    checkpoint = IntegrityCheckpointer(checkpoints_dir=folder / "save").find_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"{folder / 'save'} holds no checkpoint of the distillation run")
    state = torch.load(checkpoint.paramfiles["student"], map_location="cpu", weights_only=True)
    student.load_state_dict(state)
    for name, tensor in exported.state_dict().items():
        if not torch.equal(tensor, state[name]):
            raise ValueError(f"{checkpoint.path}: {name} differs from the exported student in {folder / 'student'}")
    return student.eval()


def dev_utterances(corpus: Path) -> list[Path]:
    return sorted((corpus / DEV_SPLIT).glob("*/*/*.flac"))


@torch.inference_mode()
def layer_figures(
    teacher: SSLTeacher,
    students: dict[str, DistillationStudent],
    files: list[Path],
    student_layers: dict[str, list[int]] | None = None,
) -> dict:
    """Frame-weighted means over ``files`` (one at a time, no padding) of, per student:

    - ``l1`` and ``cosine`` of each generated layer against its target layer;
    - ``cosine_matrix`` [K, L + 1]: cosine of generated layer k with every teacher layer
      (``hidden_states[0]`` included).

    The layers are the teacher's target layers; a student that learnt more
    (``student_layers``: name -> its target layers) is read at those.
    """
    totals = {name: {"l1": 0.0, "cosine": 0.0, "matrix": 0.0} for name in students}
    frames = 0
    targets = list(teacher.target_layers)
    rows = {name: [(student_layers or {}).get(name, targets).index(layer) for layer in targets] for name in students}
    for path in files:
        wav = load_audio(str(path)).unsqueeze(0)
        hidden = teacher.ssl(wav)[:, 0]  # [L + 1, T, D]
        frames += hidden.shape[1]
        for name, student in students.items():
            generated = student.predict_targets(wav)[rows[name], 0]  # [K, T, D]
            if generated.shape[1] != hidden.shape[1]:
                raise ValueError(
                    f"{path}: student {name} gives {generated.shape[1]} frames, the teacher {hidden.shape[1]}"
                )
            matrix = torch.nn.functional.cosine_similarity(generated[:, None], hidden[None], dim=-1).sum(-1)
            own = hidden[targets]
            totals[name]["l1"] = totals[name]["l1"] + (generated - own).abs().mean(-1).sum(-1)
            totals[name]["cosine"] = totals[name]["cosine"] + matrix[range(len(targets)), targets]
            totals[name]["matrix"] = totals[name]["matrix"] + matrix
    return {
        name: {
            "l1": (values["l1"] / frames).tolist(),
            "cosine": (values["cosine"] / frames).tolist(),
            "cosine_matrix": (values["matrix"] / frames).tolist(),
        }
        for name, values in totals.items()
    }


@torch.inference_mode()
def forward_times(models: dict[str, Callable[[torch.Tensor], Any]], wav: torch.Tensor, repeats: int) -> dict:
    """Median seconds of each model's forward on ``wav``, the models interleaved within each repeat."""
    workloads = {name: (lambda forward=forward: forward(wav)) for name, forward in models.items()}
    times = time_interleaved(workloads, repeats)
    return {name: statistics.median(values["total"]) for name, values in times.items()}


def timing_audio(files: list[Path], seconds: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``seconds`` of speech: dev utterances end to end (repeated if they are too few)."""
    pieces, total, index = [], 0, 0
    needed = round(seconds * sample_rate)
    while total < needed:
        piece = load_audio(str(files[index % len(files)]))
        pieces.append(piece)
        total += piece.shape[0]
        index += 1
    return torch.cat(pieces)[:needed].unsqueeze(0)


def read_train_log(path: Path) -> list[dict[str, float]]:
    """The epoch lines of a SpeechBrain ``train_log.txt`` as dicts (``valid loss`` -> key ``valid_loss``).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "train_log.txt"
    >>> _ = path.write_text("epoch: 1, weights: 0.2 0.8 - train loss: 2.50 - valid l1_layer2: 5.00e-01\\n")
    >>> read_train_log(path)
    [{'epoch': 1.0, 'train_loss': 2.5, 'valid_l1_layer2': 0.5}]
    """
    rows = []
    for line in path.read_text().splitlines():
        if not line.startswith("epoch:"):
            continue
        row = {}
        for part in line.split(" - "):
            for item in part.split(", "):
                key, _, value = item.rpartition(": ")
                try:
                    row[key.replace(" ", "_")] = float(value)
                except ValueError:  # not a number (e.g. a list of layer weights)
                    continue
        rows.append(row)
    return rows


def probe_results(demo: Demo) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every probe's results.json: task -> upstream -> one per seed, in the order of ``demo.seeds``."""
    return {
        task: {
            upstream: [
                json.loads((demo.probe_folder(task, upstream, seed) / "results.json").read_text())
                for seed in demo.seeds
            ]
            for upstream in demo.upstreams(demo.seeds[0])
        }
        for task in demo.tasks
    }


def probe_statistics(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per task: each upstream's test and dev metric over seeds, and each student against the baseline.

    The comparison is the paired bootstrap of :func:`~speechbrain_gendistill.tasks.probing.stats.compare`
    over test items and seeds; the controls (teacher, untrained teacher) are summarised, not compared.
    """
    statistics_by_task = {}
    for task, by_upstream in results.items():
        first = by_upstream[BASELINE][0]
        summary = {
            upstream: {
                "test": seed_summary([run["test"] for run in runs]),
                "dev": seed_summary([run["dev"] for run in runs]),
                "chosen_lr": [run["chosen_lr"] for run in runs],
            }
            for upstream, runs in by_upstream.items()
        }
        against = {
            upstream: compare(runs, by_upstream[BASELINE])["bootstrap"]
            for upstream, runs in by_upstream.items()
            if upstream not in (*CONTROLS, BASELINE)
        }
        statistics_by_task[task] = {
            "metric": first["metric"],
            "higher_is_better": first["higher_is_better"],
            "test_items": first["sizes"]["test"],
            "upstreams": summary,
            "against_baseline": against,
        }
    return statistics_by_task


def measure(demo: Demo) -> dict[str, Any]:
    """Everything report.md shows, as plain data. Sizes, speed and layer figures are the first seed's students."""
    files = dev_utterances(demo.corpus)
    seed = demo.seeds[0]
    teacher = SSLTeacher(
        str(demo.trained_teacher), demo.config["target_layers"], save_path=str(demo.teacher_folder / "hf_cache")
    )
    students = {name: student_for_distillation_figures(demo.distill_folder(name, seed)) for name in demo.students}
    exported = {name: load_student(demo.distill_folder(name, seed) / "student").eval() for name in demo.students}
    timing = demo.config["timing"]
    wav = timing_audio(files, timing["audio_seconds"])
    forwards = {"teacher": lambda x: teacher.ssl(x)}
    forwards.update({name: student for name, student in exported.items()})
    seconds = forward_times(forwards, wav, timing["repeats"])
    steps = {}
    for name in demo.students:
        log = read_train_log(demo.distill_folder(name, seed) / "train_log.txt")
        steps[name] = int(log[-1]["optimizer_steps"]) if log else None
    return {
        "seeds": demo.seeds,
        "target_layers": list(teacher.target_layers),
        "teacher_layers": teacher.num_layers,
        "parameters": {
            "teacher": count_parameters(teacher.ssl.model),
            **{name: parameter_counts(student) for name, student in students.items()},
        },
        "forward_seconds": seconds,
        "timing_audio_seconds": timing["audio_seconds"],
        "threads": torch.get_num_threads(),  # the forward-time measurements'
        "recipe_jobs_threads": [demo.stages.jobs, demo.stages.recipe_threads],
        "layers": layer_figures(teacher, students, files, {name: demo.target_layers(name) for name in students}),
        "dev_utterances": len(files),
        "probes": probe_statistics(probe_results(demo)),
        "distill_steps": steps,
    }
