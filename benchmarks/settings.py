"""What a benchmark run measures: the settings, the student variants, and the devices, dtypes and batch sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BASELINE_YAML = REPO / "hparams" / "models" / "distilhubert_hubert_base.yaml"
GENDISTILL_YAML = REPO / "hparams" / "models" / "gendistill_wavlm_base_plus.yaml"
STUDENT_NAMES = {"baseline": "DistilHuBERT baseline", "gendistill": "GenDistiller"}
HISTORY_MODES = {  # training-step name -> (student, teacher_history_prob; None: the baseline's heads)
    "DistilHuBERT baseline": ("baseline", None),
    "GenDistiller, teacher forcing": ("gendistill", 1.0),
    "GenDistiller, free running": ("gendistill", 0.0),
    "GenDistiller, scheduled (teacher_history_prob 0.5)": ("gendistill", 0.5),
}
# Batch sizes of the throughput section when the settings name none: a GPU's, and smaller ones on CPU,
# where 64 utterances of 10 s through every model would take most of an hour.
GPU_BATCH_SIZES = [1, 8, 32, 64]
CPU_BATCH_SIZES = [1, 2, 4]


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
    """Other generators: smaller ones, for a forward no slower than the baseline's, and the paper's size.

    The paper's GenDistiller (Gao et al.) is 768 wide with one block: with the
    teacher's CNN, 17.6M parameters (the 82% reduction of WavLM Base+).
    """
    return [
        Variant("GenDistiller, 1 block", "gendistill", {"num_layers": 1}),
        Variant(
            "GenDistiller, d_model 384, 6 heads, d_ffn 1536",
            "gendistill",
            {"d_model": 384, "num_heads": 6, "d_ffn": 1536},
        ),
        Variant(
            "GenDistiller, d_model 768, 1 block (paper size)",
            "gendistill",
            {"d_model": 768, "num_layers": 1, "num_heads": 12, "d_ffn": 3072},
        ),
    ]


def available_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@dataclasses.dataclass
class Settings:
    """What one run measures; the defaults are the paper-scale full run."""

    teacher_config: dict = dataclasses.field(default_factory=dict)  # WavLMConfig kwargs; {} = WavLM Base+
    baseline_yaml: str = str(BASELINE_YAML)
    gendistill_yaml: str = str(GENDISTILL_YAML)
    yaml_overrides: dict = dataclasses.field(default_factory=dict)  # applied to both student YAMLs
    variants: list[Variant] = dataclasses.field(default_factory=lambda: compact_variants(COMPACT_CNNS))
    forward_seconds: float = 10.0  # the forward section's utterance, and each utterance of a throughput batch
    train_seconds: float = 10.0
    train_batch: int = 2
    repeats: int = 7
    warmup: int = 2
    threads: int = 2
    devices: list[str] = dataclasses.field(default_factory=available_devices)
    dtypes: list[str] | None = None  # None: see dtypes_for
    memory: bool = True
    throughput: bool = True
    batch_sizes: list[int] | None = None  # None: see batch_sizes_for
    compile_devices: list[str] = dataclasses.field(default_factory=list)  # throughput under torch.compile too
    seed: int = 0
    quick: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> Settings:
        values = dict(values)
        values["variants"] = [Variant(**variant) for variant in values.get("variants", [])]
        return cls(**values)


def dtypes_for(device: str, settings: Settings) -> list[str]:
    """The settings' dtypes, else fp32 everywhere and bf16 autocast rows too on a GPU that supports bf16."""
    if settings.dtypes:
        return settings.dtypes
    if device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return ["fp32", "bf16"]
    return ["fp32"]


def batch_sizes_for(device: str, settings: Settings) -> tuple[list[int], bool]:
    """The throughput section's batch sizes on ``device``, ascending, and whether they are the CPU's defaults."""
    if settings.batch_sizes:
        return sorted(set(settings.batch_sizes)), False
    if device == "cpu":
        return list(CPU_BATCH_SIZES), True
    return list(GPU_BATCH_SIZES), False


def quick_settings(settings: Settings, throughput: bool = False) -> Settings:
    """Fewer repetitions and shorter training audio, no throughput section unless asked: under 2 minutes on 2 cores."""
    return dataclasses.replace(settings, repeats=3, warmup=1, train_seconds=3.0, quick=True, throughput=throughput)
