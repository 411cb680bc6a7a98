"""The claim study's settings and tables: what each stage runs, how it chooses (on dev), how results are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechbrain_gendistill.demo.config import BASELINE
from speechbrain_gendistill.demo.report import render_tables
from speechbrain_gendistill.demo.study import Study, dev_ranking, load_study


@pytest.fixture(scope="module")
def study() -> Study:
    return Study(load_study(), Path("unused"))


def test_every_variant_is_the_demo_student_with_its_overrides_on_top(study):
    demo_students = study.study["demo"]["distill"]["students"]
    for name, spec in study.study["screen"]["variants"].items():
        student = study.variant(name)
        base = demo_students[spec.get("student", "gendistiller")]
        assert student["hparams"] == base["hparams"] and student["label"] == spec["label"]
        for key, value in spec["overrides"].items():
            assert student["overrides"][key] == value, (name, key)
        assert student["overrides"]["init_from_teacher"] is True  # the same care for every student
    baseline = study.variant(BASELINE)
    assert baseline["hparams"] == demo_students[BASELINE]["hparams"] and baseline["overrides"]["init_from_teacher"]


def test_a_learning_rate_or_budget_joins_the_variant_without_losing_its_shape(study):
    student = study.variant("gendistiller_1_block_d192", {"lr": 0.002, "student_overrides": {"d_ffn": 512}})
    assert student["overrides"]["lr"] == 0.002
    shape = student["overrides"]["student_overrides"]
    assert shape["d_model"] == 192 and shape["num_layers"] == 1 and shape["d_ffn"] == 512
    assert study.variant("gendistiller_1_block_d192")["overrides"]["student_overrides"]["d_ffn"] == 768


def task_statistics(higher_is_better: bool, dev: dict[str, float], test: dict[str, float]) -> dict:
    return {
        "metric": "accuracy" if higher_is_better else "PER",
        "higher_is_better": higher_is_better,
        "test_items": 10,
        "upstreams": {
            name: {
                "dev": {"mean": dev[name], "std": 0.0, "seeds": 1},
                "test": {"mean": test[name], "std": 0.0, "seeds": 1},
            }
            for name in dev
        },
        "against_baseline": {
            name: {"difference": test[name] - test[BASELINE], "interval": [-1.0, 1.0], "verdict": "tie"}
            for name in dev
            if BASELINE in dev and name not in (BASELINE, "teacher", "random_teacher")
        },
    }


def test_finalists_are_ranked_on_dev_never_on_test():
    # b is better on dev for both tasks, a on test: the ranking follows dev.
    probes = {
        "KS": task_statistics(True, {"a": 60, "b": 70}, {"a": 90, "b": 50}),
        "PR": task_statistics(False, {"a": 40, "b": 30}, {"a": 10, "b": 50}),
    }
    assert dev_ranking({"probes": probes}, ["a", "b"]) == ["b", "a"]


def test_tables_show_each_stage(study):
    names = ["teacher", "random_teacher", BASELINE, "gendistiller_1_block_d192"]
    dev = dict(zip(names, (80.0, 20.0, 60.0, 65.0), strict=True))
    test = dict(zip(names, (78.0, 22.0, 58.0, 61.0), strict=True))
    probes = {"KS": task_statistics(True, dev, test)}
    parameters = {
        "teacher": 2_900_000,
        BASELINE: {"inference": 1_116_704, "distillation": 1_339_040},
        "gendistiller_1_block_d192": {"inference": 746_528, "distillation": 746_528},
    }
    students = {name: study.variant(name) for name in (BASELINE, "gendistiller_1_block_d192")}
    measurements = {"probes": probes, "parameters": parameters, "threads": 2, "distill_steps": {BASELINE: 226}}
    record = {"teacher": "ctc", "seeds": [1986], "students": students, "measurements": measurements}
    results = {
        "screen": {**record, "finalists": ["gendistiller_1_block_d192"]},
        "learning_rate": {
            "chosen": {BASELINE: 0.001},
            "dev_loss": {f"{BASELINE}@{lr:g}": loss for lr, loss in ((0.0005, 2.1), (0.001, 2.0), (0.002, 2.2))},
        },
        "confirm": {"ctc": record},
    }
    text = render_tables(results, study.study)
    assert "| GenDistiller, d 192 x 1 block (67%) | 0.75M (67%) | 65.0 / 61.0 |" in text
    assert f"| {BASELINE} | 2.100 | 2.000 | 2.200 | 0.001 |" in text
    assert "61.0: +3.0 [-1.0, +1.0], tie" in text


def test_early_exit_table_and_probe_stages(study, tmp_path: Path):
    figures = {str(k): {"KS": {"dev": 50.0 + k, "test": 40.0 + k, "metric": "accuracy"}} for k in (1, 2, 3)}
    seconds = {"1": 0.010, "2": 0.015, "3": 0.020, BASELINE: 0.025}
    record = {"student": "s", "teacher": "ctc", "seed": 1986, "figures": figures, "forward_seconds": seconds}
    text = render_tables({"early_exit": {**record, "threads": 2}}, study.study)
    assert "| 1 | 10 ms (0.50x; 0.40x) | 51.0 / 41.0 |" in text
    assert "| 3 | 20 ms (1.00x; 0.80x) | 53.0 / 43.0 |" in text
    # The stage probes the student's first k layers, in its own folder, after its distillation.
    in_tmp = Study(study.study, tmp_path)
    demo = in_tmp.prepared_demo("confirm", "ctc", {"gendistiller": study.variant("gendistiller_1_block_d192")}, [1986])
    source = demo.distill_folder("gendistiller", 1986) / "student"
    stage = demo.probe("KS", "gendistiller", source, 1986, max_layers=2)
    assert stage.name == "probe KS gendistiller@exit2 seed 1986" and "--max_layers=2" in stage.args
    assert stage.result == demo.probe_folder("KS", "gendistiller@exit2", 1986) / "results.json"
    assert stage.needs == ("distill gendistiller seed 1986",)
