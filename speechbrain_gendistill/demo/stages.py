"""The demo's stages: corpus, teacher, distillations, probes, report; each recorded once built, reused on a rerun."""

from __future__ import annotations

import copy
import json
import re
import runpy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechbrain_gendistill.core.resources import shipped_path
from speechbrain_gendistill.demo.config import GENDISTILLER, overrides_to_args
from speechbrain_gendistill.demo.corpus import RECORD_NAME, synthesize_corpus
from speechbrain_gendistill.demo.measurements import measure
from speechbrain_gendistill.demo.report import plot_layer_cosine, plot_training_curves, render_report
from speechbrain_gendistill.demo.teacher_ctc import initial_teacher, unpack_teacher
from speechbrain_gendistill.demo.teacher_ctc import main as teacher_training_main
from speechbrain_gendistill.lobes.teacher import is_saved_model

CORPUS = "corpus"  # a task's `data` that means the demo's synthetic corpus


def run_script(script: Path, args: list[str]) -> None:
    """Runs a recipe's ``train.py`` in this process, exactly as ``python train.py ARGS`` would."""
    saved_argv = sys.argv
    sys.argv = [str(script), *args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved_argv


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


class StageRunner:
    """Runs the numbered stages, records what finished in ``stages.json``, and reuses it on a rerun.

    Arguments
    ---------
    folder : Path
        The demo's output folder (holds ``stages.json``).
    total : int
        Number of stages, for the progress lines.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> StageRunner(folder, total=1).run(1, "hello", "a file", (folder / "a").is_file, (folder / "a").touch)
    [1/1] hello: a file ...
    [1/1] hello: done in 0 s
    >>> StageRunner(folder, total=1).run(1, "hello", "a file", (folder / "a").is_file, (folder / "a").touch)
    [1/1] hello: reused from an earlier run (a file; built in 0 s)
    """

    def __init__(self, folder: Path, total: int) -> None:
        self.folder = folder
        self.total = total
        self.record_path = folder / "stages.json"
        self.record = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}
        self.built = []  # the stages this run built (not reused)

    def run(self, number: int, name: str, what: str, done: Callable[[], bool], build: Callable[[], None]) -> None:
        """Calls ``build`` unless an earlier run recorded stage ``name`` and ``done()`` finds its outputs."""
        prefix = f"[{number}/{self.total}] {name}:"
        if name in self.record and done():
            print(f"{prefix} reused from an earlier run ({what}; built in {self.record[name]['seconds']:.0f} s)")
            return
        print(f"{prefix} {what} ...", flush=True)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        build()
        seconds, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        self.built.append(name)
        self.record[name] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)}
        self.record_path.write_text(json.dumps(self.record, indent=2) + "\n")
        print(f"{prefix} done in {seconds:.0f} s", flush=True)

    def command(self, program: list[str], args: list[str]) -> None:
        """Prints the command line a stage runs, to rerun it by hand."""
        print("    " + " ".join(_quote(arg) for arg in [*program, *args]), flush=True)

    def seconds_by_kind(self) -> dict[str, float]:
        """Wall-clock seconds of the recorded stages, summed by kind (the first word of a stage's name)."""
        totals: dict[str, float] = {}
        for name, info in self.record.items():
            kind = name.split()[0]
            totals[kind] = totals.get(kind, 0.0) + info["seconds"]
        return totals


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

    Example
    -------
    >>> from speechbrain_gendistill.demo.config import load_config
    >>> config = load_config(quick=True)
    >>> config["teacher"]["train_here"] = False
    >>> demo = Demo(config, Path("out"))
    >>> sorted(demo.upstreams(config["seeds"][0])), sorted(demo.tasks)
    (['distilhubert', 'gendistiller', 'random_teacher', 'teacher'], ['ASR', 'KS', 'PR', 'SID'])
    """

    def __init__(self, config: dict[str, Any], folder: Path, ablations: list[str] | None = None) -> None:
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
        self.stages = StageRunner(self.folder, total=5)

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
        """Runs every stage and returns report.md's text; without ``probes``, only corpus, teacher and distillations."""
        self.build_corpus()
        self.train_teacher()
        for seed in self.seeds:
            for name in self.students:
                self.distill(name, seed)
        if not probes:
            return ""
        for task in self.tasks:
            for seed in self.seeds:
                for upstream, source in self.upstreams(seed).items():
                    self.probe(task, upstream, source, seed)
        return self.report()

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
    def distill(self, name: str, seed: int) -> None:
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
        self.run_recipe(
            3,
            f"distill {name} seed {seed}",
            f"{student['label']} from the teacher",
            "recipes/LibriSpeech/distill/train.py",
            student["hparams"],
            overrides,
            output / "student" / "model.safetensors",
        )

    # 4
    def probe(self, task: str, upstream: str, source: Path, seed: int) -> None:
        settings = self.tasks[task]
        output = self.probe_folder(task, upstream, seed)
        data = self.corpus if settings["data"] == CORPUS else shipped_path(settings["data"])
        overrides = {
            "seed": seed,
            "data_folder": str(data),
            "output_folder": str(output),
            # One cache for every task: ASR and PR read the same utterances, and the key tells the rest apart.
            "cache_folder": str(self.folder / "probe" / "feature_cache"),
            "upstream_source": str(source),
            **settings["overrides"],
        }
        self.run_recipe(
            4,
            f"probe {task} {upstream} seed {seed}",
            f"{settings['label']} on {source.relative_to(self.folder)}",
            settings["script"],
            settings["hparams"],
            overrides,
            output / "results.json",
        )

    def run_recipe(
        self,
        number: int,
        name: str,
        what: str,
        script: str,
        hparams_file: str,
        overrides: dict[str, Any],
        result: Path,
    ) -> None:
        """Stage ``number``: a recipe's ``train.py`` with ``overrides``, done once ``result`` exists."""
        script_path = shipped_path(script)
        args = [str(shipped_path(hparams_file)), *overrides_to_args(overrides)]

        def build() -> None:
            self.stages.command([sys.executable, str(script_path)], args)
            run_script(script_path, args)

        self.stages.run(number, name, what, result.is_file, build)

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
