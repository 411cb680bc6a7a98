"""Exports written by an earlier version still load, through the same entry points, with the same outputs.

The fixtures (``tests/fixtures/exports_v0.1``, see its README) were written by
version 0.1.0 before the package was reorganised; their files name classes by
the paths of that version.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from speechbrain.inference.ASR import EncoderASR

from speechbrain_gendistill.lobes import DistilledSSL

FIXTURES = Path(__file__).parent / "fixtures" / "exports_v0.1"


def test_exported_students_give_the_outputs_they_gave_when_written():
    references = load_file(FIXTURES / "reference_outputs.safetensors")
    for name in ("gendistill_student", "distilhubert_student"):
        encoder = DistilledSSL(source=str(FIXTURES / name), output_all_hiddens=True)
        with torch.no_grad():
            hiddens = encoder(references["wavs"], references["wav_lens"])
        assert hiddens.shape == references[name].shape
        assert (hiddens - references[name]).abs().max() < 1e-5, name


def test_exported_ctc_model_loads_in_encoder_asr_and_gives_the_same_log_probabilities(tmp_path: Path):
    references = load_file(FIXTURES / "reference_outputs.safetensors")
    asr = EncoderASR.from_hparams(source=str(FIXTURES / "ctc_asr"), savedir=str(tmp_path / "savedir"))
    with torch.no_grad():
        log_probs = asr.encode_batch(references["wavs"], references["wav_lens"])
    expected = references["ctc_asr_log_probs"]
    assert log_probs.shape == expected.shape
    assert (log_probs - expected).abs().max() < 1e-5
