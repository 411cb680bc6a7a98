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

    python -m speechbrain_gendistill.corpus --folder data/synth --seed 0
    python -m speechbrain_gendistill.corpus --folder data/numbers --text numbers --split train 8 12
"""

from __future__ import annotations

import _ctypes
import argparse
import ctypes
import functools
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import espeakng_loader
import numpy as np
import soundfile
from scipy.signal import resample_poly

from speechbrain_gendistill.sentence_grammar import NUMBERS, SentenceGrammar, normalize_transcript

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ESPEAK_SAMPLE_RATE = 22050
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

ACCENTS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
# espeak-ng voice variants that sound like a person (robotic, whispered and extreme ones left out).
VOICE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie Denis Diogo Gene Henrique Hugo "
    "Jacky Lee Marco Mario Michael Mike anika aunty belinda benjamin david ed edward grandma grandpa gustave "
    "ian john kaukovalta klatt klatt2 klatt3 klatt4 linda marcelo max michel miguel norbert pablo paul pedro "
    "quincy rob robert shelby steph travis victor"
).split()

# libespeak-ng's C API (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class SpeakerVoice:
    """How one synthetic speaker sounds: espeak-ng settings plus level and noise.

    Arguments
    ---------
    accent : str
        espeak-ng English language voice, one of ``ACCENTS``.
    variant : str
        espeak-ng voice variant (formants, pitch band, breathiness), one of ``VOICE_VARIANTS``.
    pitch : int
        Base pitch, 0-100 (espeak-ng's default is 50).
    pitch_range : int
        Intonation range, 0-100 (espeak-ng's default is 50).
    rate : int
        Speaking rate in words per minute.
    word_gap : int
        Extra pause between words, in units of 10 ms.
    peak_db : float
        Peak level of each utterance, in dB below full scale.
    snr_db : float
        Signal-to-noise ratio of the white background noise, in dB.

    Example
    -------
    >>> SpeakerVoice.draw(random.Random(0), "m3").variant
    'm3'
    """

    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int
    word_gap: int
    peak_db: float
    snr_db: float

    @classmethod
    def draw(cls, rng: random.Random, variant: str) -> SpeakerVoice:
        """A random voice built on ``variant``."""
        return cls(
            accent=rng.choice(ACCENTS),
            variant=variant,
            pitch=rng.randint(25, 75),
            pitch_range=rng.randint(30, 90),
            rate=rng.randint(140, 190),
            word_gap=rng.choice((0, 0, 1, 2)),
            peak_db=round(rng.uniform(-12.0, -3.0), 1),
            snr_db=round(rng.uniform(25.0, 45.0), 1),
        )


def _unload_library(handle: int) -> None:
    (_ctypes.dlclose if hasattr(_ctypes, "dlclose") else _ctypes.FreeLibrary)(handle)


def _load_private_espeak(folder: Path) -> ctypes.CDLL:
    """A fresh instance of libespeak-ng, loaded from a private copy of the library file.

    The dynamic loader shares one instance per file, so a copy gets its own
    static state; that is what makes a synthesiser's output independent of
    whatever else this process synthesised before.
    """
    copy = folder / Path(espeakng_loader.get_library_path()).name
    shutil.copyfile(espeakng_loader.get_library_path(), copy)
    library = ctypes.CDLL(str(copy), mode=ctypes.RTLD_LOCAL)
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    library.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    data_path = espeakng_loader.get_data_path()
    rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
    if rate != ESPEAK_SAMPLE_RATE:
        raise RuntimeError(f"libespeak-ng failed to initialise with data {data_path} (returned {rate})")
    return library


class EspeakSynthesizer:
    """Text to 22.05 kHz speech with libespeak-ng, driven through ctypes.

    libespeak-ng carries state from one call to the next (random generators,
    filter memories), so each instance loads its own copy of the library: the
    same calls on a new instance give the same samples, in any process. An
    instance is not thread-safe; close it (or use it as a context manager) to
    unload its library.

    Example
    -------
    >>> voice = SpeakerVoice.draw(random.Random(0), "f2")
    >>> with EspeakSynthesizer() as synthesizer:
    ...     audio = synthesizer.synthesize("the old farmer sang.", voice, seed=0)
    >>> with EspeakSynthesizer() as synthesizer:
    ...     again = synthesizer.synthesize("the old farmer sang.", voice, seed=0)
    >>> audio.dtype, 0.5 < len(audio) / ESPEAK_SAMPLE_RATE < 3.0, np.array_equal(audio, again)
    (dtype('float32'), True, True)
    """

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="espeak-ng-")
        self.library = _load_private_espeak(Path(self.folder.name))
        self.chunks: list[np.ndarray] = []
        # Kept on the instance so that the C callback is not garbage collected.
        self.callback = _SYNTH_CALLBACK(self._receive)
        self.library.espeak_SetSynthCallback(self.callback)
        self.libc = ctypes.CDLL(None)

    def __enter__(self) -> EspeakSynthesizer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stops the synthesiser and unloads its copy of the library."""
        self.library.espeak_Terminate()
        _unload_library(self.library._handle)
        self.folder.cleanup()

    def _receive(self, samples, count: int, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = go on synthesising

    def synthesize(self, text: str, voice: SpeakerVoice, rate: int | None = None, seed: int = 0) -> np.ndarray:
        """Float32 samples in [-1, 1] of ``text`` read by ``voice`` (at ``rate`` words per minute if given)."""
        variant_file = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / voice.variant
        if not variant_file.is_file():
            raise ValueError(f"espeak-ng has no voice variant {voice.variant!r} (no file {variant_file})")
        status = self.library.espeak_SetVoiceByName(f"{voice.accent}+{voice.variant}".encode())
        if status != 0:
            raise ValueError(f"espeak-ng cannot set voice {voice.accent}+{voice.variant} (error {status})")
        for parameter, value in (
            (_RATE, rate or voice.rate),
            (_VOLUME, 100),
            (_PITCH, voice.pitch),
            (_RANGE, voice.pitch_range),
            (_WORDGAP, voice.word_gap),
        ):
            self.library.espeak_SetParameter(parameter, value, 0)
        # Both the library's own generator and libc's rand() feed its noise sources.
        self.library.espeak_ng_SetRandSeed(seed)
        self.libc.srand(seed)
        self.chunks.clear()
        encoded = text.encode() + b"\0"
        status = self.library.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, 0, None, None)
        self.library.espeak_Synchronize()
        if status != 0 or not self.chunks:
            raise RuntimeError(f"espeak-ng failed to synthesise {text!r} (error {status})")
        return (np.concatenate(self.chunks).astype(np.float32) / 32768.0).clip(-1.0, 1.0)


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
