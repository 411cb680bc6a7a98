"""The upload command's dry run: lists and checks the files, refuses pickles and unexpected types, sends nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.export.huggingface import export_huggingface
from speechbrain_gendistill.export.inference import export_inference
from speechbrain_gendistill.export.upload import main
from speechbrain_gendistill.lobes import DistilHuBERTStudent

FIXTURES = Path(__file__).parent / "fixtures" / "exports_v0.1"


@pytest.fixture
def student() -> DistilHuBERTStudent:
    torch.manual_seed(0)
    student = DistilHuBERTStudent(
        target_dim=24, num_target_layers=2, d_model=16, num_layers=1, num_heads=4, d_ffn=32,
        conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4,
    )  # fmt: skip
    student.drop_prediction_heads()
    return student


def test_a_dry_run_lists_every_export_with_sizes_and_uploads_nothing(student, tmp_path, offline_hub, capsys):
    # offline_hub: any request to the hub would fail, so a passing dry run sent nothing.
    folders = {
        "student": export_student(student, tmp_path / "student"),
        "hf": export_huggingface(student, tmp_path / "hf"),
        "sb": export_inference(student, tmp_path / "sb"),
    }
    expected = {
        "student": ["README.md", "config.json", "model.safetensors"],
        "hf": ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"],
        "sb": ["README.md", "encoder.ckpt", "hyperparams.yaml"],
    }
    for name, folder in folders.items():
        files = main([str(folder), "--repo_id", "someone/student", "--dry_run"])
        assert [file for file, _ in files] == expected[name]
        assert dict(files) == {file: (folder / file).stat().st_size for file in expected[name]}
        printed = capsys.readouterr().out
        for file, size in files:
            assert f"{size:,} bytes  {file}" in printed
        assert f"in {len(files)} files would go to someone/student" in printed


def test_pickles_code_and_unexpected_files_are_refused_all_at_once(student, tmp_path):
    folder = export_student(student, tmp_path / "student")
    torch.save(student.state_dict(), folder / "model.ckpt")  # a zip of pickles
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    (folder / "modeling.py").write_text("import os\n")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError) as error:
        main([str(folder), "--repo_id", "someone/student", "--dry_run"])
    message = str(error.value)
    assert "model.ckpt: a zip archive (torch.save writes pickles in one), not safetensors or text" in message
    assert "pytorch_model.bin: a .bin file" in message and "modeling.py: a .py file" in message
    assert "config.json: not valid JSON" in message


def test_an_asr_export_is_refused_for_its_pickled_model_checkpoint(tmp_path):
    folder = shutil.copytree(FIXTURES / "ctc_asr", tmp_path / "asr")
    with pytest.raises(ValueError, match=r"model\.ckpt: a zip archive") as error:
        main([str(folder), "--repo_id", "someone/asr", "--dry_run"])
    assert "ssl.ckpt" not in str(error.value) and "tokenizer.ckpt" not in str(error.value)


def test_a_repo_id_that_is_no_hub_id_is_refused(student, tmp_path):
    folder = export_student(student, tmp_path / "student")
    with pytest.raises(ValueError, match="not a hub id of the form owner/name"):
        main([str(folder), "--repo_id", "not a repo", "--dry_run"])
