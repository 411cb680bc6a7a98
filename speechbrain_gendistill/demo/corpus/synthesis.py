"""A synthetic mini-LibriSpeech: espeak-ng voices reading sentences of the project's grammar.

Or, with ``text="numbers"``, reading sequences of number words: a closed
vocabulary on which word error rates mean something after minutes of training.

The corpus has LibriSpeech's layout, so the same preparation serves it and the
real corpus::

    <folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac
    <folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Every speaker is a distinct espeak-ng voice (an English accent, a voice variant,
pitch, pitch range, speaking rate, word gap, loudness and background noise
level); every speaker belongs to one split only, so test speakers are never
heard in training. Audio is synthesised at 22.05 kHz by libespeak-ng from the
``espeakng-loader`` package (no system install), resampled to 16 kHz and written
as 16-bit mono FLAC.

The build is deterministic: the same seed gives the same bytes, whatever the
number of worker processes. libespeak-ng keeps state from one utterance to the
next (random generators, filter memories), so each chapter is read by a fresh
synthesiser instance, in a fixed order.

Command line::

    python -m speechbrain_gendistill.demo.corpus --folder results/synth --seed 0
    python -m speechbrain_gendistill.demo.corpus --folder results/numbers --text numbers --split train 8 12
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.data.espeak import ESPEAK_SAMPLE_RATE, VOICE_VARIANTS, EspeakSynthesizer, SpeakerVoice
from speechbrain_gendistill.demo.corpus.grammar import NUMBERS, SentenceGrammar, normalize_transcript

logger = logging.getLogger(__name__)

# Split name -> (number of speakers, utterances per speaker): about 33 minutes of speech.
DEFAULT_SPLITS: dict[str, tuple[int, int]] = {
    "train-synth": (24, 22),
    "dev-synth": (4, 15),
    "test-synth": (4, 15),
}
# A speaker's utterances are spread over chapters of at most this many, as in LibriSpeech.
MAX_CHAPTER_UTTERANCES = 12
RECORD_NAME = "corpus.json"
RECORD_FORMAT = 1
# What the speakers read: text kind -> its vocabulary (lower case).
TEXT_VOCABULARIES = {"sentences": SentenceGrammar.vocabulary(), "numbers": set(NUMBERS)}


@dataclass(frozen=True)
class ChapterJob:
    """Everything one worker needs to write one chapter folder (``folder`` is relative to the corpus)."""

    folder: Path
    speaker: int
    chapter: int
    voice: SpeakerVoice
    texts: tuple[str, ...]
    seed: int


def _render(speech: np.ndarray, voice: SpeakerVoice, rng: np.random.Generator) -> np.ndarray:
    """22.05 kHz synthesiser output -> 16 kHz utterance with pauses, level and background noise."""
    speech = resample_poly(speech.astype(np.float64), SAMPLE_RATE // 50, ESPEAK_SAMPLE_RATE // 50)
    lead, tail = (int(rng.uniform(0.05, 0.3) * SAMPLE_RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    audio *= 10 ** (voice.peak_db / 20) / max(np.abs(audio).max(), 1e-6)
    speech_rms = math.sqrt(float(np.mean(audio**2)))
    audio += rng.standard_normal(len(audio)) * speech_rms * 10 ** (-voice.snr_db / 20)
    return audio.clip(-1.0, 1.0).astype(np.float32)


def _synthesize_chapter(root: Path, job: ChapterJob) -> float:
    """Writes one chapter's FLAC files and transcript under ``root``; returns its duration in seconds."""
    folder = root / job.folder
    folder.mkdir(parents=True, exist_ok=True)
    lines, seconds = [], 0.0
    with EspeakSynthesizer() as synthesizer:
        for index, text in enumerate(job.texts):
            utterance_id = f"{job.speaker}-{job.chapter}-{index:04d}"
            rng = np.random.default_rng([job.seed, job.chapter, index])
            rate = round(job.voice.rate * rng.uniform(0.92, 1.08))
            speech = synthesizer.synthesize(text, job.voice, rate, seed=int(rng.integers(2**31)))
            audio = _render(speech, job.voice, rng)
            soundfile.write(folder / f"{utterance_id}.flac", audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
            lines.append(f"{utterance_id} {normalize_transcript(text)}\n")
            seconds += len(audio) / SAMPLE_RATE
    (folder / f"{job.speaker}-{job.chapter}.trans.txt").write_text("".join(lines), encoding="utf-8")
    return seconds


def _check_splits(splits: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    checked = {}
    for name, sizes in splits.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"Split name {name!r} is not a folder name")
        if len(sizes) != 2 or any(not isinstance(n, int) or n < 1 for n in sizes):
            raise ValueError(f"Split {name!r}: expected (speakers, utterances per speaker), positive ints; got {sizes}")
        checked[name] = (sizes[0], sizes[1])
    if not checked:
        raise ValueError("No split to synthesise")
    total = sum(speakers for speakers, _ in checked.values())
    if total > len(VOICE_VARIANTS):
        raise ValueError(f"{total} speakers asked for, but only {len(VOICE_VARIANTS)} distinct voice variants exist")
    return checked


def _check_text(text: str) -> str:
    if text not in TEXT_VOCABULARIES:
        raise ValueError(f"text={text!r}: expected one of {sorted(TEXT_VOCABULARIES)}")
    return text


def plan_corpus(
    seed: int, splits: Mapping[str, tuple[int, int]], text: str = "sentences"
) -> dict[str, list[ChapterJob]]:
    """The chapters of each split, with their speakers, voices and texts (no audio yet).

    Every speaker gets its own voice variant, so no two speakers, and no two
    splits, share one. Transcripts are unique over the whole corpus.

    Example
    -------
    >>> plan = plan_corpus(0, {"train": (2, 3), "test": (1, 2)})
    >>> [(split, len(jobs), sum(len(job.texts) for job in jobs)) for split, jobs in plan.items()]
    [('train', 2, 6), ('test', 1, 2)]
    >>> plan_corpus(0, {"train": (1, 1)}, text="numbers")["train"][0].texts
    ('thirty three ten fifty twenty eleven.',)
    """
    splits = _check_splits(splits)
    grammar = SentenceGrammar(seed)
    draw_text = grammar.number_sequence if _check_text(text) == "numbers" else grammar.sentence
    rng = random.Random(seed)
    total = sum(speakers for speakers, _ in splits.values())
    variants = rng.sample(VOICE_VARIANTS, total)
    speaker_ids = rng.sample(range(100, 10000), total)
    seen: set[str] = set()

    def unique_text() -> str:
        while True:
            text = draw_text()
            if normalize_transcript(text) not in seen:
                seen.add(normalize_transcript(text))
                return text

    plan: dict[str, list[ChapterJob]] = {}
    speaker_index = 0
    for split, (num_speakers, per_speaker) in splits.items():
        plan[split] = []
        for _ in range(num_speakers):
            speaker = speaker_ids[speaker_index]
            voice = SpeakerVoice.draw(rng, variants[speaker_index])
            speaker_index += 1
            num_chapters = math.ceil(per_speaker / MAX_CHAPTER_UTTERANCES)
            chapters = sorted(rng.sample(range(10000, 400000), num_chapters))
            for position, chapter in enumerate(chapters):
                count = per_speaker // num_chapters + (position < per_speaker % num_chapters)
                plan[split].append(
                    ChapterJob(
                        folder=Path(split, str(speaker), str(chapter)),
                        speaker=speaker,
                        chapter=chapter,
                        voice=voice,
                        texts=tuple(unique_text() for _ in range(count)),
                        seed=seed,
                    )
                )
    return plan


def _is_complete(folder: Path, record: dict) -> bool:
    return all(
        len(list((folder / split).glob("*/*/*.flac"))) == summary["utterances"]
        for split, summary in record["splits"].items()
    )


def synthesize_corpus(
    folder: str | Path,
    *,
    seed: int = 0,
    splits: Mapping[str, tuple[int, int]] | None = None,
    text: str = "sentences",
    num_workers: int | None = None,
) -> Path:
    """Builds the synthetic corpus in LibriSpeech layout under ``folder`` (or reuses a complete one).

    Call it from one process only (in a DDP recipe, through ``run_on_main``).
    A record of the build, ``corpus.json`` (options, speakers and their voices,
    utterance counts and durations), is written last: a folder holding a record
    with the same options and all its files is reused; a build with other options
    or an unfinished one is replaced (only the split folders this module wrote).

    Arguments
    ---------
    folder : str or Path
        Where the splits go (created if needed).
    seed : int
        Seed of everything random: voices, speaker and chapter ids, texts, noise.
    splits : mapping, optional
        Split name -> (number of speakers, utterances per speaker); ``DEFAULT_SPLITS`` if None.
        Speakers are never shared between splits.
    text : str
        What the speakers read: ``"sentences"`` of the project's grammar, or
        ``"numbers"``, sequences of three to six number words.
    num_workers : int, optional
        Worker processes synthesising chapters in parallel (default: the usable CPU cores).

    Returns
    -------
    Path
        ``folder``.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = synthesize_corpus(tmp, splits={"tiny": (1, 1)}, num_workers=1)
    ...     sorted(path.suffix for path in (folder / "tiny").glob("*/*/*"))
    ['.flac', '.txt']
    """
    folder = Path(folder)
    splits = _check_splits(DEFAULT_SPLITS if splits is None else splits)
    options = {
        "format": RECORD_FORMAT,
        "seed": seed,
        "text": _check_text(text),
        "splits": {name: list(sizes) for name, sizes in splits.items()},
    }
    record_path = folder / RECORD_NAME
    if record_path.is_file():
        previous = json.loads(record_path.read_text(encoding="utf-8"))
        if previous.get("options") == options and _is_complete(folder, previous):
            logger.info("Reusing the synthetic corpus in %s (built with the same options)", folder)
            return folder
        logger.info("Rebuilding the synthetic corpus in %s: its options or files differ", folder)
        record_path.unlink()
        for split in previous.get("splits", {}):
            shutil.rmtree(folder / split, ignore_errors=True)

    plan = plan_corpus(seed, splits, text)
    jobs = [job for split_jobs in plan.values() for job in split_jobs]
    for split in splits:
        shutil.rmtree(folder / split, ignore_errors=True)
    workers = num_workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    logger.info(
        "Synthesising %d utterances (%d chapters) into %s with %d processes",
        sum(len(job.texts) for job in jobs),
        len(jobs),
        folder,
        workers,
    )
    synthesize = functools.partial(_synthesize_chapter, folder)
    if workers == 1:
        durations = iter([synthesize(job) for job in jobs])
    else:
        # Each chapter has its own synthesiser, so which process writes it does not change a byte.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(processes=min(workers, len(jobs))) as pool:
            durations = iter(pool.map(synthesize, jobs, chunksize=1))

    summary: dict[str, dict] = {}
    for split, split_jobs in plan.items():
        seconds = sum(next(durations) for _ in split_jobs)
        voices = {str(job.speaker): asdict(job.voice) for job in split_jobs}
        summary[split] = {
            "speakers": len(voices),
            "utterances": sum(len(job.texts) for job in split_jobs),
            "hours": round(seconds / 3600, 4),
            "voices": voices,
        }
        logger.info(
            "%s: %d speakers, %d utterances, %.1f minutes",
            split,
            len(voices),
            summary[split]["utterances"],
            seconds / 60,
        )
    record = {
        "options": options,
        "sample_rate": SAMPLE_RATE,
        "vocabulary_size": len(TEXT_VOCABULARIES[text]),
        "splits": summary,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    total_hours = sum(split["hours"] for split in summary.values())
    logger.info("Synthetic corpus ready in %s: %.1f minutes of speech", folder, total_hours * 60)
    return folder


def main(argv: list[str] | None = None) -> None:
    """Command line: build the synthetic corpus (the default splits unless ``--split`` is given)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", required=True, type=Path, help="where the LibriSpeech-layout splits go")
    parser.add_argument("--seed", type=int, default=0, help="seed of voices, texts and noise")
    parser.add_argument("--text", choices=sorted(TEXT_VOCABULARIES), default="sentences", help="what the speakers read")
    parser.add_argument("--num_workers", type=int, default=None, help="synthesis processes (default: all cores)")
    parser.add_argument(
        "--split",
        nargs=3,
        action="append",
        metavar=("NAME", "SPEAKERS", "UTTERANCES"),
        help="a split and its size (repeat for several); default: "
        + ", ".join(f"{name} {speakers} {utterances}" for name, (speakers, utterances) in DEFAULT_SPLITS.items()),
    )
    args = parser.parse_args(argv)
    splits = None
    if args.split:
        try:
            splits = {name: (int(speakers), int(utterances)) for name, speakers, utterances in args.split}
        except ValueError:
            parser.error(f"--split takes NAME SPEAKERS UTTERANCES with integer sizes, got {args.split}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    synthesize_corpus(args.folder, seed=args.seed, splits=splits, text=args.text, num_workers=args.num_workers)


if __name__ == "__main__":
    main()
