"""The benchmark script on tiny configs: its tables, its JSON and the KV cache's reference path.

No timing is asserted here; speed goals are read from the script's own output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import benchmark  # noqa: E402

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


def tiny_settings(**changes) -> benchmark.Settings:
    compact = {"16 channels": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2}
    settings = benchmark.Settings(
        teacher_config=TINY_TEACHER,
        yaml_overrides=TINY_STUDENTS,
        variants=benchmark.compact_variants(compact)
        + [benchmark.Variant("GenDistiller, 1 block", "gendistill", {"num_layers": 1})],
        forward_seconds=0.5,
        train_seconds=0.5,
        repeats=2,
        warmup=0,
        threads=1,
        devices=["cpu"],
        dtypes=["fp32", "bf16"],  # bf16 autocast runs on CPU too: the GPU's bf16 path, tested here
    )
    return benchmark.dataclasses.replace(settings, **changes)


@pytest.fixture(scope="module")
def results() -> dict:
    return benchmark.run_benchmark(tiny_settings())


def test_json_and_markdown_hold_every_section(results, tmp_path):
    markdown = benchmark.write_outputs(results, tmp_path, "python benchmarks/benchmark.py --tiny")
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["runs"] and (tmp_path / "benchmark.md").read_text() == markdown
    assert {"settings", "machine", "parameters", "flops", "memory", "runs", "runs_min", "goals", "references"} <= set(
        saved
    )

    models = ["teacher", "DistilHuBERT baseline", "GenDistiller", "GenDistiller, CNN 16 channels"]
    assert [(run["device"], run["dtype"]) for run in saved["runs"]] == [("cpu", "fp32"), ("cpu", "bf16")]
    run = saved["runs"][0]
    forward = {row["model"]: row for row in run["forward"]}
    assert set(models) < set(forward)
    assert forward["teacher"]["speedup_vs_teacher"] == 1.0
    assert forward["DistilHuBERT baseline"]["time_vs_baseline"] == 1.0
    for row in forward.values():
        assert len(row["times_s"]) == 2 and all(t > 0 for t in row["times_s"])
        assert row["peak_memory_mib"] is not None
    assert [row["mode"] for row in run["training"]] == list(benchmark.HISTORY_MODES)
    for row in run["training"]:
        assert 0 < row["teacher_s"] < row["seconds"] and row["peak_memory_mib"] is not None

    bf16 = {row["model"]: row for row in saved["runs"][1]["forward"]}
    assert set(bf16) == set(forward) and all(row["peak_memory_mib"] is None for row in bf16.values())
    for name in models + [
        "Arithmetic",
        "Free-running generation",
        "One training step",
        "Goals",
        "23.49M",
        "| cpu | bf16 |",
    ]:
        assert name in markdown, name
    # The markdown tables are well formed: each row has as many cells as its header.
    for block in markdown.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block


def test_parameter_rows_count_the_built_models(results):
    rows = {row["model"]: row["parameters"] for row in results["parameters"]}
    torch.manual_seed(0)
    baseline, _ = benchmark.load_student_yaml(str(benchmark.BASELINE_YAML), TINY_STUDENTS, seed=0)
    heads = benchmark.count_parameters(baseline.prediction_heads)
    assert rows["DistilHuBERT baseline, with prediction heads"] == benchmark.count_parameters(baseline)
    assert rows["DistilHuBERT baseline, without heads"] == benchmark.count_parameters(baseline) - heads
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
    student, _ = benchmark.load_student_yaml(str(benchmark.GENDISTILL_YAML), TINY_STUDENTS, seed=0)
    student.eval()
    wavs, wav_lens = torch.randn(3, 4000), torch.tensor([1.0, 0.7, 0.4])
    with torch.no_grad():
        x0, mask = student.frontend(wavs, wav_lens)
        cached = student.generator(x0, mask)
        recomputed = benchmark.generate_by_recomputing(student.generator, x0, mask)
    valid = mask[None, :, :, None]
    assert cached.shape == recomputed.shape == (3, 3, mask.shape[1], 48)
    assert ((cached - recomputed) * valid).abs().max() < 1e-4


def test_mismatched_teacher_width_is_named():
    settings = tiny_settings(yaml_overrides={**TINY_STUDENTS, "target_dim": 40}, memory=False)
    with pytest.raises(ValueError, match="target_dim 40 differs from the teacher's hidden size 48"):
        benchmark.run_benchmark(settings)
