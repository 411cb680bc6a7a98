"""Size, speed and memory of the students against their teacher, measured in one run.

Models, at paper scale unless the settings say otherwise:

* teacher: a WavLM Base+ architecture (``transformers.WavLMConfig()``, random
  weights, which do not change speed), saved to a temporary folder and loaded
  through :class:`SSLTeacher`, as a recipe loads it;
* the DistilHuBERT baseline and GenDistiller, built from their YAML files
  (``hparams/models``) by HyperPyYAML, so the YAML is the source of truth;
* variants of GenDistiller built from its YAML with other values: compact
  front-ends (``conv_layers`` with fewer channels), and with ``--candidates``
  smaller generators.

Measured: parameters; the arithmetic of one forward (floating-point operations
counted by ``torch.utils.flop_counter``: the speed-up that equal efficiency
would give); forward time on one utterance (models interleaved round
robin within each repetition; medians; ratios to the teacher measured in the
same run); peak memory; GenDistiller's free-running generation with its KV
cache against recomputing the whole prefix at each step (and whether both give
the same layers); one training step of each student and each history mode, as
ratios to the baseline's step. Writes ``benchmark.md`` and ``benchmark.json``.

Usage::

    python benchmarks/benchmark.py [--quick] [--threads 2] [--out DIR] [--devices cpu cuda] [--candidates]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from speechbrain_gendistill.attention import block_causal_mask
from speechbrain_gendistill.generator import LayerGenerator
from speechbrain_gendistill.lobes import SSLTeacher
from speechbrain_gendistill.loss import DistillationLoss

REPO = Path(__file__).resolve().parents[1]
BASELINE_YAML = REPO / "hparams" / "models" / "distilhubert_hubert_base.yaml"
GENDISTILL_YAML = REPO / "hparams" / "models" / "gendistill_wavlm_base_plus.yaml"
SAMPLE_RATE = 16000
HISTORY_MODES = {  # training-step name -> (student, generate() keyword arguments)
    "DistilHuBERT baseline": ("baseline", None),
    "GenDistiller, teacher forcing": ("gendistill", 1.0),
    "GenDistiller, free running": ("gendistill", 0.0),
    "GenDistiller, scheduled (teacher_prob 0.5)": ("gendistill", 0.5),
}
STUDENT_NAMES = {"baseline": "DistilHuBERT baseline", "gendistill": "GenDistiller"}
GOALS = {  # name -> (comparison, target); measured on every device and dtype the run covers
    "GenDistiller forward, speed-up over the teacher": (">=", 1.9),
    "GenDistiller forward, time / baseline's": ("<=", 1.0),
    "Free-running generation, KV cache speed-up over recomputing (generator)": (">=", 1.5),
    "KV cache and recomputing, max abs difference (fp32)": ("<=", 1e-4),
    "GenDistiller training step, teacher forcing, time / baseline's": ("<=", 1.3),
    "GenDistiller training step, free running, time / baseline's (reported)": ("", None),
    "Best compact front-end, speed-up over the teacher": (">=", 4.0),
}


@dataclasses.dataclass
class Variant:
    """A student built from its YAML with ``overrides`` (top-level keys of the YAML)."""

    name: str
    student: str  # "baseline" or "gendistill"
    overrides: dict = dataclasses.field(default_factory=dict)
    compact: bool = False  # counts for the compact front-end goal


def compact_variants(conv_specs: dict[str, list[list[int]]]) -> list[Variant]:
    """GenDistiller with each named CNN."""
    return [
        Variant(f"GenDistiller, CNN {name}", "gendistill", {"conv_layers": spec}, compact=True)
        for name, spec in conv_specs.items()
    ]


COMPACT_CNNS = {
    "256 channels": [[256, 10, 5]] + [[256, 3, 2]] * 4 + [[256, 2, 2]] * 2,
    "128-channel first layer": [[128, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2,
    "128 then 256 channels": [[128, 10, 5]] + [[256, 3, 2]] * 4 + [[256, 2, 2]] * 2,
    "64, 128, then 256 channels": [[64, 10, 5], [128, 3, 2]] + [[256, 3, 2]] * 3 + [[256, 2, 2]] * 2,
    "32, 64, 128, then 256 channels": [[32, 10, 5], [64, 3, 2], [128, 3, 2]] + [[256, 3, 2]] * 2 + [[256, 2, 2]] * 2,
}


def generator_candidates() -> list[Variant]:
    """Smaller generators, for the goal of a forward no slower than the baseline's."""
    return [
        Variant("GenDistiller, 1 block", "gendistill", {"num_layers": 1}),
        Variant(
            "GenDistiller, d_model 384, 6 heads, d_ffn 1536",
            "gendistill",
            {"d_model": 384, "num_heads": 6, "d_ffn": 1536},
        ),
    ]


@dataclasses.dataclass
class Settings:
    """What one run measures; the defaults are the paper-scale full run."""

    teacher_config: dict = dataclasses.field(default_factory=dict)  # WavLMConfig kwargs; {} = WavLM Base+
    baseline_yaml: str = str(BASELINE_YAML)
    gendistill_yaml: str = str(GENDISTILL_YAML)
    yaml_overrides: dict = dataclasses.field(default_factory=dict)  # applied to both student YAMLs
    variants: list[Variant] = dataclasses.field(default_factory=lambda: compact_variants(COMPACT_CNNS))
    forward_seconds: float = 10.0
    train_seconds: float = 10.0
    train_batch: int = 2
    repeats: int = 7
    warmup: int = 2
    threads: int = 2
    devices: list[str] = dataclasses.field(default_factory=lambda: available_devices())
    dtypes: list[str] | None = None  # None: see dtypes_for
    memory: bool = True
    seed: int = 0
    quick: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> Settings:
        values = dict(values)
        values["variants"] = [Variant(**variant) for variant in values.get("variants", [])]
        return cls(**values)


def available_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def dtypes_for(device: str, settings: Settings) -> list[str]:
    """The settings' dtypes, else fp32 everywhere and bf16 autocast rows too on a GPU."""
    if settings.dtypes:
        return settings.dtypes
    return ["fp32", "bf16"] if device == "cuda" else ["fp32"]


def autocast(device: str, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------------------------
# Models


def save_teacher(folder: Path, teacher_config: dict, seed: int) -> Path:
    """A randomly initialised WavLM, saved as a hub model is."""
    torch.manual_seed(seed)
    WavLMModel(WavLMConfig(**teacher_config)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(folder)
    return folder


def load_student_yaml(path: str, overrides: dict, seed: int) -> tuple[torch.nn.Module, list[int]]:
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


def count_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def forward_flops(model: torch.nn.Module, wavs: torch.Tensor) -> int:
    """Floating-point operations of one forward on ``wavs``, as ``torch.utils.flop_counter`` counts them."""
    # Weight-norm parametrisations are computed once (a second of audio fills the cache), outside the
    # counting mode, which cannot run them.
    with torch.inference_mode(), parametrize.cached():
        model(wavs[:, :SAMPLE_RATE])
        with FlopCounterMode(display=False) as counter:
            model(wavs)
    return counter.get_total_flops()


# ----------------------------------------------------------------------------------------------------------------
# Measurements


def time_interleaved(
    workloads: dict[str, Callable[[], dict[str, float] | None]], repeats: int, warmup: int, device: str
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each workload, ``repeats`` rounds after ``warmup`` rounds.

    Each round runs every workload once, starting one further along the list
    than the round before, so that a slow-down of the machine lands on all of
    them and none always runs first. A workload may return its own timings of
    parts of the call (e.g. ``{"teacher": s}``); they are kept beside ``total``.
    """
    names = list(workloads)
    for _ in range(warmup):
        for name in names:
            workloads[name]()
    times: dict[str, dict[str, list[float]]] = {name: {"total": []} for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            parts = workloads[name]()
            synchronize(device)
            times[name]["total"].append(time.perf_counter() - start)
            for part, seconds in (parts or {}).items():
                times[name].setdefault(part, []).append(seconds)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def generate_by_recomputing(generator: LayerGenerator, x0: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Free-running generation without a cache: step k re-runs the blocks over steps 1..k.

    The tokens and the block-causal mask are teacher forcing's, restricted to
    the steps generated so far; only the last step's output is new. This is
    what the KV cache saves.
    """
    batch, frames, _ = x0.shape
    outputs: list[torch.Tensor] = []
    for step in range(generator.num_steps):
        history = [x0] + [generator.in_proj(layer) for layer in outputs]
        tokens = torch.stack(history) + generator.step_embedding[: step + 1, None, None, :]
        grid = tokens.transpose(0, 1).reshape(batch, (step + 1) * frames, -1)
        out = generator.transform(grid, block_causal_mask(frame_mask, step + 1))[:, step * frames :]
        outputs.append(generator.out_proj(out) + generator.skip(tokens[step]))
    return torch.stack(outputs)


def training_batch(settings: Settings, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``train_batch`` utterances of ``train_seconds``, the later ones padded (relative lengths down to 0.8)."""
    generator = torch.Generator().manual_seed(settings.seed)
    samples = int(settings.train_seconds * SAMPLE_RATE)
    wavs = 0.1 * torch.randn(settings.train_batch, samples, generator=generator)
    wav_lens = torch.linspace(1.0, 0.8, settings.train_batch) if settings.train_batch > 1 else torch.ones(1)
    for item, rel in enumerate(wav_lens.tolist()):
        wavs[item, round(rel * samples) :] = 0.0
    return wavs.to(device), wav_lens.to(device)


def training_step(
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    wavs: torch.Tensor,
    wav_lens: torch.Tensor,
    targets: torch.Tensor,
    teacher_prob: float | None,
    device: str,
    dtype: str,
) -> None:
    """Student forward, the distillation loss, backward and an optimizer step.

    ``teacher_prob`` None: the baseline's heads; 1.0 teacher forcing; 0.0 free
    running; in between, scheduled history.
    """
    loss_fn = DistillationLoss()
    with autocast(device, dtype):
        if teacher_prob is None or teacher_prob == 0.0:
            predictions = student.generate(wavs, wav_lens)
        else:
            predictions = student.generate(wavs, wav_lens, teacher_layers=targets, teacher_prob=teacher_prob)
    loss = loss_fn(predictions.float(), targets.float(), student.frame_mask(wavs, wav_lens))["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def teacher_targets(teacher: SSLTeacher, wavs: torch.Tensor, wav_lens: torch.Tensor, device: str, dtype: str):
    with torch.no_grad(), autocast(device, dtype):
        return teacher(wavs, wav_lens)


# ----------------------------------------------------------------------------------------------------------------
# Peak memory


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_mib(workload: Callable[[], object]) -> float:
    """Peak resident memory one call adds to the process, in MiB (Linux).

    A first call makes the lazy allocations (oneDNN primitives, the optimizer
    state); then the memory freed since is handed back to the system
    (``malloc_trim``), the kernel's high-water mark is reset
    (``/proc/self/clear_refs``) and a second call is measured: VmHWM after it
    minus VmRSS before it.
    """
    workload()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _proc_status_kib("VmRSS")
    workload()
    return (_proc_status_kib("VmHWM") - before) / 1024


def peak_cuda_mib(workload: Callable[[], object]) -> float:
    """Peak GPU memory one call allocates beyond what was allocated before it, in MiB."""
    workload()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    workload()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def memory_workloads(
    settings: Settings, teacher: SSLTeacher, students: dict[str, torch.nn.Module], device: str, dtype: str
) -> dict[str, Callable[[], object]]:
    """Forward of every model on the forward input; training steps of the baseline and GenDistiller's modes."""
    wavs = forward_input(settings, device)
    workloads: dict[str, Callable[[], object]] = {}

    def forward(model: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode(), autocast(device, dtype):
                return model(wavs)

        return run

    workloads["forward: teacher"] = forward(teacher)
    for name, student in students.items():
        workloads[f"forward: {name}"] = forward(student)
    batch, lens = training_batch(settings, device)
    targets = teacher_targets(teacher, batch, lens, device, dtype)
    for mode, (key, teacher_prob) in HISTORY_MODES.items():
        student = students[STUDENT_NAMES[key]]
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

        def step(student=student, optimizer=optimizer, teacher_prob=teacher_prob) -> None:
            student.train()
            training_step(student, optimizer, batch, lens, targets, teacher_prob, device, dtype)
            student.eval()

        workloads[f"training step: {mode}"] = step
    return workloads


def measure_memory_in_subprocess(settings: Settings, teacher_dir: Path) -> dict[str, float]:
    """CPU peak memory of every workload, measured in a fresh Python process (see :func:`peak_rss_mib`)."""
    with tempfile.TemporaryDirectory() as folder:
        request = Path(folder) / "request.json"
        request.write_text(json.dumps({"settings": dataclasses.asdict(settings), "teacher_dir": str(teacher_dir)}))
        process = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--memory-probe", str(request)],
            capture_output=True,
            text=True,
            check=False,
        )
    if process.returncode != 0:
        raise RuntimeError(f"the memory probe failed (exit {process.returncode}):\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def memory_probe(request_path: str) -> None:
    """The subprocess side: builds the models, measures each workload, prints one JSON line."""
    request = json.loads(Path(request_path).read_text())
    settings = Settings.from_dict(request["settings"])
    torch.set_num_threads(settings.threads)
    teacher, students = build_models(settings, Path(request["teacher_dir"]))
    workloads = memory_workloads(settings, teacher, students, "cpu", "fp32")
    print(json.dumps({name: peak_rss_mib(workload) for name, workload in workloads.items()}))


# ----------------------------------------------------------------------------------------------------------------
# The run


def forward_input(settings: Settings, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(settings.seed)
    return (0.1 * torch.randn(1, int(settings.forward_seconds * SAMPLE_RATE), generator=generator)).to(device)


def measure_forward(settings, teacher, students, device, dtype) -> dict[str, dict[str, list[float]]]:
    wavs = forward_input(settings, device)
    models = {"teacher": teacher, **students}

    def forward(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                model(wavs)

        return run

    return time_interleaved({name: forward(model) for name, model in models.items()}, **timing(settings, device))


def measure_generation(settings, student, device, dtype) -> dict:
    """KV-cache generation against recomputing, generator alone and with the front-end."""
    wavs = forward_input(settings, device)
    generator = student.generator
    with torch.inference_mode(), autocast(device, dtype):
        x0, mask = student.frontend(wavs)
        cached = generator(x0, mask)
        recomputed = generate_by_recomputing(generator, x0, mask)
    max_abs_diff = (cached.float() - recomputed.float()).abs().max().item()

    def run(fn: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                fn()

        return call

    workloads = {
        "KV cache": run(lambda: generator(x0, mask)),
        "recompute": run(lambda: generate_by_recomputing(generator, x0, mask)),
        "KV cache, with front-end": run(lambda: student.generate(wavs)),
        "recompute, with front-end": run(lambda: generate_by_recomputing(generator, *student.frontend(wavs))),
    }
    times = time_interleaved(workloads, **timing(settings, device))
    return {"max_abs_diff": max_abs_diff, "times": times}


def measure_training(settings, teacher, students, device, dtype) -> dict[str, dict[str, list[float]]]:
    wavs, wav_lens = training_batch(settings, device)
    workloads = {}
    for mode, (key, teacher_prob) in HISTORY_MODES.items():
        student = students[STUDENT_NAMES[key]]
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

        def step(student=student, optimizer=optimizer, teacher_prob=teacher_prob) -> dict[str, float]:
            start = time.perf_counter()
            targets = teacher_targets(teacher, wavs, wav_lens, device, dtype)
            synchronize(device)
            teacher_seconds = time.perf_counter() - start
            training_step(student, optimizer, wavs, wav_lens, targets, teacher_prob, device, dtype)
            return {"teacher": teacher_seconds}

        workloads[mode] = step
    for student in students.values():
        student.train()
    try:
        return time_interleaved(workloads, **timing(settings, device))
    finally:
        for student in students.values():
            student.eval()


def timing(settings: Settings, device: str) -> dict:
    return {"repeats": settings.repeats, "warmup": settings.warmup, "device": device}


def machine_info(settings: Settings) -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": settings.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_benchmark(settings: Settings) -> dict:
    """Every measurement, as the JSON-ready dict :func:`render_markdown` reads."""
    torch.set_num_threads(settings.threads)
    results: dict = {"settings": dataclasses.asdict(settings), "machine": machine_info(settings)}
    with tempfile.TemporaryDirectory() as folder:
        teacher_dir = save_teacher(Path(folder), settings.teacher_config, settings.seed)
        teacher, students = build_models(settings, teacher_dir)
        results["parameters"] = parameter_rows(teacher, students)
        results["flops"] = flop_rows(teacher, students, forward_input(settings, "cpu"))
        memory = {"cpu/fp32": measure_memory_in_subprocess(settings, teacher_dir)} if settings.memory else {}
        runs = []
        for device in settings.devices:
            teacher.to(device)
            for student in students.values():
                student.to(device)
            for dtype in dtypes_for(device, settings):
                if settings.memory and device == "cuda":
                    workloads = memory_workloads(settings, teacher, students, device, dtype)
                    memory[f"cuda/{dtype}"] = {name: peak_cuda_mib(fn) for name, fn in workloads.items()}
                runs.append(
                    {
                        "device": device,
                        "dtype": dtype,
                        "forward": measure_forward(settings, teacher, students, device, dtype),
                        "generation": measure_generation(settings, students["GenDistiller"], device, dtype),
                        "training": measure_training(settings, teacher, students, device, dtype),
                    }
                )
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["memory"] = memory
    results["runs"] = [summarise_run(run, memory) for run in runs]
    results["runs_min"] = [summarise_run(run, memory, min) for run in runs]
    results["goals"] = evaluate_goals(results["runs"], settings)
    for goal, by_minima in zip(results["goals"], evaluate_goals(results["runs_min"], settings), strict=True):
        goal["measured_min"], goal["met_min"] = by_minima["measured"], by_minima["met"]
    results["references"] = REFERENCES
    return results


def parameter_rows(teacher: SSLTeacher, students: dict[str, torch.nn.Module]) -> list[dict]:
    teacher_count = count_parameters(teacher)
    rows = [{"model": "teacher (WavLM Base+ architecture)", "parameters": teacher_count}]
    for name, student in students.items():
        count = count_parameters(student)
        if name == STUDENT_NAMES["baseline"]:
            rows.append({"model": f"{name}, with prediction heads", "parameters": count})
            name, count = f"{name}, without heads", count - count_parameters(student.prediction_heads)
        rows.append({"model": name, "parameters": count})
    for row in rows:
        row["fraction_of_teacher"] = row["parameters"] / teacher_count
    return rows


def flop_rows(teacher: SSLTeacher, students: dict[str, torch.nn.Module], wavs: torch.Tensor) -> list[dict]:
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


def summarise_run(run: dict, memory: dict, statistic: Callable[[list[float]], float] = median) -> dict:
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


def write_outputs(results: dict, out_dir: Path, command: str = "") -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(results, command)
    (out_dir / "benchmark.md").write_text(markdown)
    (out_dir / "benchmark.json").write_text(json.dumps(results, indent=1))
    return markdown


def quick_settings(settings: Settings) -> Settings:
    """Fewer repetitions and shorter training audio: under 2 minutes on 2 cores."""
    return dataclasses.replace(settings, repeats=3, warmup=1, train_seconds=3.0, quick=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 3 s training audio")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmark"), help="folder for benchmark.md/json")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None, help="default: all present")
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], help="default: fp32, and bf16 on a GPU")
    parser.add_argument("--candidates", action="store_true", help="add rows for smaller generators")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return
    settings = Settings(threads=args.threads, memory=not args.no_memory)
    if args.devices:
        settings.devices = args.devices
    settings.dtypes = args.dtypes
    if args.candidates:
        settings.variants += generator_candidates()
    if args.quick:
        settings = quick_settings(settings)
    command = "python benchmarks/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_benchmark(settings)
    print(write_outputs(results, args.out, command.strip()))


if __name__ == "__main__":
    main()
