"""A student as a SpeechBrain inference folder: DistilledEncoder loads it (folder or hub id), refuses hostile YAML."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import soundfile
import torch
import torchaudio
import yaml
from hub_cache import put_in_hub_cache
from hyperpyyaml import load_hyperpyyaml

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.export.inference import export_inference, main
from speechbrain_gendistill.inference import DistilledEncoder
from speechbrain_gendistill.lobes import DistilHuBERTStudent, GenDistillStudent

AUDIO = Path(__file__).parents[1] / "data" / "fsdd" / "recordings" / "0_jackson_0.flac"  # 8 kHz, 0.64 s
SMALL = dict(
    target_dim=24,
    num_target_layers=3,
    d_model=16,
    num_layers=1,
    num_heads=4,
    d_ffn=32,
    conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    pos_conv_kernel=8,
    pos_conv_groups=4,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_like(student_class=GenDistillStudent):
    torch.manual_seed(0)
    student = student_class(**SMALL, output_all_hiddens=True)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    if isinstance(student, DistilHuBERTStudent):
        student.drop_prediction_heads()
    return student.eval()


@pytest.mark.parametrize("student_class", [GenDistillStudent, DistilHuBERTStudent])
def test_the_interface_gives_every_layer_of_the_student(student_class, tmp_path):
    student = trained_like(student_class)
    folder = main(["--student", str(export_student(student, tmp_path / "student")), "--out", str(tmp_path / "sb")])
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "encoder.ckpt", "hyperparams.yaml"]
    encoder = DistilledEncoder.from_hparams(source=str(folder), savedir=str(tmp_path / "savedir"))
    wavs, wav_lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    layers = encoder.encode_batch(wavs, wav_lens)
    with torch.no_grad():
        expected = student(wavs, wav_lens)
    assert layers.shape == expected.shape and layers.shape[1] == 2  # [N, B, T, D]
    assert torch.equal(layers, expected)
    # A file: read, resampled from 8 to 16 kHz and encoded alone.
    audio, rate = soundfile.read(AUDIO, dtype="float32")
    resampled = torchaudio.functional.resample(torch.from_numpy(audio)[None], rate, 16000)
    with torch.no_grad():
        from_file, expected = encoder.encode_file(AUDIO), student(resampled)
    assert from_file.shape == expected.shape and from_file.shape[1:3] == (1, 514)  # 10,296 samples at 16 kHz
    assert (from_file - expected).abs().max() < 1e-4


def test_the_interface_loads_by_hub_id_offline(offline_hub, tmp_path):
    student = trained_like()
    put_in_hub_cache(offline_hub, "someone/encoder", export_inference(student, tmp_path / "sb"))
    encoder = DistilledEncoder.from_hparams(source="someone/encoder", savedir=str(tmp_path / "savedir"))
    wavs = torch.randn(1, 4000)
    with torch.no_grad():
        assert torch.equal(encoder.encode_batch(wavs), student(wavs))
    with pytest.raises(FileNotFoundError, match="hf download nobody/encoder"):
        DistilledEncoder.from_hparams(source="nobody/encoder", savedir=str(tmp_path / "other"))


def test_a_hostile_yaml_is_refused_with_every_offending_tag_and_nothing_runs(tmp_path):
    folder = export_inference(trained_like(), tmp_path / "sb")
    markers = [tmp_path / f"ran{index}" for index in range(5)]
    (folder / "other.yaml").write_text(f'x: !apply:os.system ["touch {markers[4]}"]\n')
    hostile = (
        f'a: !apply:os.system ["touch {markers[0]}"]\n'
        "b: !new:subprocess.Popen\n"
        f'    args: ["touch", "{markers[1]}"]\n'
        "c: !name:builtins.eval\n"
        "d:\n"
        "    - 1\n"
        f'    - [2, !apply:os.system ["touch {markers[2]}"]]\n'
        "e: !module:os\n"
        "f: !include:other.yaml\n"
        f'g: !apply:speechbrain.utils.superpowers.run_shell ["touch {markers[3]}"]\n'
        'h: !apply:torch.hub.load ["someone/repo", "model"]\n'
        "i: !apply:speechbrain_gendistill.lobes.DistilledSSL.save_weights [null, /tmp/overwritten]\n"
    )
    yaml_path = folder / "hyperparams.yaml"
    yaml_path.write_text(hostile + yaml_path.read_text())
    with pytest.raises(ValueError) as error:
        DistilledEncoder.from_hparams(source=str(folder), savedir=str(tmp_path / "savedir"))
    message = str(error.value)
    for line, tag in [
        (1, "!apply:os.system"),
        (2, "!new:subprocess.Popen"),
        (4, "!name:builtins.eval"),
        (7, "!apply:os.system"),
        (8, "!module:os"),
        (9, "!include:other.yaml"),
        (10, "!apply:speechbrain.utils.superpowers.run_shell"),
        (11, "!apply:torch.hub.load"),
        (12, "!apply:speechbrain_gendistill.lobes.DistilledSSL.save_weights"),
    ]:
        assert f"line {line} " in message and tag in message, (line, tag)
    assert "line 7 (d[1][1])" in message and "nothing was built" in message
    assert not any(marker.exists() for marker in markers)
    assert not (tmp_path / "savedir").exists()
    # The payload is real: SpeechBrain's own loader, unchecked, runs it.
    load_hyperpyyaml(f'a: !apply:os.system ["touch {markers[0]}"]\n')
    assert markers[0].exists()


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path):
    folder = export_inference(trained_like(), tmp_path / "sb")
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (shutil.copy, (str(folder / "hyperparams.yaml"), str(marker)))

    (folder / "encoder.ckpt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="is not a safetensors file"):
        DistilledEncoder.from_hparams(source=str(folder), savedir=str(tmp_path / "savedir"))
    assert not marker.exists()


def test_the_card_front_matter_is_a_speechbrain_one(tmp_path):
    facts = {"teacher": "microsoft/wavlm-base-plus", "train data": "train-clean-100, train-other-500"}
    folder = export_inference(trained_like(), tmp_path / "sb", facts, {"test WER": 12.5}, license="cc-by-4.0")
    metadata = yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])
    assert metadata["library_name"] == "speechbrain" and metadata["license"] == "cc-by-4.0"
    assert metadata["base_model"] == "microsoft/wavlm-base-plus" and metadata["metrics"] == ["wer"]
    assert metadata["datasets"][0] == "openslr/librispeech_asr" and "gendistiller" in metadata["tags"]
    assert "DistilledEncoder.from_hparams" in (folder / "README.md").read_text()
