"""The claim study: does GenDistiller match or beat DistilHuBERT at the same budget, with seeds, on four tasks?

    python -m speechbrain_gendistill.demo.study --output_folder results/study            # every stage
    python -m speechbrain_gendistill.demo.study --output_folder results/study --stage screen
    python -m speechbrain_gendistill.demo.study --output_folder results/study --table   # README tables

Stages (``hparams/demo/study.yaml`` sets each), all at the demo's scale and
through the demo's own stages (:class:`~speechbrain_gendistill.demo.stages.Demo`),
so every run is a distillation recipe and four probe recipes:

1. ``screen``: one seed, the CTC teacher, every variant of the YAML at the
   demo's budget; the two best GenDistiller variants on **dev** (mean rank over
   the four tasks' dev metrics) go on.
2. ``learning_rate``: for the baseline and the two finalists, a sweep of the
   distillation learning rate (one seed), each student's rate chosen on its
   dev distillation loss.
3. ``confirm``: the baseline and the finalists at their rates, every seed,
   every teacher of the YAML; test metrics with paired bootstrap intervals.
   The best finalist is the one ranked first on the CTC teacher's dev metrics.
4. ``early_exit``: the best finalist of the confirmation (first seed) cut
   after each generated layer: every task's dev and test figure, forward time.
5. ``budgets``: the final pair (the baseline, the best finalist) at 1x, 2x, 4x
   the updates, one seed: dev loss and probe curves, where the lines cross.

Every run's settings and figures go to ``<output_folder>/results.json``, from
which ``--table`` renders the README's tables. Nothing is chosen on test.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from hyperpyyaml.core import recursive_update

from speechbrain_gendistill.core.resources import shipped_path
from speechbrain_gendistill.demo.config import BASELINE, GENDISTILLER, check_output_folder, load_config
from speechbrain_gendistill.demo.measurements import dev_utterances, forward_times, read_train_log, timing_audio
from speechbrain_gendistill.demo.report import render_tables
from speechbrain_gendistill.demo.stages import Demo
from speechbrain_gendistill.lobes import DistilledSSL

DEFAULT_STUDY = shipped_path("hparams/demo/study.yaml")
STAGES = ("screen", "learning_rate", "confirm", "early_exit", "budgets")


def load_study(path: str | Path = DEFAULT_STUDY) -> dict[str, Any]:
    """The study's settings, with the demo's settings they build on under ``demo``.

    Example
    -------
    >>> study = load_study()
    >>> sorted(study["screen"]["variants"])[:2], study["demo"]["target_layers"]
    (['gendistiller_1_block_d192', 'gendistiller_d128x2'], [2, 4, 6])
    """
    with open(path, encoding="utf-8") as handle:
        study = yaml.safe_load(handle)
    study["demo"] = load_config(shipped_path(study["demo_config"]))
    recursive_update(study["demo"], copy.deepcopy(study.get("demo_overrides", {})), must_match=True)
    study["demo"]["distill"]["students"] = copy.deepcopy(study["students"])
    return study


def dev_ranking(measurements: dict[str, Any], candidates: list[str]) -> list[str]:
    """``candidates`` ordered by their mean rank over the tasks' dev metrics (best first; seeds averaged).

    Example
    -------
    >>> def task(higher, a, b):
    ...     return {"higher_is_better": higher, "upstreams": {"a": {"dev": {"mean": a}}, "b": {"dev": {"mean": b}}}}
    >>> dev_ranking({"probes": {"KS": task(True, 70, 60), "PR": task(False, 30, 35)}}, ["b", "a"])  # a better on both
    ['a', 'b']
    """
    ranks = {name: 0.0 for name in candidates}
    for statistics in measurements["probes"].values():
        sign = -1.0 if statistics["higher_is_better"] else 1.0
        ordered = sorted(candidates, key=lambda name: sign * statistics["upstreams"][name]["dev"]["mean"])
        for rank, name in enumerate(ordered):
            ranks[name] += rank / len(measurements["probes"])
    return sorted(candidates, key=lambda name: (ranks[name], candidates.index(name)))


def final_dev_loss(demo: Demo, name: str) -> float:
    """The distillation's dev loss at its last epoch (first seed): what a learning rate is chosen on."""
    log = read_train_log(demo.distill_folder(name, demo.seeds[0]) / "train_log.txt")
    return log[-1]["valid_loss"]


class Study:
    """The study's stages over one output folder; each stage's choices and figures are kept in ``results.json``.

    Arguments
    ---------
    study : dict
        :func:`load_study`'s settings.
    folder : Path
        The output folder; each stage runs a demo in a subfolder.
    teachers : list of str, optional
        The confirmation's teachers, when not all of the YAML's.
    jobs : int
        Recipes run at once in each stage's demo.
    """

    def __init__(self, study: dict[str, Any], folder: Path, teachers: list[str] | None = None, jobs: int = 1) -> None:
        self.study = study
        self.jobs = jobs
        self.teachers = teachers
        self.folder = folder.resolve()
        self.results_path = self.folder / "results.json"
        self.results = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {}

    def save(self, stage: str, record: dict[str, Any]) -> None:
        """Keeps ``record`` under ``stage`` in results.json, read again first: stages may run side by side."""
        self.folder.mkdir(parents=True, exist_ok=True)
        results = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {}
        if stage == "confirm":  # one entry per teacher, each possibly from its own process
            record = {**results.get("confirm", {}), **record}
        results[stage] = record
        temporary = self.results_path.with_name(f".{self.results_path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(temporary, self.results_path)
        self.results = results

    def demo(
        self,
        stage: str,
        teacher: str,
        students: dict[str, dict],
        seeds: list[int],
        tag: str | None = None,
        probes: bool = True,
    ) -> tuple[Demo, dict[str, Any]]:
        """Runs the demo's stages in ``<folder>/<stage>[-tag]-<teacher>`` with these students and seeds."""
        demo = self.prepared_demo(stage, teacher, students, seeds, tag)
        folder = demo.folder
        start = time.perf_counter()
        demo.run(probes)
        measurements = json.loads((folder / "measurements.json").read_text()) if probes else None
        record = {
            "folder": str(folder.relative_to(self.folder)),
            "teacher": teacher,
            "seeds": seeds,
            "students": students,
            "measurements": measurements,
            "stage_seconds": demo.stages.seconds_by_kind(),
            "wall_seconds_this_run": round(time.perf_counter() - start, 1),
        }
        return demo, record

    def prepared_demo(
        self, stage: str, teacher: str, students: dict[str, dict], seeds: list[int], tag: str | None = None
    ) -> Demo:
        """The demo of ``<folder>/<stage>[-tag]-<teacher>`` (a folder built with other settings is refused)."""
        config = copy.deepcopy(self.study["demo"])
        config["teacher"] = copy.deepcopy(self.study["teachers"][teacher])
        config["teacher"]["train_here"] = False
        config["distill"]["students"] = copy.deepcopy(students)
        config["seeds"] = list(seeds)
        folder = self.folder / "-".join(part for part in (stage, tag, teacher) if part)
        check_output_folder(folder, config)
        return Demo(config, folder, jobs=self.jobs)

    def variant(self, name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A student of the study: the demo's baseline or GenDistiller with a variant's overrides on top."""
        variants = {**self.study["screen"]["variants"], BASELINE: {"student": BASELINE, **self.study["baseline"]}}
        spec = variants[name]
        student = copy.deepcopy(self.study["demo"]["distill"]["students"][spec.get("student", GENDISTILLER)])
        student["label"] = spec.get("label", student["label"])
        student["overrides"].update(copy.deepcopy(spec["overrides"]))
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(student["overrides"].get(key), dict):
                student["overrides"][key].update(value)
            else:
                student["overrides"][key] = value
        return student

    def screen(self) -> None:
        settings = self.study["screen"]
        students = {name: self.variant(name) for name in [BASELINE, *settings["variants"]]}
        _, record = self.demo("screen", settings["teacher"], students, settings["seeds"])
        ranking = dev_ranking(record["measurements"], list(settings["variants"]))
        record["dev_ranking"] = ranking
        record["finalists"] = ranking[: settings["finalists"]]
        self.save("screen", record)

    def learning_rate(self) -> None:
        settings = self.study["learning_rate"]
        finalists = self.results["screen"]["finalists"]
        students = {}
        for name in [BASELINE, *finalists]:
            for lr in settings["values"]:
                students[f"{name}@{lr:g}"] = self.variant(name, {"lr": lr})
                students[f"{name}@{lr:g}"]["label"] += f", lr {lr:g}"
        demo, record = self.demo("learning_rate", settings["teacher"], students, settings["seeds"], probes=False)
        losses = {key: final_dev_loss(demo, key) for key in students}
        chosen = {
            name: min(settings["values"], key=lambda lr, name=name: losses[f"{name}@{lr:g}"])
            for name in [BASELINE, *finalists]
        }
        record.update(dev_loss=losses, chosen=chosen)
        self.save("learning_rate", record)

    def final_students(self) -> dict[str, dict[str, Any]]:
        chosen = self.results["learning_rate"]["chosen"]
        return {name: self.variant(name, {"lr": lr}) for name, lr in chosen.items()}

    def confirm(self) -> None:
        settings = self.study["confirm"]
        for teacher in self.teachers or settings["teachers"]:
            self.save("confirm", {teacher: self.demo("confirm", teacher, self.final_students(), settings["seeds"])[1]})

    def best_finalist(self) -> str:
        """The finalist ranked first on the confirmation's dev metrics with the CTC teacher (or the screen's)."""
        finalists = self.results["screen"]["finalists"]
        confirmed = self.results.get("confirm", {}).get("ctc")
        return dev_ranking(confirmed["measurements"], finalists)[0] if confirmed else finalists[0]

    def early_exit(self) -> None:
        settings = self.study["early_exit"]
        teacher, seed = settings["teacher"], self.study["confirm"]["seeds"][0]
        demo = self.prepared_demo("confirm", teacher, self.final_students(), self.study["confirm"]["seeds"])
        best = self.best_finalist()
        source = demo.distill_folder(best, seed) / "student"
        layers = len(demo.target_layers(best))
        demo.stages.run_recipes(
            [demo.probe(task, best, source, seed, max_layers=k) for task in demo.tasks for k in range(1, layers)]
        )
        figures = {}
        for k in range(1, layers + 1):
            name = best if k == layers else f"{best}@exit{k}"
            figures[str(k)] = {}
            for task in demo.tasks:
                result = json.loads((demo.probe_folder(task, name, seed) / "results.json").read_text())
                figures[str(k)][task] = {"dev": result["dev"], "test": result["test"], "metric": result["metric"]}
        wav = timing_audio(dev_utterances(demo.corpus), demo.config["timing"]["audio_seconds"])
        models = {str(k): DistilledSSL(source=str(source), max_layers=k).eval() for k in range(1, layers + 1)}
        models[BASELINE] = DistilledSSL(source=str(demo.distill_folder(BASELINE, seed) / "student")).eval()
        with torch.no_grad():
            seconds = forward_times(models, wav, demo.config["timing"]["repeats"])
        record = {"student": best, "teacher": teacher, "seed": seed, "figures": figures, "forward_seconds": seconds}
        record["threads"] = torch.get_num_threads()
        self.save("early_exit", record)

    def budgets(self) -> None:
        settings = self.study["budgets"]
        best = self.best_finalist()
        pair = {name: student for name, student in self.final_students().items() if name in (BASELINE, best)}
        epochs = self.study["demo"]["distill"]["overrides"]["number_of_epochs"]
        records = {}
        for factor in settings["factors"]:
            students = copy.deepcopy(pair)
            for student in students.values():
                student["overrides"]["number_of_epochs"] = epochs * factor
            demo, record = self.demo("budgets", settings["teacher"], students, settings["seeds"], f"x{factor}")
            record["dev_loss"] = {name: final_dev_loss(demo, name) for name in students}
            records[str(factor)] = record
        self.save("budgets", records)

    def run(self, stages: list[str]) -> None:
        for stage in stages:
            print(f"=== study stage: {stage}", flush=True)
            getattr(self, stage)()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_folder", required=True, type=Path, help="where every run goes")
    parser.add_argument("--study", type=Path, default=DEFAULT_STUDY, help="the study's settings")
    parser.add_argument("--stage", nargs="*", choices=STAGES, help="the stages to run (default: all, in order)")
    parser.add_argument("--teachers", nargs="*", help="the confirmation's teachers (default: the YAML's)")
    parser.add_argument("--jobs", type=int, default=1, help="recipes run at once (see the demo's --jobs)")
    parser.add_argument("--table", action="store_true", help="print the README's tables from results.json")
    args = parser.parse_args(argv)
    study = Study(load_study(args.study), args.output_folder, args.teachers, args.jobs)
    if args.table:
        print(render_tables(study.results, study.study))
        return
    study.run(args.stage or list(STAGES))


if __name__ == "__main__":
    main()
