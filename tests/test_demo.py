"""The embedded demo, end to end at its quick size, and its rerun."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from speechbrain_gendistill.demo.__main__ import main as demo_main

ROW_LABELS = ("Teacher (WavLM)", "DistilHuBERT", "GenDistiller")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def table_rows(report: str) -> dict[str, list[str]]:
    """The report's main table: label -> cells."""
    rows = {}
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith("| model") and not line.startswith("| stage"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def numbers(cells: list[str]) -> list[float]:
    """Every figure in the cells ("2.90M", "0.53x (48 ms)", "0.414", "-" is skipped)."""
    found = []
    for cell in cells:
        for token in cell.replace("(", " ").replace(")", " ").split():
            token = token.rstrip("Mx%")
            if token not in ("-", "ms"):
                found.append(float(token))
    return found


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("demo") / "out"
    return folder, demo_main(["--output_folder", str(folder), "--quick"])


def test_report_has_the_three_rows_with_finite_figures(quick_demo):
    folder, printed = quick_demo
    report = (folder / "report.md").read_text()
    assert report == printed
    rows = table_rows(report)
    for label in ROW_LABELS:
        figures = numbers(rows[label])
        # parameters, relative time, milliseconds, dev WER, test WER, test CER; students add L1 and cosine
        # for each of the 3 target layers
        assert len(figures) == (6 if label.startswith("Teacher") else 12), rows[label]
        assert all(math.isfinite(value) for value in figures), rows[label]
    for name in ("training_curves.png", "layer_cosine.png"):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE


def test_students_compared_as_the_paper_does(quick_demo):
    folder, _ = quick_demo
    measurements = json.loads((folder / "measurements.json").read_text())
    parameters, steps = measurements["parameters"], measurements["distill_steps"]
    assert parameters["gendistiller"] <= 0.75 * parameters["distilhubert"]
    assert steps["gendistiller"] == steps["distilhubert"] > 0
    for figures in measurements["layers"].values():
        # the diagonal of the heat map is the table's cosine of each generated layer with its target
        matrix, layers = figures["cosine_matrix"], measurements["target_layers"]
        assert [matrix[k][layer] for k, layer in enumerate(layers)] == pytest.approx(figures["cosine"])


def test_trained_teacher_carries_speech_information(quick_demo):
    """The probe reads the trained teacher far better than the same probe reads its untrained initial weights."""
    folder, _ = quick_demo
    probes = json.loads((folder / "measurements.json").read_text())["probes"]
    assert probes["teacher"]["CER"] < probes["random_teacher"]["CER"] - 10


def test_rerun_reuses_every_stage(quick_demo, capsys):
    folder, report = quick_demo
    capsys.readouterr()
    assert demo_main(["--output_folder", str(folder), "--quick"]) == report
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(progress) == 9 and all("reused from an earlier run" in line for line in progress), progress


def test_folder_built_with_other_settings_is_refused(quick_demo):
    folder, _ = quick_demo
    with pytest.raises(ValueError, match="was built with other demo settings"):
        demo_main(["--output_folder", str(folder)])
