"""The package's layout: import layers, module sizes, and the names that YAML files of earlier versions use."""

from __future__ import annotations

import pydoc
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import speechbrain_gendistill

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "speechbrain_gendistill"
TAG = re.compile(r"!(?:new|name|apply):(speechbrain_gendistill[\w.]*)")

# Every target that the YAML files of version 0.1.0 (commit 327ee1e) named, with its home now. A copy of
# those files, or a hyperparams.yaml exported by that version (tests/fixtures/exports_v0.1), still loads.
EARLIER_TARGETS = {
    "speechbrain_gendistill.asr.ssl_feature_dim": "speechbrain_gendistill.lobes.upstream_feature_dim",
    "speechbrain_gendistill.asr.ssl_lobe": "speechbrain_gendistill.lobes.build_upstream",
    "speechbrain_gendistill.asr.ssl_num_layers": "speechbrain_gendistill.lobes.upstream_num_layers",
    "speechbrain_gendistill.asr.LayerMixer": "speechbrain_gendistill.lobes.LayerMixer",
    "speechbrain_gendistill.asr.SSLEncoder": "speechbrain_gendistill.lobes.FrameLengthsSequential",
    "speechbrain_gendistill.teacher_training.save_random_teacher": "speechbrain_gendistill.lobes.teacher.save_random_model",  # noqa: E501
    "speechbrain_gendistill.checkpoints.IntegrityCheckpointer": "speechbrain_gendistill.training.IntegrityCheckpointer",
    "speechbrain_gendistill.data.AudioCrop": "speechbrain_gendistill.data.pipelines.AudioCrop",
    "speechbrain_gendistill.lobes.DistilHuBERTStudent": "speechbrain_gendistill.lobes.students.DistilHuBERTStudent",
    "speechbrain_gendistill.lobes.GenDistillStudent": "speechbrain_gendistill.lobes.students.GenDistillStudent",
    "speechbrain_gendistill.lobes.SSLTeacher": "speechbrain_gendistill.lobes.teacher.SSLTeacher",
    "speechbrain_gendistill.loss.DistillationLoss": "speechbrain_gendistill.loss.DistillationLoss",
}


def yaml_targets(root: Path) -> set[str]:
    files = [path for path in root.rglob("*.yaml") if ".git" not in path.parts]
    return {target for path in files for target in TAG.findall(path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("old, new", sorted(EARLIER_TARGETS.items()))
def test_every_target_of_earlier_yaml_files_resolves_to_its_new_home(old, new):
    # HyperPyYAML resolves tags with pydoc.locate, as SpeechBrain's from_hparams does.
    found = pydoc.locate(old)
    assert found is not None, old
    assert found is pydoc.locate(new), f"{old} is not {new}"


def test_every_target_in_the_shipped_yaml_resolves():
    targets = (
        yaml_targets(ROOT / "recipes") | yaml_targets(ROOT / "hparams") | yaml_targets(ROOT / "tests" / "fixtures")
    )
    assert len(targets) >= 10
    unresolved = sorted(target for target in targets if pydoc.locate(target) is None)
    assert not unresolved, unresolved


def test_an_unknown_attribute_of_the_package_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'asrr'"):
        speechbrain_gendistill.asrr  # noqa: B018


def test_no_module_is_longer_than_about_400_lines():
    modules = list(PACKAGE.rglob("*.py")) + list((ROOT / "benchmarks").rglob("*.py"))
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in modules}
    assert not {path: length for path, length in lengths.items() if length > 420}


def lint_imports(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs import-linter with the pyproject.toml of ``folder`` over the package found first on the path."""
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)


def test_the_import_layers_hold_and_a_violation_is_caught(tmp_path: Path):
    assert lint_imports(ROOT).returncode == 0
    # The same contracts over a copy of the package in which a lobe imports the demo must fail.
    shutil.copytree(PACKAGE, tmp_path / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / PACKAGE.name / "lobes" / "teacher.py", "a") as handle:
        handle.write("\nfrom speechbrain_gendistill.demo import config  # noqa\n")
    result = lint_imports(tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "speechbrain_gendistill.lobes.teacher -> speechbrain_gendistill.demo.config" in result.stdout
