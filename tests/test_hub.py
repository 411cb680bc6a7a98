"""Loading by hub id, offline, from a HuggingFace cache: teachers, students, upstreams and an exported ASR model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hub_cache import put_in_hub_cache
from safetensors.torch import load_file
from speechbrain.inference.ASR import EncoderASR

from speechbrain_gendistill.core.hub import resolve_source
from speechbrain_gendistill.lobes import DistilledSSL, SSLTeacher, build_upstream

FIXTURES = Path(__file__).parent / "fixtures" / "exports_v0.1"
STUDENT = FIXTURES / "gendistill_student"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_teacher_loads_by_hub_id_from_the_cache_alone(offline_hub, wavlm_dir, tmp_path):
    put_in_hub_cache(offline_hub, "someone/small-wavlm", wavlm_dir)
    by_id = SSLTeacher("someone/small-wavlm", target_layers=[2, 4], save_path=str(tmp_path / "unused"))
    local = SSLTeacher(str(wavlm_dir), target_layers=[2, 4], save_path=str(tmp_path / "unused"))
    wavs = torch.randn(2, 8000)
    assert by_id.source == "someone/small-wavlm" and by_id.num_layers == 4
    assert torch.equal(by_id(wavs, torch.tensor([1.0, 0.6])), local(wavs, torch.tensor([1.0, 0.6])))


def test_a_student_and_its_upstream_load_by_hub_id(offline_hub):
    put_in_hub_cache(offline_hub, "someone/student", STUDENT)
    references = load_file(FIXTURES / "reference_outputs.safetensors")
    for lobe in (
        DistilledSSL(source="someone/student", output_all_hiddens=True),
        build_upstream("someone/student"),
    ):
        assert isinstance(lobe, DistilledSSL)
        with torch.no_grad():
            hiddens = lobe(references["wavs"], references["wav_lens"])
        assert (hiddens - references["gendistill_student"]).abs().max() < 1e-5


def test_build_upstream_tells_a_hf_model_repo_from_a_student_repo_by_its_config(offline_hub, hubert_dir):
    put_in_hub_cache(offline_hub, "someone/small-hubert", hubert_dir)
    lobe = build_upstream("someone/small-hubert")
    assert type(lobe).__name__ == "HuBERT"
    assert lobe(torch.randn(1, 4000), torch.ones(1)).shape[0] == 5  # the CNN's output and 4 layers


def test_an_exported_asr_model_loads_by_hub_id_in_encoder_asr(offline_hub, tmp_path):
    put_in_hub_cache(offline_hub, "someone/ctc-asr", FIXTURES / "ctc_asr")
    references = load_file(FIXTURES / "reference_outputs.safetensors")
    asr = EncoderASR.from_hparams(source="someone/ctc-asr", savedir=str(tmp_path / "savedir"))
    with torch.no_grad():
        log_probs = asr.encode_batch(references["wavs"], references["wav_lens"])
    assert (log_probs - references["ctc_asr_log_probs"]).abs().max() < 1e-5


def test_an_id_missing_from_the_cache_is_an_error_naming_it_and_how_to_get_it(offline_hub, tmp_path):
    for load in (
        lambda: DistilledSSL(source="nobody/missing-student"),
        lambda: SSLTeacher("nobody/missing-student", target_layers=[1], save_path=str(tmp_path)),
        lambda: build_upstream("nobody/missing-student"),
    ):
        with pytest.raises(FileNotFoundError) as error:
            load()
        message = str(error.value)
        assert "nobody/missing-student" in message and "not in the HuggingFace cache" in message
        assert "hf download nobody/missing-student" in message and "local folder" in message


def test_a_cached_snapshot_without_the_needed_files_is_an_error_naming_them(offline_hub):
    put_in_hub_cache(offline_hub, "someone/half", STUDENT, names=["config.json"])
    with pytest.raises(FileNotFoundError, match=r"someone/half .* has no model\.safetensors"):
        DistilledSSL(source="someone/half")


def test_a_source_that_is_neither_a_folder_nor_an_id_is_named(tmp_path):
    with pytest.raises(ValueError, match="'/no/such/folder' is neither a local folder nor a hub id"):
        resolve_source("/no/such/folder", files=["*.json"])
