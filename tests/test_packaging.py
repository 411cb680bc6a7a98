"""The package as others get it: its license, the licenses its model cards state, and a wheel that runs the demo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from speechbrain_gendistill.core.licenses import CODE_LICENSE, license_section
from speechbrain_gendistill.core.resources import RESOURCES_DIR, SHIPPED_FOLDERS, shipped_path, shipped_root
from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.lobes import GenDistillStudent

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "speechbrain_gendistill"
# What a build reads besides the shipped folders.
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(text.splitlines()) == 202  # the full standard text


def test_student_card_states_the_licenses_of_its_data(tmp_path: Path):
    student = GenDistillStudent(
        target_dim=24,
        num_target_layers=2,
        d_model=16,
        num_layers=1,
        num_heads=4,
        d_ffn=32,
        conv_layers=[(16, 10, 5), (16, 3, 2)],
        pos_conv_kernel=8,
        pos_conv_groups=4,
    )
    card = {"teacher": "microsoft/wavlm-base-plus", "train data": "train-clean-100, fsdd-train", "dev data": "dev-x"}
    text = (export_student(student, tmp_path, card) / "README.md").read_text()
    section = text[text.index("## License") :]
    assert "Apache License 2.0" in section and "`microsoft/wavlm-base-plus`: its license" in section
    assert "LibriSpeech (Panayotov et al., 2015): CC BY 4.0" in section
    assert "FSDD, Zohar Jackson et al.): CC BY-SA 4.0; share-alike: weights trained on these" in section
    assert "- dev-x: license unknown here" in section


def test_shipped_teacher_card_states_its_license_and_synthetic_data():
    card = shipped_path("pretrained/demo_teacher/README.md").read_text()
    assert card.endswith("\n".join(license_section(["train-synth"], weights_license=CODE_LICENSE)))
    assert "released under Apache-2.0" in card and "synthetic speech made by this project" in card


def test_a_checkout_reads_its_own_shipped_folders():
    assert shipped_root() == ROOT
    assert shipped_path("recipes/LibriSpeech/distill/train.py") == ROOT / "recipes/LibriSpeech/distill/train.py"
    assert not (ROOT / PACKAGE / RESOURCES_DIR).exists()  # only a build puts a copy there


def shipped_files() -> set[str]:
    """The repository's shipped files, as paths from its root."""
    return {
        str(path.relative_to(ROOT))
        for folder in SHIPPED_FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_wheel_installed_elsewhere_runs_the_demo(tmp_path: Path):
    """A wheel built from the repository, installed into a fresh virtual environment, runs the quick demo.

    The wheel is built from a copy of the sources (a build writes into the
    folder it builds) and installed without its dependencies into a virtual
    environment that sees this interpreter's packages (torch and the rest), but
    imports its own copy of this package. The demo runs from a folder outside
    the repository; about 1.5-3.5 minutes, nearly all of it the demo's quick run.
    """
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in BUILD_FILES:
        shutil.copy(ROOT / name, sources / name)
    for folder in (PACKAGE, *SHIPPED_FOLDERS):
        shutil.copytree(ROOT / folder, sources / folder, ignore=IGNORED)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", tmp_path / "dist", sources],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    resources = f"{PACKAGE}/{RESOURCES_DIR}/"
    assert {name.removeprefix(resources) for name in names if name.startswith(resources)} == shipped_files()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert re.search(r"^License(-Expression)?: Apache-2\.0$", metadata, re.MULTILINE), metadata[:500]
    assert not [name for name in names if name.startswith("tests/") or "__pycache__" in name]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True)
    python = str(venv / "bin" / "python")
    # This interpreter's pip installs into the environment that runs it; --ignore-installed: the editable
    # install that the environment sees through this interpreter's packages must not count as installed.
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet", wheel]
    subprocess.run(install, check=True, capture_output=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    start = time.perf_counter()
    demo = subprocess.run(
        [python, "-m", f"{PACKAGE}.demo", "--output_folder", "out", "--quick"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    print(f"the quick demo from the installed wheel: {time.perf_counter() - start:.0f} s")
    assert demo.returncode == 0, demo.stderr[-3000:]
    report = (elsewhere / "out" / "report.md").read_text()
    assert "GenDistiller" in report and "DistilHuBERT" in report
    assert str(ROOT) not in demo.stdout  # every recipe and YAML came from the installed copy
