"""Every probe recipe end to end on small local upstreams: the repository's FSDD and LibriSpeech miniature, tiny
fakes of Speech Commands and VoxCeleb1, and the synthetic mini-LibriSpeech for phonemes and ASR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_probe_data import speech_commands, tone  # noqa: F401 (a fixture)

from speechbrain_gendistill.demo.runner import run_script

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def run_recipe(recipe: str, hparams: str, folder: Path, **overrides) -> dict:
    args = [
        str(RECIPES / recipe / "hparams" / hparams),
        f"--output_folder={folder / 'out'}",
        f"--cache_folder={folder / 'cache'}",
        "--learning_rates=[0.01, 0.1]",
        "--noprogressbar",
    ]
    args += [
        f"--{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in overrides.items()
    ]
    run_script(RECIPES / recipe / "train.py", args)
    return json.loads((folder / "out" / "results.json").read_text())


def test_fsdd_keyword_spotting_on_the_repository_data(wavlm_dir, tmp_path):
    results = run_recipe("FSDD/KS", "ks.yaml", tmp_path, upstream_source=str(wavlm_dir))
    assert results["task"] == "KS-FSDD" and results["sizes"] == {"train": 1600, "dev": 200, "test": 200}
    assert results["upstream"]["layers"] == [1, 5] and all(
        split["built_now"] for split in results["upstream"]["cache"].values()
    )
    assert results["test"] > 15.0  # ten digits, chance is 10%: even a random small WavLM's layers tell some apart
    assert len(results["test_outcomes"]["accuracy"]) == 200
    again = run_recipe("FSDD/KS", "ks.yaml", tmp_path, upstream_source=str(wavlm_dir), number_of_epochs=1, seed=2)
    assert not any(split["built_now"] for split in again["upstream"]["cache"].values())  # the cache is reused
    assert again["upstream"]["cache"] == {
        split: {**value, "built_now": False} for split, value in results["upstream"]["cache"].items()
    }


def test_speaker_identification_on_the_repository_miniature(gendistill_dir, tmp_path):
    results = run_recipe(
        "LibriSpeech/SID", "sid.yaml", tmp_path, upstream_source=str(gendistill_dir), number_of_epochs=2
    )
    assert results["sizes"] == {"train": 60, "dev": 60, "test": 60}
    assert results["upstream"]["layers"] == [0, 3]  # GenDistiller: its generated layers, all of them
    assert all(item.endswith("_test") for item in results["test_outcomes"]["accuracy"])
    assert set(results["dev_by_lr"]) == {"0.01", "0.1"} and results["metric"] == "accuracy"


def test_speech_commands_keyword_spotting(speech_commands, distilhubert_dir, tmp_path):  # noqa: F811
    data, test = speech_commands
    results = run_recipe(
        "SpeechCommands/KS",
        "ks.yaml",
        tmp_path,
        upstream_source=str(distilhubert_dir),
        data_folder=str(data),
        test_folder=str(test),
        number_of_epochs=2,
    )
    assert results["sizes"] == {"train": 12, "dev": 13, "test": 12}
    assert results["upstream"]["layers"] == [1, 3]  # DistilHuBERT: its encoder layers, not its front-end
    assert "test-_silence_-_silence__test" in results["test_outcomes"]["accuracy"]


def test_voxceleb_speaker_identification_with_training_crops(wavlm_dir, tmp_path):
    lines = []
    for speaker in ("id10001", "id10002", "id10003"):
        for number, split in enumerate("11123", start=1):
            relative = f"{speaker}/video/{number:05d}.wav"
            tone(tmp_path / "vox" / "wav" / relative, 0.6 + 0.2 * number, seed=number)
            lines.append(f"{split} {relative}")
    (tmp_path / "vox" / "iden_split.txt").write_text("\n".join(lines) + "\n")
    results = run_recipe(
        "VoxCeleb/SID",
        "sid.yaml",
        tmp_path,
        upstream_source=str(wavlm_dir),
        data_folder=str(tmp_path / "vox"),
        window_seconds=0.2,
        hop_seconds=0.2,
        train_crop_seconds=0.4,
        number_of_epochs=2,
    )
    assert results["sizes"] == {"train": 9, "dev": 3, "test": 3} and results["task"] == "SID-VoxCeleb1"


def test_phoneme_recognition_with_espeak_phonemes(mini_librispeech, distilhubert_dir, tmp_path):
    results = run_recipe(
        "LibriSpeech/PR",
        "pr_tiny.yaml",
        tmp_path,
        upstream_source=str(distilhubert_dir),
        data_folder=str(mini_librispeech),
        number_of_epochs=2,
    )
    assert results["metric"] == "PER" and results["higher_is_better"] is False
    outcomes = results["test_outcomes"]["PER"]
    assert len(outcomes) == 8 and all(errors >= 0 and length > 0 for errors, length in outcomes.values())
    assert results["test"] == pytest.approx(
        100.0 * sum(e for e, _ in outcomes.values()) / sum(n for _, n in outcomes.values())
    )


def test_asr_probe_scores_words_and_characters(mini_librispeech, gendistill_dir, tmp_path):
    results = run_recipe(
        "LibriSpeech/ASR/probe",
        "asr_probe_tiny.yaml",
        tmp_path,
        upstream_source=str(gendistill_dir),
        data_folder=str(mini_librispeech),
        number_of_epochs=1,
        learning_rates=[0.01],
    )
    assert results["metric"] == "WER" and set(results["test_metrics"]) == {"WER", "CER"}
    assert set(results["test_outcomes"]) == {"WER", "CER"} and len(results["test_outcomes"]["CER"]) == 8
    assert results["chosen_lr"] == 0.01
