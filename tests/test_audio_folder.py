"""Distillation from any folder or CSV of unlabeled audio: manifests, every bad file named in one pass, a real run.

The folder mixes FSDD's 8 kHz recordings (English digits), Spanish sentences
synthesised by espeak-ng at 22.05 kHz (mono WAV, stereo OGG, and one long FLAC
cut into stretches) and broken files of every kind the check knows.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_gendistill.data.audio import BadAudioError, check_manifest
from speechbrain_gendistill.data.audio_folder import AudioListError, audio_folder_manifests, prepare_audio_folder
from speechbrain_gendistill.data.espeak import ESPEAK_SAMPLE_RATE, EspeakSynthesizer, SpeakerVoice
from speechbrain_gendistill.data.pipelines import AudioCrop, load_manifest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "AudioFolder" / "distill"
FSDD = ROOT / "data" / "fsdd" / "recordings"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SENTENCES = (
    "el perro come pan en la casa de mi abuela.",
    "mañana vamos a la playa con nuestros amigos.",
    "la niña lee un libro bajo el árbol grande.",
    "mi hermano trabaja en una tienda de flores.",
    "hace mucho calor en el verano de esta ciudad.",
)
# Relative path -> the reason the check gives (its label, then the start of the detail).
BAD = {
    "broken/empty.wav": "empty file",
    "broken/random.wav": "not readable as audio",
    "broken/truncated.flac": "truncated or corrupt (decoding failed after",
    "broken/cut.mp3": "truncated or corrupt (the header announces",
    "broken/nan.wav": "NaN or infinite samples",
    "broken/short.wav": "too short (200 samples at 16000 Hz, fewer than 400)",
}
GOOD = [f"fsdd/{name}" for name in ("0_jackson_0.flac", "3_nicolas_1.flac", "5_theo_2.flac", "7_yweweler_3.flac")] + [
    "es/mono_0.wav",
    "es/mono_1.wav",
    "es/stereo_0.ogg",
    "es/stereo_1.ogg",
    "es/long.flac",
]


def spanish(index: int) -> np.ndarray:
    voice = SpeakerVoice("es", "f2", pitch=50, pitch_range=50, rate=160, word_gap=0, peak_db=-3.0, snr_db=40.0)
    with EspeakSynthesizer() as synthesizer:
        return synthesizer.synthesize(SENTENCES[index % len(SENTENCES)], voice, seed=index)


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audio") / "my_audio"
    for name in ("fsdd", "es", "broken"):
        (folder / name).mkdir(parents=True)
    for relative in GOOD[:4]:
        shutil.copy(FSDD / Path(relative).name, folder / relative)
    for index in range(2):
        sf.write(folder / f"es/mono_{index}.wav", spanish(index), ESPEAK_SAMPLE_RATE)
        speech = spanish(index + 2)
        sf.write(folder / f"es/stereo_{index}.ogg", np.stack([speech, 0.5 * speech], axis=1), ESPEAK_SAMPLE_RATE)
    # About 17 s: cut into three stretches of at most 8 s.
    sf.write(folder / "es/long.flac", np.concatenate([spanish(index) for index in range(7)]), ESPEAK_SAMPLE_RATE)
    (folder / "es/README.txt").write_text("not audio, not listed\n")

    (folder / "broken/empty.wav").write_bytes(b"")
    (folder / "broken/random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    whole = (FSDD / "1_theo_0.flac").read_bytes()
    (folder / "broken/truncated.flac").write_bytes(whole[: len(whole) // 2])
    sf.write(folder / "whole.mp3", spanish(4), ESPEAK_SAMPLE_RATE, subtype="MPEG_LAYER_III")
    (folder / "broken/cut.mp3").write_bytes((folder / "whole.mp3").read_bytes()[:3000])
    (folder / "whole.mp3").unlink()
    with_nan = spanish(0)
    with_nan[1000] = np.nan
    sf.write(folder / "broken/nan.wav", with_nan, ESPEAK_SAMPLE_RATE, subtype="FLOAT")
    sf.write(folder / "broken/short.wav", np.zeros(100, dtype=np.float32), 8000)
    return folder


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def listed_reasons(error: BadAudioError) -> dict[str, str]:
    """ID -> reason, from the lines of the error that list the bad files."""
    found = {}
    for line in str(error).splitlines()[1:]:
        match = re.match(r"  (\S+) \((.+?)\): (.*)$", line)
        if match:
            found[match.group(1)] = match.group(3)
    return found


def test_manifests_of_a_mixed_folder(audio_folder: Path, tmp_path: Path) -> None:
    paths = prepare_audio_folder(audio_folder, tmp_path, dev_fraction=0.2, max_file_seconds=8.0, num_workers=2)
    train, dev = rows(paths["train"]), rows(paths["dev"])
    assert list(train[0]) == ["ID", "duration", "wav", "start", "stop"]
    files = {row["ID"].split("#")[0] for row in train + dev}
    assert files == set(GOOD) | set(BAD)  # README.txt is not audio
    # The dev set: 2 of the 9 good files, whole (a file's stretches never straddle the split).
    dev_files = {row["ID"].split("#")[0] for row in dev}
    assert len(dev_files) == 2 and dev_files <= set(GOOD)
    assert not dev_files & {row["ID"].split("#")[0] for row in train}
    # The long file: three contiguous stretches covering it, each under 8 s.
    long_rows = [row for row in train + dev if row["ID"].startswith("es/long.flac#")]
    info = sf.info(str(audio_folder / "es/long.flac"))
    frames = info.frames
    assert [row["ID"] for row in long_rows] == [f"es/long.flac#{index}" for index in range(3)]
    # start and stop in seconds, exact to the frame
    bounds = [
        (round(float(row["start"]) * info.samplerate), round(float(row["stop"]) * info.samplerate)) for row in long_rows
    ]
    assert (
        bounds[0][0] == 0
        and bounds[-1][1] == frames
        and all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    )
    assert all(5.0 < float(row["duration"]) <= 8.0 for row in long_rows)

    # Any rate and channel count reads as 16 kHz mono, a stretch as its own length.
    dataset = load_manifest(paths["train"], audio_folder, AudioCrop(max_duration=0, random_crop=False))
    by_id = {row["ID"]: row for row in train}
    for index, utterance_id in enumerate(dataset.data_ids):
        if utterance_id.split("#")[0] in BAD:
            continue
        signal = dataset[index]["sig"]
        assert signal.ndim == 1 and torch.isfinite(signal).all()
        assert abs(signal.shape[0] - float(by_id[utterance_id]["duration"]) * 16000) <= 1, utterance_id
    # A training crop is drawn within its row.
    crop = AudioCrop(max_duration=1.0, random_crop=True, seed=0)
    row = long_rows[1]
    stretch = crop(row["wav"], row["ID"], row["start"], row["stop"])
    whole = AudioCrop(max_duration=0, random_crop=False)(row["wav"], row["ID"], row["start"], row["stop"])
    assert stretch.shape[0] == 16000
    assert any(torch.equal(stretch, whole[start : start + 16000]) for start in range(whole.shape[0] - 15999))

    # Deterministic: the same folder elsewhere gives the same split.
    again = prepare_audio_folder(audio_folder, tmp_path / "again", dev_fraction=0.2, max_file_seconds=8.0)
    assert again["dev"].read_text() == paths["dev"].read_text()


def test_every_bad_file_is_named_in_one_pass(audio_folder: Path, tmp_path: Path) -> None:
    keys = {
        "data_folder": audio_folder,
        "save_folder": tmp_path,
        "dev_fraction": 0.2,
        "max_file_seconds": 8.0,
        "skip_prep": False,
        "prep_workers": 2,
        "skip_bad_audio": False,
        "train_csv": tmp_path / "train.csv",
        "valid_csv": tmp_path / "dev.csv",
    }
    with pytest.raises(BadAudioError) as error:
        audio_folder_manifests(keys)
    reasons = listed_reasons(error.value)
    assert sorted(reasons) == sorted(BAD)
    for relative, reason in BAD.items():
        assert reasons[relative].startswith(reason), (relative, reasons[relative])
    assert (
        str(error.value)
        .splitlines()[0]
        .endswith(f"{len(BAD)} of {len(rows(tmp_path / 'train.csv'))} audio files cannot be used:")
    )

    # The same files listed by a CSV, with one path that does not exist: named with the others.
    listing = tmp_path / "list.csv"
    paths = [*BAD, *GOOD, "nowhere/missing.flac"]
    listing.write_text("ID,wav\n" + "".join(f"clip{index},{audio_folder / path}\n" for index, path in enumerate(paths)))
    keys.update(data_folder=listing, save_folder=tmp_path / "from_csv", train_csv=tmp_path / "from_csv" / "train.csv")
    keys.update(valid_csv=tmp_path / "from_csv" / "dev.csv")
    with pytest.raises(BadAudioError) as error:
        audio_folder_manifests(keys)
    reasons = listed_reasons(error.value)
    assert sorted(reasons) == sorted(f"clip{index}" for index in [*range(len(BAD)), len(paths) - 1])
    assert reasons[f"clip{len(paths) - 1}"] == "file not found"

    # A CSV without the column of paths, or with rows lacking one, is refused before anything is decoded.
    broken = tmp_path / "broken.csv"
    broken.write_text("path\n/a.wav\n")
    with pytest.raises(AudioListError, match=r"no column 'wav'"):
        prepare_audio_folder(broken, tmp_path / "x")
    broken.write_text("ID,wav\na,\nb,/b.wav\nb,/c.wav\n")
    with pytest.raises(AudioListError) as error:
        prepare_audio_folder(broken, tmp_path / "x")
    assert error.value.problems == [
        "line 2: no path in the column 'wav'",
        "line 4: the ID 'b' is listed more than once",
    ]


def test_skip_bad_audio_counts_the_skipped_files_by_reason(
    audio_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = prepare_audio_folder(audio_folder, tmp_path, dev_fraction=0.2, max_file_seconds=8.0, num_workers=2)
    caplog.clear()  # preparation's records (captured or not, by the level earlier tests left) are not the check's
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.data.audio"):
        checked = check_manifest(paths["train"], skip_bad_audio=True)
    kept = set(GOOD) - {row["ID"].split("#")[0] for row in rows(paths["dev"])}
    assert {row["ID"].split("#")[0] for row in rows(checked)} == kept
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if message.startswith("decoding")]  # preparation decoded them
    assert sum(message.startswith("skipping ") for message in messages) == len(BAD)
    assert [message for message in messages if message.startswith("  ")] == [
        "  NaN or infinite samples: 1 file(s)",
        "  empty file: 1 file(s)",
        "  not readable as audio: 1 file(s)",
        "  too short: 1 file(s)",
        "  truncated or corrupt: 2 file(s)",
    ]
    conversions = [message for message in messages if "converted to 16000 Hz mono" in message]
    expected = {
        "2 channels": sum(name.startswith("es/stereo") for name in kept),
        "sample rate 8000 Hz": sum(name.startswith("fsdd/") for name in kept),
        f"sample rate {ESPEAK_SAMPLE_RATE} Hz": sum(name.startswith("es/") for name in kept),
    }
    assert sorted(message.split(" (e.g.")[0] for message in conversions) == sorted(
        f"{count} file(s) with {what}" for what, count in expected.items() if count
    )


def test_manifests_are_reused_and_rebuilt_when_a_file_changes(
    audio_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(shutil.copytree(audio_folder / "es", tmp_path / "es"))
    save = tmp_path / "save"
    paths = prepare_audio_folder(folder, save, dev_fraction=0.2, max_file_seconds=8.0, num_workers=1)
    stamps = {path.name: path.stat().st_mtime_ns for path in save.iterdir()}
    with caplog.at_level(logging.INFO):
        prepare_audio_folder(folder, save, dev_fraction=0.2, max_file_seconds=8.0, num_workers=1)
    assert "up to date" in caplog.text
    assert {path.name: path.stat().st_mtime_ns for path in save.iterdir()} == stamps

    # A file rewritten (shorter): prepared again, decoding that file only.
    samples, rate = sf.read(folder / "mono_0.wav")
    sf.write(folder / "mono_0.wav", samples[: rate // 2], rate)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        prepare_audio_folder(folder, save, dev_fraction=0.2, max_file_seconds=8.0, num_workers=1)
    assert "up to date" not in caplog.text and "decoding 1 audio files (4 known" in caplog.text
    listed = {row["ID"]: float(row["duration"]) for name in paths for row in rows(paths[name])}
    assert listed["mono_0.wav"] == pytest.approx(0.5)

    # A file added, then one removed: prepared again each time.
    shutil.copy(FSDD / "2_theo_5.flac", folder / "digits.flac")
    prepare_audio_folder(folder, save, dev_fraction=0.2, max_file_seconds=8.0, num_workers=1)
    assert "digits.flac" in {row["ID"] for name in paths for row in rows(paths[name])}
    (folder / "stereo_1.ogg").unlink()
    prepare_audio_folder(folder, save, dev_fraction=0.2, max_file_seconds=8.0, num_workers=1)
    assert "stereo_1.ogg" not in {row["ID"] for name in paths for row in rows(paths[name])}


def recipe_command(audio_folder: Path, teacher: Path, output: Path, *extra: str) -> list[str]:
    args = [
        "hparams/distill_tiny.yaml",
        f"--data_folder={audio_folder}",
        f"--teacher_source={teacher}",
        "--target_layers=[1,2,4]",
        f"--output_folder={output}",
        "--noprogressbar",
        *extra,
    ]
    return [sys.executable, "train.py", *args]


def run_recipe(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=RECIPE, env=ENV, capture_output=True, text=True, timeout=600)


def test_distillation_on_the_folder_stops_before_training_then_skips_and_resumes(
    audio_folder: Path, wavlm_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    # Bad files: one error naming each, before any training.
    failed = run_recipe(recipe_command(audio_folder, wavlm_dir, output))
    assert failed.returncode != 0
    message = failed.stdout + failed.stderr
    assert f"{len(BAD)} of " in message and all(str(audio_folder / relative) in message for relative in BAD)
    assert not list((output / "save").glob("CKPT+*"))

    # Without them: killed (SIGKILL) just after its first checkpoint, in the middle of epoch 1, then run again.
    command = recipe_command(
        audio_folder, wavlm_dir, output, "--skip_bad_audio=True", "--number_of_epochs=3", "--ckpt_interval_steps=1"
    )
    process = subprocess.Popen(command, cwd=RECIPE, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((output / "save").glob("CKPT+*/INTACT.json")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = run_recipe(command)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    text = resumed.stdout + resumed.stderr
    assert "audio manifests in" in text and "are up to date" in text and "Loading a checkpoint" in text
    assert f"skipped {len(BAD)} of " in text

    # Each epoch trained and logged once, with finite figures; the student exported with its data on the card.
    log = (output / "train_log.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in log] == ["epoch: 1", "epoch: 2", "epoch: 3"]
    losses = [float(value) for value in re.findall(r"valid loss: ([0-9.e+-]+)", "\n".join(log))]
    assert len(losses) == 3 and all(np.isfinite(losses))
    card = (output / "student" / "README.md").read_text()
    assert str(audio_folder) in card and "20% of the files" in card
