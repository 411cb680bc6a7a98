"""The benchmark scripts on tiny configs: tables, JSON, the KV cache's reference path, the throughput section.

No timing is asserted here; speed goals are read from the script's own output. Nothing is compiled.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

# benchmarks/ is a folder of scripts run as `python benchmarks/benchmark.py`, which import their siblings.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import benchmark  # noqa: E402
import throughput  # noqa: E402
from models import load_student_yaml  # noqa: E402
from report import render_markdown, write_outputs  # noqa: E402
from settings import (  # noqa: E402
    BASELINE_YAML,
    CPU_BATCH_SIZES,
    GENDISTILL_YAML,
    GPU_BATCH_SIZES,
    HISTORY_MODES,
    Settings,
    Variant,
    batch_sizes_for,
    compact_variants,
    generator_candidates,
)

from speechbrain_gendistill.measure import count_parameters  # noqa: E402

TINY_CONV = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
TINY_TEACHER = dict(
    conv_dim=(32,) * 7,
    hidden_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=96,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
TINY_STUDENTS = dict(
    num_layers=2,
    target_dim=48,
    target_layers=[1, 2, 4],
    d_model=32,
    num_heads=4,
    d_ffn=64,
    conv_layers=TINY_CONV,
    pos_conv_kernel=16,
    pos_conv_groups=4,
)
MODELS = ["teacher", "DistilHuBERT baseline", "GenDistiller", "GenDistiller, CNN 16 channels", "GenDistiller, 1 block"]


def tiny_settings(**changes) -> Settings:
    compact = {"16 channels": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2}
    settings = Settings(
        teacher_config=TINY_TEACHER,
        yaml_overrides=TINY_STUDENTS,
        variants=compact_variants(compact) + [Variant("GenDistiller, 1 block", "gendistill", {"num_layers": 1})],
        forward_seconds=0.5,
        train_seconds=0.5,
        repeats=2,
        warmup=0,
        threads=1,
        devices=["cpu"],
        dtypes=["fp32", "bf16"],  # bf16 autocast runs on CPU too: the GPU's bf16 path, tested here
        batch_sizes=[2, 1],  # given unsorted: the section sorts them
    )
    return dataclasses.replace(settings, **changes)


@pytest.fixture(scope="module")
def results() -> dict:
    return benchmark.run_benchmark(tiny_settings())


def test_json_and_markdown_hold_every_section(results, tmp_path):
    markdown = write_outputs(results, tmp_path, "python benchmarks/benchmark.py --tiny")
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["runs"] and (tmp_path / "benchmark.md").read_text() == markdown
    sections = {"settings", "machine", "parameters", "flops", "memory", "runs", "runs_min", "throughput", "goals"}
    assert sections | {"references"} <= set(saved)

    assert [(run["device"], run["dtype"]) for run in saved["runs"]] == [("cpu", "fp32"), ("cpu", "bf16")]
    run = saved["runs"][0]
    forward = {row["model"]: row for row in run["forward"]}
    assert set(MODELS) == set(forward)
    assert forward["teacher"]["speedup_vs_teacher"] == 1.0
    assert forward["DistilHuBERT baseline"]["time_vs_baseline"] == 1.0
    for row in forward.values():
        assert len(row["times_s"]) == 2 and all(t > 0 for t in row["times_s"])
        assert row["peak_memory_mib"] is not None
    assert [row["mode"] for row in run["training"]] == list(HISTORY_MODES)
    for row in run["training"]:
        assert 0 < row["teacher_s"] < row["seconds"] and row["peak_memory_mib"] is not None

    bf16 = {row["model"]: row for row in saved["runs"][1]["forward"]}
    assert set(bf16) == set(forward) and all(row["peak_memory_mib"] is None for row in bf16.values())
    for name in MODELS + ["Arithmetic", "Free-running generation", "One training step", "Throughput", "Goals"]:
        assert name in markdown, name
    for name in ["23.49M", "| cpu | bf16 |", "### cpu, bf16, eager", "Teacher saturates at batch", "| Batch 2 |"]:
        assert name in markdown, name
    assert "On CPU the batch sizes default" not in markdown  # the settings named them
    # The markdown tables are well formed: each row has as many cells as its header.
    for block in markdown.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block


def test_parameter_rows_count_the_built_models(results):
    rows = {row["model"]: row["parameters"] for row in results["parameters"]}
    baseline, _ = load_student_yaml(str(BASELINE_YAML), TINY_STUDENTS, seed=0)
    heads = count_parameters(baseline.prediction_heads)
    assert rows["DistilHuBERT baseline, with prediction heads"] == count_parameters(baseline)
    assert rows["DistilHuBERT baseline, without heads"] == count_parameters(baseline) - heads
    assert rows["GenDistiller, CNN 16 channels"] < rows["GenDistiller"]
    assert rows["GenDistiller, 1 block"] < rows["GenDistiller"]


def test_flop_rows_follow_the_architectures(results):
    flops = {row["model"]: row["flops"] for row in results["flops"]}
    assert flops["teacher"] > flops["GenDistiller"] > flops["GenDistiller, 1 block"] > 0
    assert flops["GenDistiller, CNN 16 channels"] < flops["GenDistiller"]
    # One generator block on T frames: its linear layers alone cost 2 * T * (4 d^2 + 2 d d_ffn) per step, 3 steps.
    frames = 24  # 0.5 s of audio through the 7-layer CNN
    d, d_ffn, steps = TINY_STUDENTS["d_model"], TINY_STUDENTS["d_ffn"], len(TINY_STUDENTS["target_layers"])
    assert flops["GenDistiller"] - flops["GenDistiller, 1 block"] >= steps * 2 * frames * (4 * d * d + 2 * d * d_ffn)
    row = next(row for row in results["flops"] if row["model"] == "DistilHuBERT baseline")
    assert row["vs_baseline"] == 1.0


def test_kv_cache_and_recomputing_agree(results):
    diffs = {run["dtype"]: run["generation"]["max_abs_diff"] for run in results["runs"]}
    assert diffs["fp32"] < 1e-4 and diffs["bf16"] < 0.5  # bf16 keeps 8 bits of mantissa
    goal = next(g for g in results["goals"] if g["goal"].startswith("KV cache and recomputing"))
    assert goal["met"] is True


def test_recomputing_reproduces_generation_on_a_padded_batch():
    student, _ = load_student_yaml(str(GENDISTILL_YAML), TINY_STUDENTS, seed=0)
    student.eval()
    wavs, wav_lens = torch.randn(3, 4000), torch.tensor([1.0, 0.7, 0.4])
    with torch.no_grad():
        x0, mask = student.frontend(wavs, wav_lens)
        cached = student.generator.generate(x0, mask)
        recomputed = student.generator.generate(x0, mask, use_cache=False)
    valid = mask[None, :, :, None]
    assert cached.shape == recomputed.shape == (3, 3, mask.shape[1], 48)
    assert ((cached - recomputed) * valid).abs().max() < 1e-4


def test_mismatched_teacher_width_is_named():
    settings = tiny_settings(yaml_overrides={**TINY_STUDENTS, "target_dim": 40}, memory=False, throughput=False)
    with pytest.raises(ValueError, match="target_dim 40 differs from the teacher's hidden size 48"):
        benchmark.run_benchmark(settings)


# ----------------------------------------------------------------------------------------------------------------
# Throughput


def test_throughput_section_covers_every_model_batch_and_dtype(results):
    summaries = results["throughput"]
    assert [(s["device"], s["dtype"], s["mode"]) for s in summaries] == [
        ("cpu", "fp32", "eager"),
        ("cpu", "bf16", "eager"),
    ]
    for summary in summaries:
        assert summary["batch_sizes"] == [1, 2] and summary["cpu_default_batch_sizes"] is False
        assert [(row["model"], row["batch_size"]) for row in summary["rows"]] == [
            (m, b) for m in MODELS for b in (1, 2)
        ]
        for row in summary["rows"]:
            assert row["status"] == "ok" and len(row["times_s"]) == 2
            assert row["latency_s"] == pytest.approx(row["batch_s"] / row["batch_size"])
            assert row["audio_s_per_s"] == pytest.approx(row["batch_size"] * 0.5 / row["batch_s"])
            assert row["batch_s_min"] <= row["batch_s"]
        saturation, ratios = summary["saturation"], summary["ratios"]
        assert saturation["batch_size"] in (1, 2) and saturation["batch_size"] == ratios["batch_size"]
        assert saturation["teacher_audio_s_per_s"] >= 0.9 * saturation["teacher_best_audio_s_per_s"]
        assert saturation["at_largest_batch"] == (saturation["batch_size"] == 2)
        rows = {(row["model"], row["batch_size"]): row for row in summary["rows"]}
        judged = rows["GenDistiller", ratios["batch_size"]]
        assert ratios["teacher_over_gendistill"] == judged["speedup_vs_teacher"] > 0
        assert ratios["gendistill_over_baseline"] == judged["time_vs_baseline"] > 0
        assert set(summary["latency_batch1_s"]) == set(MODELS)
    goals = [goal for goal in results["goals"] if goal["goal"].startswith("Throughput")]
    assert len(goals) == 2 * len(summaries) and all(goal["note"].startswith("eager, batch ") for goal in goals)
    assert all(isinstance(goal["met"], bool) and isinstance(goal["met_min"], bool) for goal in goals)


def test_saturation_is_the_smallest_batch_within_ten_percent_of_the_best():
    assert throughput.saturation_batch({1: 10.0, 8: 70.0, 32: 95.0, 64: 100.0}) == 32
    assert throughput.saturation_batch({1: 90.0, 8: 100.0}) == 1  # exactly 90%
    assert throughput.saturation_batch({1: 10.0, 8: 100.0, 32: 80.0}) == 8  # the best may come before the end
    assert throughput.saturation_batch({1: 10.0, 8: 50.0}, fraction=0.5) == 8
    assert throughput.saturation_batch({}) is None


def synthetic_run(seconds_per_batch: dict[str, dict[int, float | str]]) -> dict:
    """A raw throughput run as :func:`throughput.time_batch_sizes` gives it, from chosen batch times."""
    times = {
        model: {
            batch: {"status": value, "note": "synthetic"}
            if isinstance(value, str)
            else {"status": "ok", "times_s": [value, 2 * value, value], "cpu_s": [value] * 3}
            for batch, value in by_batch.items()
        }
        for model, by_batch in seconds_per_batch.items()
    }
    return {
        "device": "cuda",
        "dtype": "bf16",
        "mode": "eager",
        "batch_sizes": [1, 8, 32, 64],
        "cpu_default_batch_sizes": False,
        "utterance_seconds": 10.0,
        "times": times,
    }


def test_ratios_are_judged_at_the_teachers_saturating_batch():
    # Teacher: 10, 60, 95, 100 audio s/s (batch x 10 s / batch time): saturates at batch 32.
    summary = throughput.summarise_throughput(
        synthetic_run(
            {
                "teacher": {1: 1.0, 8: 80 / 60, 32: 320 / 95, 64: 6.4},
                "DistilHuBERT baseline": {1: 0.5, 8: 0.8, 32: 1.5, 64: 3.0},
                "GenDistiller": {1: 0.4, 8: 0.7, 32: 1.2, 64: "oom"},
            }
        )
    )
    assert summary["saturation"]["batch_size"] == summary["ratios"]["batch_size"] == 32
    assert summary["saturation"]["teacher_audio_s_per_s"] == pytest.approx(95.0)
    assert summary["saturation"]["teacher_best_audio_s_per_s"] == pytest.approx(100.0)
    assert summary["saturation"]["at_largest_batch"] is False
    assert summary["ratios"]["teacher_over_gendistill"] == pytest.approx((320 / 95) / 1.2)
    assert summary["ratios"]["gendistill_over_baseline"] == pytest.approx(1.2 / 1.5)
    assert summary["ratios"]["teacher_over_gendistill_min"] == pytest.approx((320 / 95) / 1.2)  # min of [v, 2v, v]
    assert summary["latency_batch1_s"] == {"teacher": 1.0, "DistilHuBERT baseline": 0.5, "GenDistiller": 0.4}
    rows = {(row["model"], row["batch_size"]): row for row in summary["rows"]}
    assert rows["GenDistiller", 64]["status"] == "oom" and "batch_s" not in rows["GenDistiller", 64]
    assert rows["DistilHuBERT baseline", 8]["latency_s"] == pytest.approx(0.1)
    assert rows["DistilHuBERT baseline", 64]["speedup_vs_teacher"] == pytest.approx(6.4 / 3.0)
    goals = {goal["goal"]: goal for goal in throughput.throughput_goals([summary])}
    assert [goal["met"] for goal in goals.values()] == [True, True]  # 2.8x over the teacher, 0.8 of the baseline
    assert all(goal["note"] == "eager, batch 32" and goal["dtype"] == "bf16" for goal in goals.values())


def oom_if(condition) -> torch.cuda.OutOfMemoryError | None:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB") if condition else None


def test_running_out_of_memory_is_recorded_and_the_larger_batches_skipped():
    def fits(batch: int):
        return lambda: None

    def too_big_from_4(batch: int):  # fails in its first (warm-up) call from batch 4
        def run() -> None:
            if error := oom_if(batch >= 4):
                raise error

        return run

    def late(batch: int):  # fails in a timed call at batch 2, after its warm-up succeeded
        calls = [0]

        def run() -> None:
            calls[0] += 1
            if error := oom_if(batch == 2 and calls[0] > 1):
                raise error

        return run

    def unbuildable(batch: int):  # running out of memory building the batch
        if error := oom_if(batch >= 2):
            raise error
        return lambda: None

    factories = {"fits": fits, "too big": too_big_from_4, "late": late, "unbuildable": unbuildable}
    times = throughput.time_batch_sizes(factories, [8, 1, 2, 4], repeats=3, warmup=0)
    status = {name: [times[name][batch]["status"] for batch in (1, 2, 4, 8)] for name in factories}
    assert status == {
        "fits": ["ok"] * 4,
        "too big": ["ok", "ok", "oom", "skipped"],
        "late": ["ok", "oom", "skipped", "skipped"],
        "unbuildable": ["ok", "oom", "skipped", "skipped"],
    }
    assert len(times["fits"][8]["times_s"]) == 3
    assert times["too big"][4]["note"].startswith("OutOfMemoryError: CUDA out of memory")
    assert times["too big"][8]["note"] == "skipped after oom at batch 4"

    run = {**synthetic_run({}), "times": times, "batch_sizes": [1, 2, 4, 8], "utterance_seconds": 1.0}
    summary = throughput.summarise_throughput(run)
    assert summary["saturation"]["batch_size"] is None  # no teacher among these models
    markdown = render_markdown(
        {
            "settings": dataclasses.asdict(tiny_settings(quick=True)),
            "machine": {"cpu": "x", "cpu_count": 2, "torch_threads": 1, "torch": "t", "load_average_start": [0.0]}
            | {"load_average_end": [0.0]},
            "parameters": [],
            "flops": [],
            "runs": [],
            "runs_min": [],
            "throughput": [summary],
            "references": [],
            "goals": [],
        }
    )
    assert "| too big | " in markdown and "| OOM | skipped |" in markdown
    assert "- cuda, bf16, eager, too big, batch 4: oom (OutOfMemoryError: CUDA out of memory" in markdown


def test_other_errors_are_raised_outside_compilation():
    def broken(batch: int):
        def run() -> None:
            raise ValueError("a bug, not a lack of memory")

        return run

    with pytest.raises(ValueError, match="a bug"):
        throughput.time_batch_sizes({"broken": broken}, [1], repeats=1)
    # Under torch.compile every exception is caught and recorded.
    times = throughput.time_batch_sizes({"broken": broken}, [1, 2], repeats=1, catch=(Exception,))
    assert [times["broken"][batch]["status"] for batch in (1, 2)] == ["error", "skipped"]


def test_cpu_batch_sizes_default_smaller():
    assert batch_sizes_for("cpu", Settings()) == (CPU_BATCH_SIZES, True)
    assert batch_sizes_for("cuda", Settings()) == (GPU_BATCH_SIZES, False) == ([1, 8, 32, 64], False)
    assert batch_sizes_for("cpu", Settings(batch_sizes=[8, 1, 8])) == ([1, 8], False)


def test_command_line_options():
    def settings(*argv: str) -> Settings:
        return benchmark.settings_from_args(benchmark.parse_args(list(argv)))

    assert settings().throughput and not settings("--no-throughput").throughput
    assert settings().compile_devices == [] and settings().batch_sizes is None
    assert not settings("--quick").throughput and settings("--quick").quick
    assert settings("--quick", "--throughput").throughput
    quick = settings("--quick", "--batch_sizes", "1", "8")
    assert quick.throughput and quick.batch_sizes == [1, 8] and quick.repeats == 3
    assert settings("--compile").compile_devices == ["cuda"]
    assert settings("--quick", "--compile", "cpu", "cuda").compile_devices == ["cpu", "cuda"]
    assert settings("--quick", "--compile").throughput
    names = [variant.name for variant in settings("--candidates").variants]
    assert "GenDistiller, d_model 768, 1 block (paper size)" in names and "GenDistiller, 1 block" in names


def test_the_paper_size_candidate_has_the_papers_parameter_count():
    variant = next(v for v in generator_candidates() if v.name.endswith("(paper size)"))
    student, _ = load_student_yaml(str(GENDISTILL_YAML), variant.overrides, seed=0)
    assert 17.4e6 < count_parameters(student) < 17.8e6  # with the teacher's CNN; WavLM Base+ is 94.7M
