"""The benchmark's models, built as a recipe builds them, and what their size and arithmetic are.

The teacher is a randomly initialised WavLM (weights do not change speed)
saved as a hub model is and loaded through :class:`SSLTeacher`; the students
come from their YAML files by HyperPyYAML, so the YAML is the source of truth.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from settings import STUDENT_NAMES, Settings

from speechbrain_gendistill.lobes import SSLTeacher
from speechbrain_gendistill.lobes.students import parameter_counts
from speechbrain_gendistill.lobes.teacher import save_random_model
from speechbrain_gendistill.measure import count_parameters, forward_flops


def save_teacher(folder: Path, teacher_config: dict, seed: int) -> Path:
    """A randomly initialised WavLM with ``teacher_config`` ({}: WavLM Base+'s architecture) in ``folder``."""
    return Path(save_random_model(folder, teacher_config, seed, model_type="wavlm"))


def load_student_yaml(path: str, overrides: dict, seed: int) -> tuple[torch.nn.Module, list[int]]:
    """The YAML's ``student`` and ``target_layers``, with ``overrides`` applied to its top-level keys."""
    torch.manual_seed(seed)
    with open(path) as yaml_file:
        hparams = load_hyperpyyaml(yaml_file, overrides)
    return hparams["student"], list(hparams["target_layers"])


def build_models(settings: Settings, teacher_dir: Path) -> tuple[SSLTeacher, dict[str, torch.nn.Module]]:
    """The teacher and every student the settings name, keyed by row name, all in eval mode."""
    yamls = {"baseline": settings.baseline_yaml, "gendistill": settings.gendistill_yaml}
    students, layers = {}, {}
    for key, path in yamls.items():
        students[STUDENT_NAMES[key]], layers[key] = load_student_yaml(path, settings.yaml_overrides, settings.seed)
    if layers["baseline"] != layers["gendistill"]:
        raise ValueError(
            f"target_layers differ: {settings.baseline_yaml} has {layers['baseline']}, "
            f"{settings.gendistill_yaml} has {layers['gendistill']}; the students must distil the same layers"
        )
    for variant in settings.variants:
        if variant.student not in yamls:
            raise ValueError(
                f"variant {variant.name!r}: student must be one of {sorted(yamls)}, got {variant.student!r}"
            )
        overrides = {**settings.yaml_overrides, **variant.overrides}
        students[variant.name], _ = load_student_yaml(yamls[variant.student], overrides, settings.seed)
    teacher = SSLTeacher(str(teacher_dir), layers["gendistill"], save_path=str(teacher_dir))
    for name, student in students.items():
        if student.config["target_dim"] != teacher.hidden_size:
            raise ValueError(
                f"{name}: target_dim {student.config['target_dim']} differs from the teacher's hidden size "
                f"{teacher.hidden_size} (override target_dim or the teacher config)"
            )
        student.eval()
    return teacher, students


def parameter_rows(teacher: SSLTeacher, students: dict[str, torch.nn.Module]) -> list[dict]:
    """Parameters of every model and their fraction of the teacher's; the baseline with and without its heads."""
    teacher_count = count_parameters(teacher)
    rows = [{"model": "teacher (WavLM Base+ architecture)", "parameters": teacher_count}]
    for name, student in students.items():
        counts = parameter_counts(student)
        if counts["distillation"] != counts["inference"]:  # the baseline, with its heads
            rows.append({"model": f"{name}, with prediction heads", "parameters": counts["distillation"]})
            name = f"{name}, without heads"
        rows.append({"model": name, "parameters": counts["inference"]})
    for row in rows:
        row["fraction_of_teacher"] = row["parameters"] / teacher_count
    return rows


def flop_rows(teacher: SSLTeacher, students: dict[str, torch.nn.Module], wavs: torch.Tensor) -> list[dict]:
    """Floating-point operations of one forward on ``wavs``, against the teacher's and the baseline's."""
    flops = {"teacher": forward_flops(teacher, wavs)}
    flops.update({name: forward_flops(student, wavs) for name, student in students.items()})
    baseline = flops[STUDENT_NAMES["baseline"]]
    return [
        {
            "model": name,
            "flops": count,
            "fraction_of_teacher": count / flops["teacher"],
            "vs_baseline": count / baseline,
        }
        for name, count in flops.items()
    ]
