"""Export of students and the DistilledSSL lobe: exact round trips, data-only files, safe loading."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import yaml

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.lobes import DistilHuBERTStudent, DistilledSSL, GenDistillStudent
from speechbrain_gendistill.lobes.distilled import load_student

SMALL = dict(
    target_dim=24,
    num_target_layers=3,
    d_model=16,
    num_layers=2,
    num_heads=4,
    d_ffn=32,
    conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    pos_conv_kernel=8,
    pos_conv_groups=4,
)


def trained_like(student_class):
    """A student whose every weight differs from a fresh one, as after training."""
    torch.manual_seed(0)
    student = student_class(**SMALL)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return student.eval()


@pytest.mark.parametrize("student_class", [GenDistillStudent, DistilHuBERTStudent])
def test_export_round_trip_gives_the_same_outputs(student_class, tmp_path):
    student = trained_like(student_class)
    folder = export_student(student, tmp_path / "student", {"teacher": "local", "steps": 3})
    config = json.loads((folder / "config.json").read_text())
    assert config["class"] == student_class.__name__ and "!new" not in (folder / "config.json").read_text()
    assert "steps" in (folder / "README.md").read_text()
    wavs, wav_lens = torch.randn(2, 4000), torch.tensor([1.0, 0.7])
    for all_hiddens in (False, True):
        student.output_all_hiddens = all_hiddens
        encoder = DistilledSSL(source=str(folder), output_all_hiddens=all_hiddens)
        assert torch.equal(encoder(wavs, wav_lens), student(wavs, wav_lens))
    heads = [name for name in load_student(folder).state_dict() if name.startswith("prediction_heads")]
    assert heads == []


@pytest.mark.parametrize("student_class", [GenDistillStudent, DistilHuBERTStudent])
def test_lobe_from_a_config_takes_its_weights_from_a_pretrainer(student_class, tmp_path):
    """The path an exported ASR model takes: architecture from YAML, weights through SpeechBrain's Pretrainer."""
    from speechbrain.utils.parameter_transfer import Pretrainer

    source = DistilledSSL(source=str(export_student(trained_like(student_class), tmp_path / "student")))
    (tmp_path / "shared").mkdir()
    source.save_weights(tmp_path / "shared" / "ssl.ckpt")
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    encoder = DistilledSSL(student_config=config)
    wavs = torch.randn(1, 4000)
    assert not torch.equal(encoder(wavs), source(wavs))  # fresh weights until the Pretrainer loads them
    pretrainer = Pretrainer(collect_in=tmp_path / "collected", loadables={"ssl": encoder})
    pretrainer.collect_files(default_source=str(tmp_path / "shared"))
    pretrainer.load_collected()
    assert torch.equal(encoder(wavs), source(wavs))


def test_lobe_needs_exactly_one_of_source_and_config(tmp_path):
    config = json.loads((export_student(trained_like(GenDistillStudent), tmp_path) / "config.json").read_text())
    for arguments in ({}, {"source": str(tmp_path), "student_config": config}):
        with pytest.raises(ValueError, match="either source .* or student_config"):
            DistilledSSL(**arguments)
    with pytest.raises(ValueError, match="DistilledSSL student_config: unknown student class 'Mystery'"):
        DistilledSSL(student_config={**config, "class": "Mystery"})


def test_exported_weights_hold_no_baseline_heads(tmp_path):
    from safetensors.torch import load_file

    student = trained_like(DistilHuBERTStudent)
    weights = load_file(export_student(student, tmp_path) / "model.safetensors")
    assert not any(name.startswith("prediction_heads") for name in weights)
    expected = sum(p.numel() for p in student.parameters()) - sum(
        p.numel() for p in student.prediction_heads.parameters()
    )
    assert sum(t.numel() for t in weights.values()) == expected


def test_frozen_lobe_has_no_gradients_and_stays_in_eval(tmp_path):
    folder = export_student(trained_like(GenDistillStudent), tmp_path)
    encoder = DistilledSSL(source=str(folder), freeze=True)
    encoder.train()
    assert not encoder.model.training
    out = encoder(torch.randn(1, 4000))
    assert not out.requires_grad
    assert all(not p.requires_grad for p in encoder.parameters())


def test_fine_tuned_lobe_trains_all_but_an_optionally_frozen_cnn(tmp_path):
    folder = export_student(trained_like(GenDistillStudent), tmp_path)
    encoder = DistilledSSL(source=str(folder), freeze=False, freeze_feature_extractor=True, output_norm=True)
    encoder.train()
    out = encoder(torch.randn(2, 4000), torch.tensor([1.0, 0.8]))
    assert torch.allclose(out.mean(-1), torch.zeros(out.shape[:-1]), atol=1e-5)  # per-frame LayerNorm
    out.pow(2).mean().backward()
    cnn = encoder.model.frontend.feature_extractor
    assert all(p.grad is None for p in cnn.parameters())
    assert encoder.model.generator.out_proj.weight.grad is not None


class Payload:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("planted_as", ["model.safetensors", "pytorch_model.bin"])
def test_a_planted_pickle_is_refused_and_never_runs(planted_as, tmp_path):
    folder = export_student(trained_like(GenDistillStudent), tmp_path / "student")
    marker = tmp_path / "payload_ran"
    (folder / "model.safetensors").unlink()
    with open(folder / planted_as, "wb") as handle:
        pickle.dump({"weights": Payload(marker)}, handle)
    with pytest.raises(ValueError, match="model.safetensors"):
        DistilledSSL(source=str(folder))
    assert not marker.exists()


def test_a_folder_that_is_not_an_export_is_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match="config.json is missing"):
        DistilledSSL(source=str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    with pytest.raises(ValueError, match="config.json does not describe a student"):
        load_student(tmp_path)


def test_the_model_card_has_the_hubs_front_matter(tmp_path):
    facts = {"teacher": "microsoft/wavlm-base-plus", "target layers": [4, 8, 12], "train data": "train-clean-100"}
    facts.update({"dev L1, layer 4": 0.41, "dev cosine, layer 4": 0.8})
    folder = export_student(trained_like(GenDistillStudent), tmp_path, facts, {"test WER (CTC probe)": 73.9})
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    metadata = yaml.safe_load(text.split("---\n")[1])
    assert set(metadata) == {"license", "library_name", "tags", "datasets", "metrics", "base_model", "pipeline_tag"}
    assert metadata["library_name"] == "speechbrain" and metadata["license"] == "unknown"
    assert metadata["base_model"] == "microsoft/wavlm-base-plus"
    assert metadata["datasets"] == ["openslr/librispeech_asr", "speechcolab/gigaspeech", "facebook/voxpopuli"]
    assert metadata["metrics"] == ["l1", "cosine_similarity", "wer"]
    assert {"speech", "self-supervised-learning", "distillation", "gendistiller"} <= set(metadata["tags"])
    assert "| target layers | [4, 8, 12] |" in text and "| test WER (CTC probe) | 73.9 |" in text
    local = export_student(trained_like(DistilHuBERTStudent), tmp_path / "local", {"teacher": str(tmp_path)})
    metadata = yaml.safe_load((local / "README.md").read_text().split("---\n")[1])
    assert "base_model" not in metadata and "datasets" not in metadata and "distilhubert" in metadata["tags"]
