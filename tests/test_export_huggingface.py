"""A DistilHuBERT student as a native transformers HuBERT: same hidden states in transformers and SpeechBrain's lobe."""

from __future__ import annotations

import pytest
import torch
import yaml
from speechbrain.integrations.huggingface.hubert import HuBERT
from speechbrain.integrations.huggingface.weighted_ssl import WeightedSSLModel
from transformers import AutoModel

from speechbrain_gendistill.core.frames import conv_output_lengths
from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.export.huggingface import PADDING_NOTES, export_huggingface, main
from speechbrain_gendistill.lobes import DistilHuBERTStudent, GenDistillStudent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_like(extractor_norm: str, channels: int) -> DistilHuBERTStudent:
    """A student whose every weight is off its initial value, as after training."""
    torch.manual_seed(0)
    student = DistilHuBERTStudent(
        target_dim=24,
        num_target_layers=3,
        d_model=16,
        num_layers=2,
        num_heads=4,
        d_ffn=32,
        conv_layers=[(channels, 10, 5), (channels, 3, 2), (channels, 2, 2)],
        pos_conv_kernel=8,
        pos_conv_groups=4,
        extractor_norm=extractor_norm,
        output_all_hiddens=True,
    )
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return student


# group_norm with a projection (32 CNN channels -> width 16); layer_norm with none (16 -> 16: HF gets an identity)
@pytest.mark.parametrize("extractor_norm, channels", [("group_norm", 32), ("layer_norm", 16)])
def test_transformers_and_speechbrain_give_the_students_hidden_states(extractor_norm, channels, tmp_path):
    student = trained_like(extractor_norm, channels)
    folder = main(["--student", str(export_student(student, tmp_path / "student")), "--out", str(tmp_path / "hf")])
    assert sorted(path.name for path in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    student.drop_prediction_heads()
    student.eval()
    wavs = torch.randn(2, 8000)
    model = AutoModel.from_pretrained(folder).eval()
    assert type(model).__name__ == "HubertModel"
    lobe = HuBERT(source=str(folder), save_path=str(tmp_path / "sb"), freeze=True, output_all_hiddens=True)
    weighted = WeightedSSLModel(hub=str(folder), save_path=str(tmp_path / "sb"), freeze=True)
    with torch.no_grad():
        ours = student(wavs)
        theirs = torch.stack(model(wavs, output_hidden_states=True).hidden_states)
        speechbrain = lobe(wavs, torch.ones(2))
        mixed = weighted(wavs)  # its layer weights start equal: the mean of the layers
    assert ours.shape == theirs.shape == speechbrain.shape == (3, 2, 399, 16)  # encoder input and 2 layers
    for layer in range(3):
        assert (ours[layer] - theirs[layer]).abs().max() <= 1e-4, layer
        assert (ours[layer] - speechbrain[layer]).abs().max() <= 1e-4, layer
    assert (mixed - ours.mean(0)).abs().max() <= 1e-4


def test_padded_batches_agree_with_a_layer_norm_cnn_and_not_with_a_group_norm_one(tmp_path):
    wavs, wav_lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    valid = conv_output_lengths(torch.tensor([4800]), [(16, 10, 5), (16, 3, 2), (16, 2, 2)]).item()
    differences = {}
    for norm, channels in (("group_norm", 32), ("layer_norm", 16)):
        student = trained_like(norm, channels)
        student.drop_prediction_heads()
        folder = export_huggingface(student.eval(), tmp_path / norm)
        lobe = HuBERT(source=str(folder), save_path=str(tmp_path / "sb"), freeze=True, output_all_hiddens=True)
        with torch.no_grad():
            differences[norm] = (lobe(wavs, wav_lens)[:, 1, :valid] - student(wavs, wav_lens)[:, 1, :valid]).abs().max()
        assert PADDING_NOTES[norm.split("_")[0]] in (folder / "README.md").read_text()  # the card says which
    assert differences["layer_norm"] <= 1e-4 < 1e-2 < differences["group_norm"]


def test_a_student_hubert_cannot_express_is_refused(tmp_path):
    generator = GenDistillStudent(
        target_dim=24, num_target_layers=2, d_model=16, num_layers=1, num_heads=4, d_ffn=32,
        conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4,
    )  # fmt: skip
    with pytest.raises(ValueError, match="GenDistillStudent has no transformers class.*export.inference"):
        export_huggingface(generator, tmp_path / "a")
    with pytest.raises(ValueError, match="still has its prediction heads"):
        export_huggingface(trained_like("group_norm", 32), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_out_folder_with_other_files_is_refused_and_kept(tmp_path):
    student = trained_like("group_norm", 32)
    student.drop_prediction_heads()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds other files \(notes\.txt\)"):
        export_huggingface(student, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_card_is_a_transformers_hubert_card_with_the_distillation_facts(tmp_path):
    facts = {"teacher": "facebook/hubert-base-ls960", "train data": "train-clean-100", "dev L1, layer 4": 0.4}
    source = export_student(trained_like("group_norm", 32), tmp_path / "student", facts, license="apache-2.0")
    folder = main(["--student", str(source), "--out", str(tmp_path / "hf")])
    text = (folder / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---\n")[1])
    assert metadata["library_name"] == "transformers" and metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == "facebook/hubert-base-ls960"
    assert metadata["datasets"] == ["openslr/librispeech_asr"] and metadata["metrics"] == ["l1"]
    assert {"distilhubert", "hubert", "distillation"} <= set(metadata["tags"])
    assert "| dev L1, layer 4 | 0.4 |" in text and "AutoModel.from_pretrained" in text
