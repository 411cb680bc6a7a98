"""The package as others get it: its license, the licenses its model cards state, and a wheel that runs the demo."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

from conftest import PACKAGE, ROOT

from speechbrain_gendistill.core.licenses import CODE_LICENSE, license_section
from speechbrain_gendistill.core.resources import RESOURCES_DIR, SHIPPED_FOLDERS, shipped_path, shipped_root
from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.lobes import GenDistillStudent


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


def test_wheel_carries_the_shipped_folders_and_its_license(installed_wheel):
    with zipfile.ZipFile(installed_wheel.wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    resources = f"{PACKAGE}/{RESOURCES_DIR}/"
    assert {name.removeprefix(resources) for name in names if name.startswith(resources)} == shipped_files()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert re.search(r"^License(-Expression)?: Apache-2\.0$", metadata, re.MULTILINE), metadata[:500]
    assert not [name for name in names if name.startswith("tests/") or "__pycache__" in name]


def test_installed_wheel_imports_its_own_copy_from_elsewhere(installed_wheel):
    where = subprocess.run(
        [installed_wheel.python, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
        cwd=installed_wheel.elsewhere,
        env=installed_wheel.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(Path(installed_wheel.python).parents[1]), where.stdout
    # The quick demo that tests/test_demo.py reads runs from this wheel, outside the repository.
