"""LibriSpeech preparation: the manifests, skipping finished work, and every layout fault reported at once."""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

import pytest
import soundfile
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import run_on_main

from speechbrain_gendistill.data.audio import BadAudioError
from speechbrain_gendistill.data.librispeech import LibriSpeechLayoutError, librispeech_manifests, prepare_librispeech

SPLITS = dict(train_splits=["train-synth"], dev_splits=["dev-synth"], test_splits=["test-synth"])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def transcript_lines(folder: Path) -> dict[str, str]:
    return {
        line.split(" ", 1)[0]: line.split(" ", 1)[1]
        for transcript in folder.glob("*/*/*.trans.txt")
        for line in transcript.read_text(encoding="utf-8").splitlines()
    }


def recipe_keys(data_folder: Path, save_folder: Path, skip_bad_audio: bool = False) -> dict:
    """The keys a recipe's YAML gives :func:`librispeech_manifests`."""
    return {
        "data_folder": data_folder,
        "save_folder": save_folder,
        "train_splits": ["train-synth"],
        "dev_splits": ["dev-synth"],
        "skip_prep": False,
        "prep_workers": 2,
        "skip_bad_audio": skip_bad_audio,
        "train_csv": save_folder / "train.csv",
        "valid_csv": save_folder / "dev.csv",
    }


@pytest.fixture
def corpus_copy(mini_librispeech: Path, tmp_path: Path) -> Path:
    """A copy of the session corpus that a test may damage."""
    return Path(shutil.copytree(mini_librispeech, tmp_path / "LibriSpeech"))


def test_manifests_list_every_utterance(mini_librispeech: Path, mini_librispeech_manifests: dict[str, Path]) -> None:
    assert sorted(mini_librispeech_manifests) == ["dev", "test-synth", "train"]
    for name, split, count in (("train", "train-synth", 24), ("dev", "dev-synth", 6), ("test-synth", "test-synth", 8)):
        path = mini_librispeech_manifests[name]
        assert path.name == f"{name}.csv"
        assert path.read_text().splitlines()[0] == "ID,duration,wav,spk_id,wrd"
        rows = read_rows(path)
        assert len(rows) == count
        assert {row["ID"]: row["wrd"] for row in rows} == transcript_lines(mini_librispeech / split)
        for row in rows:
            wav = Path(row["wav"])
            assert wav.is_absolute() and wav == mini_librispeech / split / row["spk_id"] / wav.parent.name / wav.name
            assert row["ID"].startswith(row["spk_id"] + "-") and wav.stem == row["ID"]
            info = soundfile.info(str(wav))
            assert float(row["duration"]) == pytest.approx(info.frames / info.samplerate, abs=1e-9)


def test_speechbrain_reads_the_manifest(mini_librispeech_manifests: dict[str, Path]) -> None:
    data = DynamicItemDataset.from_csv(str(mini_librispeech_manifests["dev"]))
    data.set_output_keys(["id", "duration", "wrd"])
    item = data[0]
    assert isinstance(item["duration"], float) and item["duration"] > 0.5 and item["wrd"].isupper()


def test_train_merges_its_splits(mini_librispeech: Path, tmp_path: Path) -> None:
    paths = prepare_librispeech(mini_librispeech, tmp_path, train_splits=["train-synth", "dev-synth"])
    assert sorted(paths) == ["train"]
    ids = [row["ID"] for row in read_rows(paths["train"])]
    expected = list(transcript_lines(mini_librispeech / "train-synth")) + list(
        transcript_lines(mini_librispeech / "dev-synth")
    )
    assert sorted(ids) == sorted(expected) and len(ids) == 30


def test_finished_preparation_is_skipped_and_redone_when_needed(
    corpus_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save = tmp_path / "save"
    paths = run_on_main(prepare_librispeech, kwargs=dict(data_folder=corpus_copy, save_folder=save, **SPLITS))
    assert sorted(paths) == ["dev", "test-synth", "train"] and all(path.is_file() for path in paths.values())
    stamps = {path: path.stat().st_mtime_ns for path in save.iterdir()}
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.data.librispeech"):
        prepare_librispeech(corpus_copy, save, **SPLITS)
    assert "up to date" in caplog.text
    assert {path: path.stat().st_mtime_ns for path in save.iterdir()} == stamps

    # Other options: the manifests are written again.
    prepare_librispeech(corpus_copy, save, train_splits=["train-synth"], dev_splits=["dev-synth"])
    assert save.joinpath("train.csv").stat().st_mtime_ns != stamps[save / "train.csv"]

    # A transcript rewritten since (e.g. a rebuilt corpus): prepared again, with the new text.
    transcript = next((corpus_copy / "dev-synth").glob("*/*/*.trans.txt"))
    lines = transcript.read_text().splitlines()
    first_id = lines[0].split(" ")[0]
    transcript.write_text("\n".join([f"{first_id} A NEW TEXT", *lines[1:]]) + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.data.librispeech"):
        prepare_librispeech(corpus_copy, save, train_splits=["train-synth"], dev_splits=["dev-synth"])
    assert "up to date" not in caplog.text
    assert {row["ID"]: row["wrd"] for row in read_rows(save / "dev.csv")}[first_id] == "A NEW TEXT"


def test_skip_prep_only_checks_the_manifests(mini_librispeech_manifests: dict[str, Path], tmp_path: Path) -> None:
    save = mini_librispeech_manifests["train"].parent
    assert prepare_librispeech(tmp_path / "nowhere", save, skip_prep=True, **SPLITS) == mini_librispeech_manifests
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train.csv")):
        prepare_librispeech(tmp_path / "nowhere", tmp_path, skip_prep=True, **SPLITS)


def test_missing_split_folder(mini_librispeech: Path, tmp_path: Path) -> None:
    with pytest.raises(
        LibriSpeechLayoutError, match=re.escape(f"split folder {mini_librispeech / 'train-other'} does not exist")
    ):
        prepare_librispeech(mini_librispeech, tmp_path, train_splits=["train-synth", "train-other"])
    assert not (tmp_path / "train.csv").exists()


def test_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(LibriSpeechLayoutError, match=re.escape(f"data folder {tmp_path / 'nowhere'} does not exist")):
        prepare_librispeech(tmp_path / "nowhere", tmp_path, train_splits=["train-clean-100"])


def test_chapter_without_transcript(corpus_copy: Path, tmp_path: Path) -> None:
    transcript = next((corpus_copy / "train-synth").glob("*/*/*.trans.txt"))
    transcript.unlink()
    with pytest.raises(
        LibriSpeechLayoutError, match=re.escape(f"chapter folder {transcript.parent} has no transcript")
    ):
        prepare_librispeech(corpus_copy, tmp_path, **SPLITS)


def test_transcript_line_without_audio(corpus_copy: Path, tmp_path: Path) -> None:
    audio = next((corpus_copy / "dev-synth").glob("*/*/*.flac"))
    audio.unlink()
    # Listed in the manifest at its name; the check before training names it.
    paths = prepare_librispeech(corpus_copy, tmp_path, **SPLITS)
    assert {row["ID"]: row["wav"] for row in read_rows(paths["dev"])}[audio.stem] == str(audio)
    with pytest.raises(BadAudioError, match=re.escape(f"{audio.stem} ({audio}): file not found")):
        librispeech_manifests(recipe_keys(corpus_copy, tmp_path))


def test_empty_transcript(corpus_copy: Path, tmp_path: Path) -> None:
    transcript = next((corpus_copy / "dev-synth").glob("*/*/*.trans.txt"))
    lines = transcript.read_text().splitlines()
    utterance_id = lines[2].split(" ")[0]
    transcript.write_text("\n".join([*lines[:2], utterance_id + "   ", *lines[3:]]) + "\n")
    with pytest.raises(LibriSpeechLayoutError, match=re.escape(f"empty transcript for {utterance_id}")):
        prepare_librispeech(corpus_copy, tmp_path, **SPLITS)


def test_unreadable_audio(corpus_copy: Path, tmp_path: Path) -> None:
    audio = next((corpus_copy / "train-synth").glob("*/*/*.flac"))
    audio.write_bytes(b"not a flac file")
    with pytest.raises(BadAudioError, match=re.escape(f"{audio.stem} ({audio}): not readable as audio")):
        librispeech_manifests(recipe_keys(corpus_copy, tmp_path))


def damage(corpus: Path) -> dict[str, Path]:
    """A missing, an empty and a truncated FLAC (whose header still reads) in the train split."""
    missing, empty, truncated = sorted((corpus / "train-synth").glob("*/*/*.flac"))[:3]
    missing.unlink()
    empty.write_bytes(b"")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    assert soundfile.info(str(truncated)).frames > 0
    return {"file not found": missing, "empty file": empty, "truncated or corrupt": truncated}


def test_missing_empty_and_truncated_audio_are_named_in_one_pass(
    corpus_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = damage(corpus_copy)
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.data.audio"):
        with pytest.raises(BadAudioError) as error:
            librispeech_manifests(recipe_keys(corpus_copy, tmp_path))
    lines = str(error.value).splitlines()
    assert lines[0] == f"{tmp_path / 'train.csv'}: 3 of 24 audio files cannot be used:"
    assert len(lines) == 5 and lines[4].startswith("Fix or remove them")
    for reason, path in bad.items():
        assert sum(line.startswith(f"  {path.stem} ({path}): {reason}") for line in lines[1:4]) == 1, reason
    # Preparation decoded every file once; the check reused it.
    decoding = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decoding ")]
    assert decoding == ["decoding 29 audio files (0 known from an earlier check, 1 not found)"]

    # skip_bad_audio: the run goes on without them, with the count per reason.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.data.audio"):
        manifests = librispeech_manifests(recipe_keys(corpus_copy, tmp_path, skip_bad_audio=True))
    assert manifests["train"] == tmp_path / "train.checked.csv" and manifests["valid"] == tmp_path / "dev.csv"
    assert len(read_rows(manifests["train"])) == 21
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("decoding ")]
    assert [m for m in messages if m.startswith("  ")] == [f"  {reason}: 1 file(s)" for reason in sorted(bad)]


def test_layout_faults_and_bad_audio_are_named_together(corpus_copy: Path, tmp_path: Path) -> None:
    bad = damage(corpus_copy)
    transcript = next((corpus_copy / "dev-synth").glob("*/*/*.trans.txt"))
    transcript.unlink()
    with pytest.raises(LibriSpeechLayoutError) as error:
        librispeech_manifests(recipe_keys(corpus_copy, tmp_path))
    assert len(error.value.problems) == 4
    assert f"chapter folder {transcript.parent} has no transcript" in error.value.problems[0]
    for reason, path in bad.items():
        assert any(problem.startswith(f"audio file {path}: {reason}") for problem in error.value.problems)
    assert not list(tmp_path.glob("*.csv"))


def test_a_changed_audio_file_is_prepared_again(corpus_copy: Path, tmp_path: Path) -> None:
    paths = prepare_librispeech(corpus_copy, tmp_path, **SPLITS)
    audio = Path(read_rows(paths["dev"])[0]["wav"])
    samples, rate = soundfile.read(str(audio))
    soundfile.write(str(audio), samples[: len(samples) // 2], rate)
    prepare_librispeech(corpus_copy, tmp_path, **SPLITS)
    assert float(read_rows(paths["dev"])[0]["duration"]) == pytest.approx(len(samples) // 2 / rate)


def test_every_problem_is_reported_at_once(corpus_copy: Path, tmp_path: Path) -> None:
    transcripts = sorted((corpus_copy / "train-synth").glob("*/*/*.trans.txt"))
    transcripts[0].unlink()
    transcripts[1].unlink()
    missing_audio = sorted((corpus_copy / "test-synth").glob("*/*/*.flac"))
    for audio in missing_audio[:3]:
        audio.unlink()
    with pytest.raises(LibriSpeechLayoutError) as error:
        prepare_librispeech(
            corpus_copy, tmp_path, ["train-synth"], ["dev-synth"], test_splits=["test-synth", "test-other"]
        )
    problems = error.value.problems
    assert len(problems) == 6
    message = str(error.value)
    assert message.startswith(f"6 problem(s) in the LibriSpeech folder {corpus_copy}")
    for path in [transcripts[0].parent, transcripts[1].parent, *missing_audio[:3], corpus_copy / "test-other"]:
        assert str(path) in message
    assert not list(tmp_path.glob("*.csv"))


def test_a_test_split_may_not_overwrite_a_merged_manifest(mini_librispeech: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overwrite the manifest train.csv"):
        prepare_librispeech(mini_librispeech, tmp_path, train_splits=["train-synth"], test_splits=["train"])
