"""The synthetic mini-LibriSpeech: layout, transcripts, audio format, speakers, determinism, reuse."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import MINI_LIBRISPEECH_SPLITS

from speechbrain_gendistill.data.espeak import VOICE_VARIANTS
from speechbrain_gendistill.demo.corpus import RECORD_NAME, plan_corpus, synthesize_corpus
from speechbrain_gendistill.demo.corpus.grammar import NUMBERS, SentenceGrammar, normalize_transcript
from speechbrain_gendistill.demo.corpus.synthesis import main


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def transcripts(folder: Path) -> dict[str, str]:
    lines = {}
    for transcript in folder.glob("*/*/*/*.trans.txt"):
        for line in transcript.read_text(encoding="utf-8").splitlines():
            utterance_id, text = line.split(" ", 1)
            lines[utterance_id] = text
    return lines


def test_layout_and_transcripts(mini_librispeech: Path) -> None:
    vocabulary = {word.upper() for word in SentenceGrammar.vocabulary()}
    for split, (num_speakers, per_speaker) in MINI_LIBRISPEECH_SPLITS.items():
        speakers = sorted((mini_librispeech / split).iterdir())
        assert len(speakers) == num_speakers
        for speaker in speakers:
            chapters = sorted(speaker.iterdir())
            assert chapters and all(chapter.name.isdigit() for chapter in chapters)
            ids = []
            for chapter in chapters:
                transcript = chapter / f"{speaker.name}-{chapter.name}.trans.txt"
                lines = transcript.read_text(encoding="utf-8").splitlines()
                assert {path.name for path in chapter.iterdir()} == {transcript.name} | {
                    line.split(" ")[0] + ".flac" for line in lines
                }
                for index, line in enumerate(lines):
                    utterance_id, text = line.split(" ", 1)
                    assert utterance_id == f"{speaker.name}-{chapter.name}-{index:04d}"
                    assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", text), text
                    assert set(text.split()) <= vocabulary
                    ids.append(utterance_id)
            assert len(ids) == per_speaker
    all_texts = list(transcripts(mini_librispeech).values())
    assert len(set(all_texts)) == len(all_texts) == sum(s * u for s, u in MINI_LIBRISPEECH_SPLITS.values())


def test_audio_is_16khz_mono_flac_speech(mini_librispeech: Path) -> None:
    files = sorted(mini_librispeech.glob("*/*/*/*.flac"))
    assert len(files) == 38
    for path in files:
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        audio, _ = soundfile.read(str(path))
        assert 0.5 < len(audio) / 16000 < 12
        assert 0.005 < np.sqrt(np.mean(audio**2)) and np.abs(audio).max() < 1.0


def test_speakers_and_voices_are_never_shared_between_splits(mini_librispeech: Path) -> None:
    record = json.loads((mini_librispeech / RECORD_NAME).read_text())
    speakers = {
        split: {path.name for path in (mini_librispeech / split).iterdir()} for split in MINI_LIBRISPEECH_SPLITS
    }
    assert not speakers["test-synth"] & (speakers["train-synth"] | speakers["dev-synth"])
    assert not speakers["dev-synth"] & speakers["train-synth"]
    for split, summary in record["splits"].items():
        assert set(summary["voices"]) == speakers[split]
        assert summary["utterances"] == MINI_LIBRISPEECH_SPLITS[split][0] * MINI_LIBRISPEECH_SPLITS[split][1]
    variants = [voice["variant"] for split in record["splits"].values() for voice in split["voices"].values()]
    assert len(set(variants)) == len(variants) == 6


def test_same_seed_same_bytes_other_seed_other_corpus(mini_librispeech: Path, tmp_path: Path) -> None:
    # One process instead of two: the bytes must not depend on which process synthesised what.
    again = synthesize_corpus(tmp_path / "again", seed=0, splits=MINI_LIBRISPEECH_SPLITS, num_workers=1)
    assert folder_bytes(again) == folder_bytes(mini_librispeech)
    other = synthesize_corpus(tmp_path / "other", seed=1, splits=MINI_LIBRISPEECH_SPLITS)
    assert set(transcripts(other).values()).isdisjoint(transcripts(mini_librispeech).values())
    record = json.loads((other / RECORD_NAME).read_text())
    assert record["options"]["seed"] == 1


def test_complete_corpus_is_reused(mini_librispeech: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = {path: path.stat().st_mtime_ns for path in mini_librispeech.rglob("*")}
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.demo.corpus.synthesis"):
        synthesize_corpus(mini_librispeech, seed=0, splits=MINI_LIBRISPEECH_SPLITS)
    assert "Reusing the synthetic corpus" in caplog.text
    assert {path: path.stat().st_mtime_ns for path in mini_librispeech.rglob("*")} == before


def test_changed_options_or_missing_files_rebuild(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = synthesize_corpus(tmp_path, splits={"a": (1, 2), "b": (1, 1)}, num_workers=1)
    first = folder_bytes(folder)
    next(folder.glob("a/*/*/*.flac")).unlink()
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.demo.corpus.synthesis"):
        synthesize_corpus(folder, splits={"a": (1, 2), "b": (1, 1)}, num_workers=1)
    assert "Rebuilding" in caplog.text
    assert folder_bytes(folder) == first
    synthesize_corpus(folder, splits={"a": (1, 3)}, num_workers=1)
    assert not (folder / "b").exists()
    assert len(list(folder.glob("a/*/*/*.flac"))) == 3


def test_invalid_splits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive ints"):
        plan_corpus(0, {"train": (2, 0)})
    with pytest.raises(ValueError, match="not a folder name"):
        plan_corpus(0, {"a/b": (1, 1)})
    with pytest.raises(ValueError, match="distinct voice variants"):
        plan_corpus(0, {"train": (len(VOICE_VARIANTS) + 1, 1)})


def test_chapters_split_long_speakers() -> None:
    plan = plan_corpus(3, {"train": (2, 30)})
    per_speaker: dict[int, list[int]] = {}
    for job in plan["train"]:
        per_speaker.setdefault(job.speaker, []).append(len(job.texts))
    assert sorted(per_speaker.values()) == [[10, 10, 10], [10, 10, 10]]
    assert len({job.chapter for job in plan["train"]}) == 6


def test_grammar_vocabulary_and_variety() -> None:
    grammar = SentenceGrammar(seed=5)
    sentences = [normalize_transcript(grammar.sentence()) for _ in range(2000)]
    words = {word for sentence in sentences for word in sentence.lower().split()}
    assert words == SentenceGrammar.vocabulary()  # every listed word is used, and no other
    assert len(set(sentences)) > 1900
    lengths = [len(sentence.split()) for sentence in sentences]
    assert 3 <= min(lengths) and 6 < np.mean(lengths) < 10


def test_number_sequences(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """text="numbers": three to six number words per utterance, every number used; another text rebuilds."""
    plan = plan_corpus(2, {"train": (2, 150)}, text="numbers")
    texts = [normalize_transcript(text).lower().split() for job in plan["train"] for text in job.texts]
    assert {word for words in texts for word in words} == set(NUMBERS)
    assert {len(words) for words in texts} == {3, 4, 5, 6}
    assert plan_corpus(2, {"train": (2, 150)})["train"][0].texts != plan["train"][0].texts
    with pytest.raises(ValueError, match="text='digits': expected one of \\['numbers', 'sentences'\\]"):
        plan_corpus(0, {"train": (1, 1)}, text="digits")

    folder = synthesize_corpus(tmp_path, splits={"a": (1, 2)}, text="numbers", num_workers=1)
    assert all(set(text.lower().split()) <= set(NUMBERS) for text in transcripts(folder).values())
    record = json.loads((folder / RECORD_NAME).read_text())
    assert record["options"]["text"] == "numbers" and record["vocabulary_size"] == len(NUMBERS)
    with caplog.at_level(logging.INFO, logger="speechbrain_gendistill.demo.corpus.synthesis"):
        synthesize_corpus(folder, splits={"a": (1, 2)}, num_workers=1)
    assert "Rebuilding" in caplog.text
    assert not any(set(text.lower().split()) <= set(NUMBERS) for text in transcripts(folder).values())


def test_command_line(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "speechbrain_gendistill.demo.corpus",
        "--folder",
        str(tmp_path),
        "--split",
        "x",
        "1",
        "2",
        "--text",
        "numbers",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "Synthetic corpus ready" in result.stderr
    assert len(list(tmp_path.glob("x/*/*/*.flac"))) == 2
    assert all(set(text.lower().split()) <= set(NUMBERS) for text in transcripts(tmp_path).values())
    with pytest.raises(SystemExit):
        main(["--folder", str(tmp_path), "--split", "x", "1", "two"])
