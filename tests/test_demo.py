"""The embedded demo, end to end at its quick size, and its rerun.

One quick run serves every test here: the package's wheel, installed into a
fresh virtual environment and run from a folder outside the repository
(tests/conftest.py ``installed_quick_demo``), exactly as a user without the
checkout would run it.
"""

from __future__ import annotations

import json
import math
import re

TASKS = ("ASR", "PR", "KS", "SID")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def table(report: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the report's table whose header starts with ``first_header``: first cell -> the other cells."""
    lines = report.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.setdefault(cells[0], []).append(cells[1:])
    return {label: cells[0] if len(cells) == 1 else cells for label, cells in rows.items()}


def test_report_lists_every_upstream_on_every_task_with_finite_figures(installed_quick_demo):
    folder, report = installed_quick_demo
    assert (folder / "report.md").read_text() == report
    rows = table(report, "upstream")
    assert len(rows) == 4  # the teacher, its untrained initial weights, DistilHuBERT, GenDistiller
    for label, cells in rows.items():
        task_cells = cells[-len(TASKS) :]
        figures = [float(value) for cell in task_cells for value in NUMBER.findall(cell)]
        assert len(figures) == len(TASKS) and all(math.isfinite(value) for value in figures), (label, cells)
    for name in ("training_curves.png", "layer_cosine.png"):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE


def test_students_compared_as_the_paper_does(installed_quick_demo):
    folder, report = installed_quick_demo
    measurements = json.loads((folder / "measurements.json").read_text())
    parameters, steps = measurements["parameters"], measurements["distill_steps"]
    assert parameters["gendistiller"]["inference"] <= 0.75 * parameters["distilhubert"]["inference"]
    # the baseline's prediction heads are counted apart: only distillation trains them
    assert parameters["distilhubert"]["distillation"] > parameters["distilhubert"]["inference"]
    assert steps["gendistiller"] == steps["distilhubert"] > 0
    for figures in measurements["layers"].values():
        # the diagonal of the heat map is the table's cosine of each generated layer with its target
        matrix, layers = figures["cosine_matrix"], measurements["target_layers"]
        assert [round(matrix[k][layer], 6) for k, layer in enumerate(layers)] == [
            round(value, 6) for value in figures["cosine"]
        ]
    # GenDistiller against the baseline on every task: a difference, its interval, a verdict read from it
    comparisons = table(report, "student")
    assert len(comparisons["GenDistiller"]) == len(TASKS)
    for statistics in measurements["probes"].values():
        bootstrap = statistics["against_baseline"]["gendistiller"]
        low, high = bootstrap["interval"]
        assert low <= high
        assert bootstrap["verdict"] == ("tie" if low <= 0 <= high else bootstrap["verdict"])
        assert bootstrap["verdict"] in ("win", "loss", "tie")


def test_trained_teacher_carries_speech_information(installed_quick_demo):
    """The probes read the trained teacher far better than they read its untrained initial weights."""
    folder, _ = installed_quick_demo
    probes = json.loads((folder / "measurements.json").read_text())["probes"]
    test = {
        task: {name: figures["test"]["mean"] for name, figures in probes[task]["upstreams"].items()} for task in TASKS
    }
    assert test["PR"]["teacher"] < test["PR"]["random_teacher"] - 10  # phone error rate
    assert test["KS"]["teacher"] > test["KS"]["random_teacher"]  # accuracy


def test_every_probe_chose_its_learning_rate_on_dev(installed_quick_demo):
    folder, _ = installed_quick_demo
    for results in (folder / "probe").glob("*/*/*/results.json"):
        record = json.loads(results.read_text())
        dev = {float(lr): value for lr, value in record["dev_by_lr"].items() if value is not None}
        best = (max if record["higher_is_better"] else min)(dev.values())
        assert dev[float(record["chosen_lr"])] == best, results


def test_rerun_reuses_every_stage(installed_quick_demo, run_installed_demo):
    folder, report = installed_quick_demo
    result = run_installed_demo(folder, "--quick")
    assert result.returncode == 0, result.stderr[-2000:]
    progress = [line for line in result.stdout.splitlines() if line.startswith("[")]
    # corpus, teacher, two distillations, four tasks for four upstreams, the report
    assert len(progress) == 1 + 1 + 2 + len(TASKS) * 4 + 1, progress
    assert all("reused from an earlier run" in line for line in progress), progress
    assert (folder / "report.md").read_text() == report


def test_folder_built_with_other_settings_is_refused(installed_quick_demo, run_installed_demo):
    folder, _ = installed_quick_demo
    result = run_installed_demo(folder)
    assert result.returncode != 0 and "was built with other demo settings" in result.stderr
