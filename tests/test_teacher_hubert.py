"""The HuBERT-style demo teacher: MFCC frames on the model's grid, k-means units, labels of the crop, the recipe.

The dev split's determinism is tested with ``prepare_audio_folder`` (tests/test_audio_folder.py); here the
recipe is tested to read its folder through it.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from safetensors import safe_open
from safetensors.torch import load_file
from speechbrain.nnet.schedulers import LinearWarmupScheduler
from transformers import WavLMConfig, WavLMModel

from speechbrain_gendistill.core.frames import DEFAULT_CONV_LAYERS, conv_output_lengths
from speechbrain_gendistill.core.licenses import license_section
from speechbrain_gendistill.data import AudioCrop, prepare_audio_folder
from speechbrain_gendistill.data.audio_folder import split_dev
from speechbrain_gendistill.demo.teacher_ctc import initial_teacher, unpack_teacher
from speechbrain_gendistill.demo.teacher_hubert.__main__ import main
from speechbrain_gendistill.demo.teacher_hubert.card import dev_split
from speechbrain_gendistill.demo.teacher_hubert.pretraining import HubertPretrainingBrain, unit_dataset
from speechbrain_gendistill.demo.teacher_hubert.units import (
    MFCCFeatures,
    UnitLabeler,
    fit_or_load_units,
    kmeans,
    manifest_digest,
)
from speechbrain_gendistill.lobes import SSLTeacher

REPO_ROOT = Path(__file__).resolve().parents[1]
HPARAMS = REPO_ROOT / "hparams" / "demo" / "teacher_hubert.yaml"
TINY_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[16] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=4,
    layerdrop=0.0,
    mask_time_prob=0.8,
    mask_time_length=10,
)
# Small enough for seconds of training on one thread.
TINY_OVERRIDES = [
    f"--teacher_config={json.dumps(TINY_CONFIG)}",
    "--num_units=8",
    "--final_dim=16",
    "--crop_duration=1.0",
    "--max_batch_length=3",
    "--valid_batch_size=2",
    "--dev_fraction=0.25",
    "--prep_workers=1",
    "--number_of_epochs=2",
    "--lr=0.002",
    "--ckpt_interval_minutes=0",
]


def model_frames(samples: int) -> int:
    return int(conv_output_lengths(torch.tensor([samples]), DEFAULT_CONV_LAYERS)[0])


def synthetic_speech(seconds: float, seed: int) -> np.ndarray:
    """Sequences of 'phones' (tones, noise bursts, silence) of 60-200 ms, so that MFCC frames form clusters."""
    rng = np.random.default_rng(seed)
    pieces, total = [], int(seconds * 16000)
    while sum(len(piece) for piece in pieces) < total:
        length = int(rng.integers(960, 3200))
        time = np.arange(length) / 16000
        kind = rng.integers(6)
        if kind < 4:
            piece = 0.3 * np.sin(2 * np.pi * (250, 600, 1300, 2600)[kind] * time)
        elif kind == 4:
            piece = 0.2 * rng.standard_normal(length)
        else:
            piece = np.zeros(length)
        pieces.append(piece + 0.003 * rng.standard_normal(length))
    return np.concatenate(pieces)[:total].astype(np.float32)


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Named like a LibriSpeech excerpt so that the card's license section recognises it (the audio is synthetic).
    folder = tmp_path_factory.mktemp("librispeech_excerpts")
    for index in range(8):
        sf.write(folder / f"{index}-10-000{index}.flac", synthetic_speech(1.5 + 0.15 * index, seed=index), 16000)
    return folder


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("samples", [400, 401, 719, 720, 1000, 16000, 16319, 16321, 33333])
def test_mfcc_frames_are_the_model_frames(samples: int, one_torch_thread):
    torch.manual_seed(0)
    model = WavLMModel(WavLMConfig(**TINY_CONFIG)).eval()
    signal = torch.randn(samples)
    with torch.no_grad():
        frames = model(signal[None]).last_hidden_state.shape[1]
    assert MFCCFeatures()(signal).shape == (frames, 39)
    assert model_frames(samples) == frames


def test_kmeans_recovers_separated_clusters(one_torch_thread):
    generator = torch.Generator().manual_seed(0)
    centres = 20 * torch.randn(6, 10, generator=generator)
    truth = torch.arange(6).repeat_interleave(200)
    points = centres[truth] + torch.randn(1200, 10, generator=generator)
    found = kmeans(points, 6, seed=1, max_points=900)
    assert torch.cdist(centres, found).min(1).values.max() < 0.5
    assignment = torch.cdist(points, found).argmin(1)
    # Each true cluster is exactly one found cluster.
    assert all(len(set(assignment[truth == k].tolist())) == 1 for k in range(6))
    assert len(set(assignment.tolist())) == 6


def test_units_are_saved_and_reused(tmp_path: Path, one_torch_thread):
    signals = [torch.from_numpy(synthetic_speech(1.0, seed)) for seed in range(3)]
    first = fit_or_load_units(tmp_path / "units.safetensors", signals, MFCCFeatures(), 6, seed=0)
    # Reused from the file: no signal is read again.
    assert torch.equal(fit_or_load_units(tmp_path / "units.safetensors", [], MFCCFeatures(), 6, seed=0), first)
    with pytest.raises(ValueError, match="other options"):
        fit_or_load_units(tmp_path / "units.safetensors", [], MFCCFeatures(), 6, seed=1)


def test_labels_follow_the_crop(audio_folder: Path, tmp_path: Path, one_torch_thread):
    manifests = prepare_audio_folder(audio_folder, tmp_path, dev_fraction=0.25, num_workers=1)
    labeler = UnitLabeler(torch.randn(8, 39), MFCCFeatures())
    crop = AudioCrop(0.5, random_crop=True, seed=0)
    dataset = unit_dataset(manifests["train"], audio_folder, crop, labeler)
    index = 0
    whole = torch.from_numpy(sf.read(read_rows(manifests["train"])[index]["wav"], dtype="float32")[0])
    starts = []
    for epoch in range(3):
        crop.set_epoch(epoch)
        item = dataset[index]
        start = next(s for s in range(len(whole) - 8000 + 1) if torch.equal(whole[s : s + 8000], item["sig"]))
        starts.append(start)
        assert torch.equal(item["units"], labeler(item["sig"]))
        assert item["units"].shape == (model_frames(8000),)
    assert len(set(starts)) == 3  # the crop moved, and the labels with it


def test_loss_falls_on_a_fixed_batch(audio_folder: Path, tmp_path: Path, one_torch_thread):
    overrides = {
        "output_folder": str(tmp_path / "out"),
        "data_folder": str(audio_folder),
        "teacher_config": TINY_CONFIG,
        "num_units": 8,
        "final_dim": 16,
    }
    with open(HPARAMS, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    signals = [torch.from_numpy(synthetic_speech(1.0, seed)) for seed in range(4)]
    labeler = UnitLabeler(fit_or_load_units(tmp_path / "u.safetensors", signals, hparams["mfcc"], 8), hparams["mfcc"])
    manifests = prepare_audio_folder(audio_folder, tmp_path / "csv", dev_fraction=0.25, num_workers=1)
    dataset = unit_dataset(manifests["train"], audio_folder, AudioCrop(1.0, random_crop=False), labeler)
    batch = sb.dataio.batch.PaddedBatch([dataset[index] for index in range(4)])
    brain = HubertPretrainingBrain(hparams["modules"], hparams["opt_class"], hparams, {"noprogressbar": True})
    brain.hparams.lr_scheduler = LinearWarmupScheduler(initial_value=0.005, num_warmup_steps=0, num_training_steps=1000)
    brain.init_optimizers()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    brain.modules.train()
    losses = [float(brain.fit_batch(batch)) for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_recipe_trains_saves_packs_and_resumes(audio_folder: Path, tmp_path: Path, one_torch_thread):
    output, packed = tmp_path / "out", tmp_path / "packed"
    args = [
        str(HPARAMS),
        f"--data_folder={audio_folder}",
        f"--output_folder={output}",
        f"--pack_folder={packed}",
        "--data_description=synthetic tones and noise",
        "--noprogressbar",
        *TINY_OVERRIDES,
    ]
    main(args)
    log = (output / "train_log.txt").read_text().splitlines()
    assert len(log) == 2 and "valid acc" in log[-1] and "valid majority acc" in log[-1]

    # The folder was read through prepare_audio_folder: a quarter of the files, chosen by their hash, is the
    # dev set, and the units were fitted on the training rows only.
    train, dev = (read_rows(output / "save" / name) for name in ("train.csv", "dev.csv"))
    files = sorted(path.name for path in audio_folder.iterdir())
    assert {row["ID"] for row in dev} == split_dev(files, 0.25) and len(dev) == 2
    assert sorted(row["ID"] for row in train + dev) == files
    with safe_open(output / "kmeans_units.safetensors", framework="pt") as handle:
        fitted_on = json.loads(handle.metadata()["options"])["fitted_on"]
    assert fitted_on == manifest_digest(output / "save" / "train.csv")

    # The trained encoder is an HF folder; its config masks as a fine-tuned hub HuBERT would.
    trained = WavLMModel.from_pretrained(output / "trained")
    assert trained.config.num_hidden_layers == 2 and trained.config.mask_time_prob == 0.05
    with torch.no_grad():
        assert trained(torch.randn(1, 16000)).last_hidden_state.shape == (1, 49, 32)

    # The packed copy: half precision, its card, its units; the control rebuilds the initial weights.
    assert all(tensor.dtype == torch.float16 for tensor in load_file(packed / "model.safetensors").values())
    card = (packed / "README.md").read_text()
    assert "HuBERT" in card and "untrained initial weights" in card and "dev masked-prediction accuracy" in card
    assert "python -m speechbrain_gendistill.demo.teacher_hubert hparams/demo/teacher_hubert.yaml" in card
    assert "--data_folder=<audio folder>" in card and "--data_description='synthetic tones and noise'" in card
    assert "chosen by a hash of their IDs" in card and "16 of its 251 files" in card
    # Its license: weights subject to the data's license (LibriSpeech, by the folder's name), not released by us.
    assert card.endswith("\n".join(license_section([audio_folder.name])))
    assert "LibriSpeech (Panayotov et al., 2015): CC BY 4.0; credit LibriSpeech" in card
    assert "The weights are released under" not in card
    assert load_file(packed / "kmeans_units.safetensors")["centroids"].shape == (8, 39)
    initial = load_file(Path(initial_teacher(packed, tmp_path / "initial")) / "model.safetensors")
    before = load_file(output / "random_init" / "model.safetensors")
    assert all(torch.equal(initial[name], before[name]) for name in before)
    after = load_file(output / "trained" / "model.safetensors")
    weight = "encoder.layers.0.attention.k_proj.weight"
    assert not torch.equal(after[weight], before[weight])
    initial_dev = json.loads((output / "initial_dev.json").read_text())
    assert set(initial_dev) == {"loss", "acc", "majority acc"}

    # A finished run is not redone.
    saved_at = (output / "trained" / "model.safetensors").stat().st_mtime_ns
    main(args)
    assert (output / "train_log.txt").read_text().splitlines() == log
    assert (output / "trained" / "model.safetensors").stat().st_mtime_ns == saved_at

    # Without the saved encoder, the run resumes from its checkpoints: no epoch is trained again,
    # and the best epoch's weights are saved again.
    shutil.rmtree(output / "trained")
    main(args)
    assert (output / "train_log.txt").read_text().splitlines() == log
    resaved = load_file(output / "trained" / "model.safetensors")
    assert all(torch.equal(resaved[name], after[name]) for name in after)


def test_the_card_tells_a_split_of_the_earlier_recipe_from_one_of_prepare_audio_folder(
    audio_folder: Path, tmp_path: Path
):
    # The earlier recipe (hubert_pretraining) wrote dev.csv itself, with its own columns and no record beside it.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "dev.csv").write_text("ID,duration,wav,spk_id\n19-198-0001,6.0,/x/19-198-0001.flac,19\n")
    text = dev_split({"save_folder": earlier, "valid_csv": earlier / "dev.csv", "dev_fraction": 0.064})
    assert text.startswith("1 files, 0.1 min") and "earlier version" in text and "hash" not in text
    manifests = prepare_audio_folder(audio_folder, tmp_path / "new", dev_fraction=0.25, num_workers=1)
    text = dev_split({"save_folder": tmp_path / "new", "valid_csv": manifests["dev"], "dev_fraction": 0.25})
    assert text.startswith("2 files") and "a share 0.25 of the files, chosen by a hash of their IDs" in text


def test_shipped_teacher_loads_as_a_hub_folder_and_is_trained(tmp_path: Path, one_torch_thread):
    """pretrained/demo_teacher_hubert: SSLTeacher reads it; its layers are not those of its initial weights."""
    packed = REPO_ROOT / "pretrained" / "demo_teacher_hubert"
    card = (packed / "README.md").read_text()
    assert "stopped at epoch 90 of the 200" in card and "CC BY 4.0" in card
    with safe_open(str(packed / "kmeans_units.safetensors"), "pt") as handle:
        assert list(handle.get_tensor("centroids").shape) == [100, 39]
    speech = sorted((REPO_ROOT / "data" / "librispeech_sid").rglob("*.flac"))[0]
    wav = torch.from_numpy(sf.read(speech, dtype="float32", frames=48000)[0])[None]
    layers = {}
    for name, folder in {
        "trained": unpack_teacher(packed, tmp_path / "trained"),
        "initial": initial_teacher(packed, tmp_path / "initial"),
    }.items():
        teacher = SSLTeacher(str(folder), target_layers=[2, 4, 6], save_path=str(tmp_path / "hub"))
        with torch.no_grad():
            layers[name] = teacher(wav, torch.ones(1))
        assert layers[name].shape == (3, 1, 149, 192) and torch.isfinite(layers[name]).all()
    cosine = torch.nn.functional.cosine_similarity(layers["trained"], layers["initial"], dim=-1).mean()
    assert cosine < 0.9, cosine
