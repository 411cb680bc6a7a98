"""The probes' data preparations: FSDD, Speech Commands, speaker folders, VoxCeleb1, phoneme transcripts."""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speechbrain_gendistill.data.fsdd import FSDDLayoutError, prepare_fsdd
from speechbrain_gendistill.data.phonemes import LexiconPhonemizer, phoneme_manifests
from speechbrain_gendistill.data.speakers import prepare_speakers
from speechbrain_gendistill.data.speech_commands import CLASSES, WORDS, prepare_speech_commands
from speechbrain_gendistill.data.voxceleb import prepare_voxceleb_sid

ROOT = Path(__file__).resolve().parents[1]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def tone(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate)), rate)


def test_fsdd_splits_of_the_repository_data(tmp_path):
    recordings = ROOT / "data" / "fsdd" / "recordings"
    own = prepare_fsdd(recordings, tmp_path / "own")
    tables = {split: rows(path) for split, path in own.items()}
    assert {split: len(table) for split, table in tables.items()} == {"train": 1600, "dev": 200, "test": 200}
    assert {int(row["ID"].rsplit("_", 1)[1]) for row in tables["test"]} == set(range(5))
    assert {int(row["ID"].rsplit("_", 1)[1]) for row in tables["dev"]} == set(range(5, 10))
    assert Counter(row["label"] for row in tables["train"]) == {str(digit): 160 for digit in range(10)}
    held_out = {split: rows(path) for split, path in prepare_fsdd(recordings, tmp_path / "theo", ["theo"]).items()}
    assert {row["spk_id"] for row in held_out["test"]} == {"theo"} and len(held_out["test"]) == 500
    assert "theo" not in {row["spk_id"] for row in held_out["train"] + held_out["dev"]}
    assert (len(held_out["train"]), len(held_out["dev"])) == (1350, 150)


def test_fsdd_names_every_bad_file_once_and_reuses_its_manifests(tmp_path):
    folder = tmp_path / "fsdd"
    for take in range(12):
        tone(folder / f"4_ann_{take}.wav", 0.2, rate=8000)
    (folder / "README.md").write_text("not audio: ignored")
    paths = prepare_fsdd(folder, tmp_path / "csv")
    written = paths["train"].stat().st_mtime_ns
    assert prepare_fsdd(folder, tmp_path / "csv")["train"].stat().st_mtime_ns == written  # reused
    tone(folder / "four_ann_1.wav", 0.2)
    (folder / "5_ann_3.wav").write_bytes(b"not a wave file")
    with pytest.raises(FSDDLayoutError) as error:
        prepare_fsdd(folder, tmp_path / "csv", test_speakers=["bob"])
    message = str(error.value)
    assert "3 problem(s)" in message and "four_ann_1.wav: not named" in message and "5_ann_3.wav" in message
    assert "test_speakers ['bob'] have no recording here" in message


@pytest.fixture
def speech_commands(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny Speech Commands v0.01 layout: each word (and one other) thrice, two noise files, a test set."""
    data, test = tmp_path / "speech_commands_v0.01", tmp_path / "speech_commands_test_set_v0.01"
    validation, testing = [], []
    for index, word in enumerate([*WORDS, "marvin"]):
        for take, listing in enumerate((None, validation, testing)):
            relative = f"{word}/{index:04x}abcd_nohash_{take}.wav"
            tone(data / relative, 0.3, seed=index)
            if listing is not None:
                listing.append(relative)
    (data / "validation_list.txt").write_text("\n".join(validation) + "\n")
    (data / "testing_list.txt").write_text("\n".join(testing) + "\n")
    tone(data / "_background_noise_" / "white_noise.wav", 2.5)
    tone(data / "_background_noise_" / "pink_noise.wav", 1.2)
    for label in CLASSES:
        tone(test / label / f"{label}_test.wav", 0.3)
    return data, test


def test_speech_commands_has_superbs_classes_and_splits(speech_commands, tmp_path):
    data, test = speech_commands
    paths = prepare_speech_commands(data, test, tmp_path / "csv")
    tables = {split: rows(path) for split, path in paths.items()}
    for table in tables.values():
        assert {row["label"] for row in table} == set(CLASSES)
    train_files = {Path(row["wav"]).relative_to(data).as_posix() for row in tables["train"] if not row["start"]}
    listed = set((data / "testing_list.txt").read_text().split()) | set(
        (data / "validation_list.txt").read_text().split()
    )
    assert not train_files & listed and len(train_files) == 11
    assert {row["label"] for row in tables["train"] if "marvin" in row["wav"]} == {"_unknown_"}
    silence = [
        (row["ID"], row["start"], row["stop"])
        for split in ("train", "dev")
        for row in tables[split]
        if row["label"] == "_silence_"
    ]
    assert sorted(silence) == sorted(
        [
            ("_silence_-white_noise-0", "0.0", "1.0"),
            ("_silence_-white_noise-1", "1.0", "2.0"),
            ("_silence_-pink_noise-0", "0.0", "1.0"),
        ]
    )
    assert {row["ID"] for row in tables["dev"] if row["label"] == "_silence_"} == {
        "_silence_-white_noise-0",
        "_silence_-pink_noise-0",
    }
    assert len(tables["test"]) == 12 and all(Path(row["wav"]).is_relative_to(test) for row in tables["test"])


def test_speech_commands_lists_every_missing_file_in_one_error(speech_commands, tmp_path):
    data, test = speech_commands
    os.remove(data / "yes" / "0000abcd_nohash_1.wav")  # listed for validation
    os.remove(data / "no" / "0001abcd_nohash_2.wav")  # listed for testing
    shutil.rmtree(test / "_silence_")
    with pytest.raises(ValueError) as error:
        prepare_speech_commands(data, test, tmp_path / "csv")
    message = str(error.value)
    assert "validation_list.txt: yes/0000abcd_nohash_1.wav does not exist" in message
    assert "testing_list.txt: no/0001abcd_nohash_2.wav does not exist" in message


def test_speakers_of_the_repository_miniature_are_split_in_time(tmp_path):
    tables = {
        split: rows(path) for split, path in prepare_speakers(ROOT / "data" / "librispeech_sid", tmp_path).items()
    }
    assert {split: len(table) for split, table in tables.items()} == {"train": 60, "dev": 60, "test": 60}
    assert {row["label"] for row in tables["train"]} == {row["label"] for row in tables["test"]}
    first = {split: next(row for row in table if row["label"] == "27") for split, table in tables.items()}
    assert [(first[split]["start"], first[split]["stop"]) for split in ("train", "dev", "test")] == [
        ("0.0", "6.96"),
        ("6.96", "9.28"),
        ("9.28", "11.6"),
    ]
    assert len({first[split]["wav"] for split in first}) == 1


def test_speakers_of_a_flat_folder_with_several_utterances_are_split_by_utterance(tmp_path):
    for speaker in ("11", "12"):
        for utterance in range(10):
            tone(tmp_path / "flat" / f"{speaker}-100-{utterance:04d}.flac", 0.2)
    tone(tmp_path / "flat" / "13-100-0000.flac", 0.02)  # one utterance too short to split in time
    with pytest.raises(ValueError, match="13-100-0000.flac: its train region .* shorter than one frame"):
        prepare_speakers(tmp_path / "flat", tmp_path / "csv")
    os.remove(tmp_path / "flat" / "13-100-0000.flac")
    tables = {split: rows(path) for split, path in prepare_speakers(tmp_path / "flat", tmp_path / "csv").items()}
    assert [row["ID"] for row in tables["test"]] == ["11-100-0009", "12-100-0009"]
    assert [row["ID"] for row in tables["dev"]] == ["11-100-0008", "12-100-0008"]
    assert len(tables["train"]) == 16 and not any(row["start"] for table in tables.values() for row in table)


def test_voxceleb_follows_iden_split_and_names_every_missing_file(tmp_path):
    lines = []
    for speaker in ("id10001", "id10002"):
        for number, split in enumerate("1123", start=1):
            relative = f"{speaker}/video{number % 2}/{number:05d}.wav"
            tone(tmp_path / "vox" / "wav" / relative, 0.5)
            lines.append(f"{split} {relative}")
    (tmp_path / "vox" / "iden_split.txt").write_text("\n".join(lines) + "\n")
    tables = {split: rows(path) for split, path in prepare_voxceleb_sid(tmp_path / "vox", tmp_path / "csv").items()}
    assert {split: len(table) for split, table in tables.items()} == {"train": 4, "dev": 2, "test": 2}
    assert tables["test"][0]["ID"] == "id10001-video0-00004" and tables["test"][0]["label"] == "id10001"
    (tmp_path / "vox" / "iden_split.txt").write_text("\n".join([*lines, "4 id10003/v/1.wav", "1 id10003/v/1.wav"]))
    with pytest.raises(ValueError) as error:
        prepare_voxceleb_sid(tmp_path / "vox", tmp_path / "csv")
    assert "2 problem(s)" in str(error.value) and "expected '<1|2|3>" in str(error.value)
    assert "id10003/v/1.wav: not found" in str(error.value)


def test_phonemes_from_a_lexicon_strip_stress_and_list_unknown_words(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("ONE\tW AH1 N\nTWO\tT UW1\nTWO\tT UW0\nTHREE  TH R IY1\n")
    assert LexiconPhonemizer(lexicon)("one two") == ["W", "AH", "N", "T", "UW"]
    (tmp_path / "train.csv").write_text("ID,wrd\na,ONE TWO\nb,ONE FOUR\nc,FIVE FOUR\n")
    (tmp_path / "test.csv").write_text("ID,wrd\nd,THREE\n")
    manifests = {"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"}
    with pytest.raises(ValueError) as error:
        phoneme_manifests(manifests, tmp_path / "out", "lexicon", lexicon)
    assert "2 words are not in the lexicon" in str(error.value)
    assert "FOUR: 2 utterance(s), e.g. train:b, train:c" in str(error.value) and "FIVE: 1" in str(error.value)
    paths = phoneme_manifests(manifests, tmp_path / "out", "lexicon", lexicon, drop_unknown_words=True)
    assert [(row["ID"], row["phn"]) for row in rows(paths["train"])] == [("a", "W AH N T UW")]
    assert [row["phn"] for row in rows(paths["test"])] == ["TH R IY"]


def test_phonemes_from_espeak_for_a_librispeech_manifest(mini_librispeech_manifests, tmp_path):
    paths = phoneme_manifests({"train": mini_librispeech_manifests["train"]}, tmp_path, "espeak")
    table = rows(paths["train"])
    assert len(table) == len(rows(mini_librispeech_manifests["train"])) and all(row["phn"] for row in table)
    assert set(table[0]) == {"ID", "duration", "wav", "spk_id", "wrd", "phn"}
    tokens = {token for row in table for token in row["phn"].split()}
    assert {"@", "n", "t"} <= tokens and not any(mark in token for token in tokens for mark in "',%=;_")
