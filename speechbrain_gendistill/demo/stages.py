"""The whole job in miniature, in one command: corpus, teacher, two distillations, probes, report.

    python -m speechbrain_gendistill.demo --output_folder DIR [--quick] [--ablations [NAME ...]]

1. builds the synthetic mini-LibriSpeech (``corpus.py``);
2. trains a small WavLM teacher on it from scratch (``teacher_training.py``);
3. distils the teacher twice with the distillation recipe
   (``recipes/LibriSpeech/distill/train.py``): the DistilHuBERT baseline and
   GenDistiller, on the same data for the same number of updates;
4. trains the same frozen-feature CTC probe (``recipes/LibriSpeech/ASR/CTC/train.py``)
   on the teacher, the baseline, GenDistiller and, as a control, the teacher's
   untrained initial weights, and tests each on the test split;
5. measures parameters, forward time (interleaved, median) and each layer's L1
   and cosine on the dev split, and writes ``report.md`` and two plots.

The recipes run through their own entry points, in this process, with the
command-line overrides printed so that each step can be rerun by hand. Every
finished step is recorded in ``DIR/stages.json``; a rerun reuses it (and says
so), and an interrupted recipe resumes from its last checkpoint. What each
step runs is set in ``hparams/demo/demo.yaml``.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import runpy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from hyperpyyaml.core import recursive_update

from speechbrain_gendistill.audio_check import load_audio
from speechbrain_gendistill.checkpoints import IntegrityCheckpointer
from speechbrain_gendistill.corpus import RECORD_NAME, synthesize_corpus
from speechbrain_gendistill.export import STUDENT_CLASSES, load_student, read_export_config
from speechbrain_gendistill.student import DistilHuBERTStudent, DistillationStudent
from speechbrain_gendistill.teacher import SSLTeacher
from speechbrain_gendistill.teacher_training import initial_teacher, is_saved_model, unpack_teacher
from speechbrain_gendistill.teacher_training import main as teacher_training_main

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "hparams" / "demo" / "demo.yaml"
# The settings a built stage depends on: a folder built with others is not reused.
BUILD_KEYS = ("seed", "corpus_splits", "teacher", "target_layers", "distill", "probe")
TEST_SPLIT = "test-synth"
DEV_SPLIT = "dev-synth"
BASELINE, GENDISTILLER = "distilhubert", "gendistiller"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def load_config(path: str | Path = DEFAULT_CONFIG, quick: bool = False) -> dict[str, Any]:
    """Reads the demo's YAML; with ``quick`` its ``quick`` section is merged over the rest.

    Example
    -------
    >>> full, quick = load_config(), load_config(quick=True)
    >>> full["corpus_splits"]["train-synth"] != quick["corpus_splits"]["train-synth"]
    True
    >>> "quick" in quick
    False
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    quick_section = config.pop("quick", {})
    if quick:
        try:
            recursive_update(config, copy.deepcopy(quick_section), must_match=True)
        except KeyError as error:
            raise ValueError(f"{path}: the quick section names a key the rest does not have: {error}") from error
    return config


def check_output_folder(folder: Path, config: dict[str, Any]) -> None:
    """Records the build settings in ``folder``, or fails if it was built with others."""
    record = folder / "demo_config.json"
    settings = {key: config[key] for key in BUILD_KEYS}
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous != json.loads(json.dumps(settings)):
            differ = sorted(key for key in BUILD_KEYS if previous.get(key) != json.loads(json.dumps(settings[key])))
            raise ValueError(
                f"{folder} was built with other demo settings ({', '.join(differ)} differ, e.g. --quick or not): "
                "use another --output_folder, or delete this one"
            )
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, indent=2) + "\n")


def overrides_to_args(overrides: dict[str, Any]) -> list[str]:
    """``{key: value}`` -> SpeechBrain command-line overrides (``--key=value``, values in YAML flow style).

    Example
    -------
    >>> overrides_to_args({"number_of_epochs": 2, "target_layers": [2, 4], "student_overrides": {"d_model": 8}})
    ['--number_of_epochs=2', '--target_layers=[2, 4]', '--student_overrides={d_model: 8}']
    """
    args = []
    for key, value in overrides.items():
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=1 << 16)
        args.append(f"--{key}={text.strip().removesuffix('...').strip()}")
    return args


# ---------------------------------------------------------------------------
# Running the stages
# ---------------------------------------------------------------------------


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


class Demo:
    """The demo's stages over one output folder (see the module docstring); ``run`` runs them all.

    Arguments
    ---------
    config : dict
        The demo's settings (:func:`load_config`), with ``teacher.train_here`` set.
    folder : Path
        The output folder.
    ablations : list of str, optional
        Also distil and probe these GenDistiller variants of ``config["ablations"]``.

    Example
    -------
    >>> config = load_config(quick=True)
    >>> config["teacher"]["train_here"] = False
    >>> sorted(Demo(config, Path("out")).encoders())
    ['distilhubert', 'gendistiller', 'random_teacher', 'teacher']
    """

    def __init__(self, config: dict[str, Any], folder: Path, ablations: list[str] | None = None) -> None:
        self.config = config
        self.train_teacher_here = config["teacher"]["train_here"]
        self.folder = folder.resolve()
        self.corpus = self.folder / "corpus"
        self.teacher_folder = self.folder / "teacher"
        self.students = dict(config["distill"]["students"])
        unknown = sorted(set(ablations or ()) - set(config["ablations"]))
        if unknown:
            raise ValueError(f"unknown ablations {unknown}; the demo's YAML has {sorted(config['ablations'])}")
        if ablations:
            base = self.students[GENDISTILLER]
            for name in ablations:
                ablation = config["ablations"][name]
                variant = copy.deepcopy(base)
                variant["label"] = ablation["label"]
                variant["overrides"].update(copy.deepcopy(ablation["overrides"]))
                self.students[name] = variant
        self.stages = StageRunner(self.folder, total=5)

    @property
    def trained_teacher(self) -> Path:
        return self.teacher_folder / "trained"

    @property
    def random_teacher(self) -> Path:
        return self.teacher_folder / "random_init"

    def distill_folder(self, name: str) -> Path:
        return self.folder / "distill" / name

    def probe_folder(self, name: str) -> Path:
        return self.folder / "probe" / name

    def encoders(self) -> dict[str, Path]:
        """What the probe runs on: name -> HF model folder or exported student."""
        sources = {"teacher": self.trained_teacher, "random_teacher": self.random_teacher}
        sources.update({name: self.distill_folder(name) / "student" for name in self.students})
        return sources

    def run(self) -> str:
        self.build_corpus()
        self.train_teacher()
        for name in self.students:
            self.distill(name)
        for name, source in self.encoders().items():
            self.probe(name, source)
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
        shipped = REPO_ROOT / settings["shipped"]
        if self.train_teacher_here:
            args = [
                str(REPO_ROOT / settings["hparams"]),
                f"--data_folder={self.corpus}",
                f"--output_folder={self.teacher_folder}",
                *overrides_to_args(settings["overrides"]),
            ]
            what = "a small WavLM trained from scratch with character CTC"

            def build() -> None:
                self.stages.command([sys.executable, "-m", "speechbrain_gendistill.teacher_training"], args)
                teacher_training_main(args)

        else:
            what = f"the repository's trained WavLM ({settings['shipped']}) and its untrained initial weights"

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
    def distill(self, name: str) -> None:
        student = self.students[name]
        output = self.distill_folder(name)
        script = REPO_ROOT / "recipes" / "LibriSpeech" / "distill" / "train.py"
        overrides = {
            "data_folder": str(self.corpus),
            "output_folder": str(output),
            "teacher_source": str(self.trained_teacher),
            "target_layers": self.config["target_layers"],
            **self.config["distill"]["overrides"],
            **student["overrides"],
        }
        self.run_recipe(
            3,
            f"distill {name}",
            f"{student['label']} from the teacher",
            script,
            student["hparams"],
            overrides,
            output / "student" / "model.safetensors",
        )

    # 4
    def probe(self, name: str, source: Path) -> None:
        settings = self.config["probe"]
        output = self.probe_folder(name)
        script = REPO_ROOT / "recipes" / "LibriSpeech" / "ASR" / "CTC" / "train.py"
        overrides = {
            "data_folder": str(self.corpus),
            "output_folder": str(output),
            "student_source": str(source),
            "test_splits": [TEST_SPLIT],
            **settings["overrides"],
        }
        self.run_recipe(
            4,
            f"probe {name}",
            f"frozen-feature CTC probe on {source.relative_to(self.folder)}",
            script,
            settings["hparams"],
            overrides,
            output / "wer_summary.json",
        )

    def run_recipe(
        self,
        number: int,
        name: str,
        what: str,
        script: Path,
        hparams_file: str,
        overrides: dict[str, Any],
        result: Path,
    ) -> None:
        """Stage ``number``: a recipe's ``train.py`` with ``overrides``, done once ``result`` exists."""
        args = [str(REPO_ROOT / hparams_file), *overrides_to_args(overrides)]

        def build() -> None:
            self.stages.command([sys.executable, str(script)], args)
            run_script(script, args)

        self.stages.run(number, name, what, result.is_file, build)

    # 5
    def report(self) -> str:
        measurements_path = self.folder / "measurements.json"

        def build() -> None:
            measurements = measure(self)
            measurements_path.write_text(json.dumps(measurements, indent=2) + "\n")

        def done() -> bool:
            # Measured after everything it reports on, and on the same students.
            if self.stages.built or not measurements_path.is_file():
                return False
            return set(json.loads(measurements_path.read_text())["layers"]) == set(self.students)

        self.stages.run(5, "report", "parameters, forward time, dev-split L1 and cosine per layer", done, build)
        measurements = json.loads(measurements_path.read_text())
        plot_training_curves(self, self.folder / "training_curves.png")
        plot_layer_cosine(
            measurements,
            {name: student["label"] for name, student in self.students.items()},
            self.folder / "layer_cosine.png",
        )
        text = render_report(self, measurements)
        (self.folder / "report.md").write_text(text)
        return text


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def count_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def student_for_distillation_figures(folder: Path) -> DistillationStudent:
    """A distilled student able to ``generate`` its K predicted layers.

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
def layer_figures(teacher: SSLTeacher, students: dict[str, DistillationStudent], files: list[Path]) -> dict:
    """Frame-weighted means over ``files`` (one at a time, no padding) of, per student:

    - ``l1`` and ``cosine`` of each generated layer against its target layer;
    - ``cosine_matrix`` [K, L + 1]: cosine of generated layer k with every teacher layer
      (``hidden_states[0]`` included).
    """
    totals = {name: {"l1": 0.0, "cosine": 0.0, "matrix": 0.0} for name in students}
    frames = 0
    targets = list(teacher.target_layers)
    for path in files:
        wav = load_audio(str(path)).unsqueeze(0)
        hidden = teacher.ssl(wav)[:, 0]  # [L + 1, T, D]
        frames += hidden.shape[1]
        for name, student in students.items():
            generated = student.generate(wav)[:, 0]  # [K, T, D]
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
    for forward in models.values():
        forward(wav)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, forward in models.items():
            start = time.perf_counter()
            forward(wav)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def timing_audio(files: list[Path], seconds: float, sample_rate: int = 16000) -> torch.Tensor:
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


def measure(demo: Demo) -> dict[str, Any]:
    """Everything report.md shows, as plain data."""
    files = dev_utterances(demo.corpus)
    teacher = SSLTeacher(
        str(demo.trained_teacher), demo.config["target_layers"], save_path=str(demo.teacher_folder / "hf_cache")
    )
    students = {name: student_for_distillation_figures(demo.distill_folder(name)) for name in demo.students}
    exported = {name: load_student(demo.distill_folder(name) / "student").eval() for name in demo.students}
    timing = demo.config["timing"]
    wav = timing_audio(files, timing["audio_seconds"])
    forwards = {"teacher": lambda x: teacher.ssl(x)}
    forwards.update({name: student for name, student in exported.items()})
    seconds = forward_times(forwards, wav, timing["repeats"])
    probes = {}
    for name in demo.encoders():
        summary = json.loads((demo.probe_folder(name) / "wer_summary.json").read_text())[TEST_SPLIT]
        # The probe tests its checkpoint of lowest dev WER: that WER is the dev figure.
        dev_wer = min(row["valid_WER"] for row in read_train_log(demo.probe_folder(name) / "train_log.txt"))
        probes[name] = {"dev_WER": dev_wer, "WER": summary["WER"], "CER": summary["CER"]}
    steps = {}
    for name in demo.students:
        log = read_train_log(demo.distill_folder(name) / "train_log.txt")
        steps[name] = int(log[-1]["optimizer_steps"]) if log else None
    return {
        "target_layers": list(teacher.target_layers),
        "teacher_layers": teacher.num_layers,
        "parameters": {
            "teacher": count_parameters(teacher.ssl.model),
            **{name: count_parameters(student) for name, student in exported.items()},
        },
        "forward_seconds": seconds,
        "timing_audio_seconds": timing["audio_seconds"],
        "threads": torch.get_num_threads(),
        "layers": layer_figures(teacher, students, files),
        "dev_utterances": len(files),
        "probes": probes,
        "distill_steps": steps,
    }


# ---------------------------------------------------------------------------
# Report and plots
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_folder", required=True, type=Path, help="where everything goes")
    parser.add_argument("--quick", action="store_true", help="a small, fast run (tests)")
    parser.add_argument(
        "--ablations",
        nargs="*",
        metavar="NAME",
        help="also distil and probe the GenDistiller variants of the demo's YAML (all, or those named)",
    )
    parser.add_argument(
        "--train_teacher",
        action="store_true",
        help="train the teacher here (as the shipped one was, much longer than the rest) instead of unpacking it",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the demo's settings")
    args = parser.parse_args(argv)
    config = load_config(args.config, quick=args.quick)
    config["teacher"]["train_here"] = args.train_teacher
    check_output_folder(args.output_folder, config)
    start = time.perf_counter()
    ablations = None if args.ablations is None else (args.ablations or list(config["ablations"]))
    text = Demo(config, args.output_folder, ablations=ablations).run()
    print(text)
    print(f"Report: {args.output_folder / 'report.md'} ({time.perf_counter() - start:.0f} s this run)")
    return text


if __name__ == "__main__":
    main()
