"""The demo's stages: corpus, teacher, distillations, probes, report; each recorded once built, reused on a rerun."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from speechbrain_gendistill.core.resources import shipped_path
from speechbrain_gendistill.demo.config import GENDISTILLER, overrides_to_args
from speechbrain_gendistill.demo.corpus import RECORD_NAME, synthesize_corpus
from speechbrain_gendistill.demo.measurements import measure
from speechbrain_gendistill.demo.report import plot_layer_cosine, plot_training_curves, render_report
from speechbrain_gendistill.demo.runner import RecipeStage, StageRunner
from speechbrain_gendistill.demo.teacher_ctc import initial_teacher, unpack_teacher
from speechbrain_gendistill.demo.teacher_ctc import main as teacher_training_main
from speechbrain_gendistill.lobes.teacher import is_saved_model

CORPUS = "corpus"  # a task's `data` that means the demo's synthetic corpus


class Demo:
    """The demo's stages over one output folder (see the package docstring); ``run`` runs them all.

    Arguments
    ---------
    config : dict
        The demo's settings (:func:`~speechbrain_gendistill.demo.config.load_config`), with
        ``teacher.train_here`` and ``seeds`` (those this run uses) set.
    folder : Path
        The output folder.
    ablations : list of str, optional
        Also distil and probe these variants of ``config["ablations"]``: each
        is the GenDistiller student (or the one its ``student`` key names)
        with the ablation's recipe overrides.
    jobs : int
        How many recipes (distillations, probes) run at once, each in its own
        worker process (:mod:`~speechbrain_gendistill.demo.runner`).

    Example
    -------
    >>> from speechbrain_gendistill.demo.config import load_config
    >>> config = load_config(quick=True)
    >>> config["teacher"]["train_here"] = False
    >>> demo = Demo(config, Path("out"))
    >>> sorted(demo.upstreams(config["seeds"][0])), sorted(demo.tasks)
    (['distilhubert', 'gendistiller', 'random_teacher', 'teacher'], ['ASR', 'KS', 'PR', 'SID'])
    """

    def __init__(self, config: dict[str, Any], folder: Path, ablations: list[str] | None = None, jobs: int = 1) -> None:
        self.config = config
        self.seeds = list(config["seeds"])
        self.train_teacher_here = config["teacher"]["train_here"]
        self.folder = folder.resolve()
        self.corpus = self.folder / "corpus"
        self.teacher_folder = self.folder / "teacher"
        self.tasks = dict(config["tasks"])
        self.students = dict(config["distill"]["students"])
        unknown = sorted(set(ablations or ()) - set(config["ablations"]))
        if unknown:
            raise ValueError(f"unknown ablations {unknown}; the demo's YAML has {sorted(config['ablations'])}")
        for name in ablations or ():
            ablation = config["ablations"][name]
            variant = copy.deepcopy(self.students[ablation.get("student", GENDISTILLER)])
            variant["label"] = ablation["label"]
            variant["overrides"].update(copy.deepcopy(ablation["overrides"]))
            self.students[name] = variant
        for name in self.students:
            missing = sorted(set(config["target_layers"]) - set(self.target_layers(name)))
            if missing:
                raise ValueError(f"student {name!r} learns target_layers {self.target_layers(name)}, without {missing}")
        self.stages = StageRunner(self.folder, total=5, jobs=jobs)

    def target_layers(self, name: str) -> list[int]:
        """The teacher layers student ``name`` learns: the demo's, or more (e.g. every layer)."""
        return list(self.students[name]["overrides"].get("target_layers", self.config["target_layers"]))

    @property
    def trained_teacher(self) -> Path:
        return self.teacher_folder / "trained"

    @property
    def random_teacher(self) -> Path:
        return self.teacher_folder / "random_init"

    def distill_folder(self, name: str, seed: int) -> Path:
        return self.folder / "distill" / name / str(seed)

    def probe_folder(self, task: str, upstream: str, seed: int) -> Path:
        return self.folder / "probe" / task / upstream / str(seed)

    def upstreams(self, seed: int) -> dict[str, Path]:
        """What the probes read with ``seed``: name -> HF model folder or exported student."""
        sources = {"teacher": self.trained_teacher, "random_teacher": self.random_teacher}
        sources.update({name: self.distill_folder(name, seed) / "student" for name in self.students})
        return sources

    def labels(self) -> dict[str, str]:
        """Upstream name -> its label in the report."""
        teacher = self.config["teacher"]["label"]
        labels = {"teacher": teacher, "random_teacher": f"{teacher}, untrained initial weights (control)"}
        labels.update({name: student["label"] for name, student in self.students.items()})
        return labels

    def run(self, probes: bool = True) -> str:
        """Runs every stage and returns report.md's text; without ``probes``, only corpus, teacher and distillations.

        A student's probes start once its distillation has finished; the
        teacher's start at once.
        """
        self.build_corpus()
        self.train_teacher()
        recipes = [self.distill(name, seed) for seed in self.seeds for name in self.students]
        if probes:
            recipes += [
                self.probe(task, upstream, source, seed)
                for task in self.tasks
                for seed in self.seeds
                for upstream, source in self.upstreams(seed).items()
            ]
        self.stages.run_recipes(recipes)
        return self.report() if probes else ""

    # 1
    def build_corpus(self) -> None:
        splits = {split: tuple(sizes) for split, sizes in self.config["corpus_splits"].items()}
        self.stages.run(
            1,
            "corpus",
            f"synthetic mini-LibriSpeech in {self.corpus}",
            lambda: (self.corpus / RECORD_NAME).is_file(),
            lambda: synthesize_corpus(self.corpus, seed=self.config["seed"], splits=splits),
        )

    # 2
    def train_teacher(self) -> None:
        settings = self.config["teacher"]
        shipped = shipped_path(settings["shipped"])
        if self.train_teacher_here:
            args = [
                str(shipped_path(settings["hparams"])),
                f"--data_folder={self.corpus}",
                f"--output_folder={self.teacher_folder}",
                *overrides_to_args(settings["overrides"]),
            ]
            what = "a small WavLM trained from scratch with character CTC"

            def build() -> None:
                self.stages.command([sys.executable, "-m", "speechbrain_gendistill.demo.teacher_ctc"], args)
                teacher_training_main(args)

        else:
            what = f"the repository's trained teacher ({settings['shipped']}) and its untrained initial weights"

            def build() -> None:
                unpack_teacher(shipped, self.trained_teacher)
                initial_teacher(shipped, self.random_teacher)

        self.stages.run(
            2,
            "teacher",
            what,
            lambda: is_saved_model(self.trained_teacher) and is_saved_model(self.random_teacher),
            build,
        )

    # 3
    def distill(self, name: str, seed: int) -> RecipeStage:
        student = self.students[name]
        output = self.distill_folder(name, seed)
        overrides = {
            "seed": seed,
            "data_folder": str(self.corpus),
            "output_folder": str(output),
            "teacher_source": str(self.trained_teacher),
            "target_layers": self.config["target_layers"],
            **self.config["distill"]["overrides"],
            **student["overrides"],
        }
        return self.recipe(
            3,
            f"distill {name} seed {seed}",
            f"{student['label']} from the teacher",
            "recipes/LibriSpeech/distill/train.py",
            student["hparams"],
            overrides,
            output / "student" / "model.safetensors",
        )

    # 4
    def probe(self, task: str, upstream: str, source: Path, seed: int, max_layers: int | None = None) -> RecipeStage:
        """Task ``task``'s probe of ``source``; with ``max_layers``, of its first layers only (an early exit)."""
        settings = self.tasks[task]
        name = upstream if max_layers is None else f"{upstream}@exit{max_layers}"
        output = self.probe_folder(task, name, seed)
        data = self.corpus if settings["data"] == CORPUS else shipped_path(settings["data"])
        overrides = {
            "seed": seed,
            "data_folder": str(data),
            "output_folder": str(output),
            # One cache for every task: ASR and PR read the same utterances, and the key tells the rest apart.
            "cache_folder": str(self.folder / "probe" / "feature_cache"),
            "upstream_source": str(source),
            **settings["overrides"],
            **({} if max_layers is None else {"max_layers": max_layers}),
        }
        return self.recipe(
            4,
            f"probe {task} {name} seed {seed}",
            f"{settings['label']} on {source.relative_to(self.folder)}"
            + ("" if max_layers is None else f", its first {max_layers} layer(s)"),
            settings["script"],
            settings["hparams"],
            overrides,
            output / "results.json",
            needs=(f"distill {upstream} seed {seed}",) if upstream in self.students else (),
        )

    def recipe(
        self,
        number: int,
        name: str,
        what: str,
        script: str,
        hparams_file: str,
        overrides: dict[str, Any],
        result: Path,
        needs: tuple[str, ...] = (),
    ) -> RecipeStage:
        """Stage ``number``: a recipe's ``train.py`` with ``overrides``, done once ``result`` exists."""
        args = [str(shipped_path(hparams_file)), *overrides_to_args(overrides)]
        return RecipeStage(number, name, what, shipped_path(script), args, result, needs)

    # 5
    def report(self) -> str:
        measurements_path = self.folder / "measurements.json"

        def build() -> None:
            measurements = measure(self)
            measurements_path.write_text(json.dumps(measurements, indent=2) + "\n")

        def done() -> bool:
            # Measured after everything it reports on, and on the same students and seeds.
            if self.stages.built or not measurements_path.is_file():
                return False
            measured = json.loads(measurements_path.read_text())
            return set(measured["layers"]) == set(self.students) and measured["seeds"] == self.seeds

        self.stages.run(5, "report", "parameters, forward time, layer figures, probe statistics", done, build)
        measurements = json.loads(measurements_path.read_text())
        plot_training_curves(self, self.folder / "training_curves.png")
        plot_layer_cosine(measurements, self.labels(), self.folder / "layer_cosine.png")
        text = render_report(self, measurements)
        (self.folder / "report.md").write_text(text)
        return text
