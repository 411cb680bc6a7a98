"""SpeechBrain CSV manifests from a folder in LibriSpeech's layout.

The layout (the real corpus, or the synthetic one of ``corpus.py``)::

    <data_folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <data_folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("<ID> <TEXT>" lines)

``prepare_librispeech`` writes ``train.csv`` (the train splits merged),
``dev.csv`` (the dev splits merged) and one ``<split>.csv`` per test split, with
the columns ``ID, duration, wav, spk_id, wrd``. A recipe calls it through
``speechbrain.utils.distributed.run_on_main`` so that only the main process
scans the corpus; the options of the last successful run are kept next to the
manifests, and a call with the same options returns at once. It decodes every
file once (``data.audio.inspect_files``, which also gives the durations), and
the check before training reuses that decode.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechbrain.utils.distributed import run_on_main

from speechbrain_gendistill.data.audio import AUDIO_CHECK_CACHE, audio_problem, check_manifests, inspect_files

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd")
AUDIO_EXTENSIONS = (".flac", ".wav")
OPTIONS_RECORD = "librispeech_prepare.json"
RECORD_FORMAT = 2


class LibriSpeechLayoutError(ValueError):
    """A data folder that does not follow LibriSpeech's layout; ``problems`` lists every fault found."""

    def __init__(self, data_folder: Path, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the LibriSpeech folder {data_folder}:\n{listing}")


@dataclass(frozen=True)
class Utterance:
    """One manifest row before its duration is known."""

    id: str
    wav: Path
    spk_id: str
    wrd: str


def _scan_split(split_folder: Path, problems: list[str]) -> list[Utterance]:
    """The utterances of one split, in ID order; faults are appended to ``problems``."""
    utterances = []
    for chapter_folder in sorted(path for path in split_folder.glob("*/*") if path.is_dir()):
        speaker, chapter = chapter_folder.parent.name, chapter_folder.name
        transcript = chapter_folder / f"{speaker}-{chapter}.trans.txt"
        if not transcript.is_file():
            problems.append(f"chapter folder {chapter_folder} has no transcript {transcript.name}")
            continue
        files = {path.name for path in chapter_folder.iterdir()}
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            utterance_id, _, text = line.strip().partition(" ")
            text = " ".join(text.split())
            if not utterance_id:
                continue
            if not utterance_id.startswith(f"{speaker}-{chapter}-"):
                problems.append(f"{transcript}:{number}: ID {utterance_id!r} is not of chapter {speaker}-{chapter}")
            elif not text:
                problems.append(f"{transcript}:{number}: empty transcript for {utterance_id}")
            else:
                # A missing file is listed at LibriSpeech's name, and named with the other bad audio.
                audio = next((utterance_id + ext for ext in AUDIO_EXTENSIONS if utterance_id + ext in files), None)
                audio = audio or utterance_id + AUDIO_EXTENSIONS[0]
                utterances.append(Utterance(utterance_id, chapter_folder / audio, speaker, text))
    if not utterances and not problems:
        problems.append(f"split folder {split_folder} holds no <speaker>/<chapter> folder with utterances")
    return sorted(utterances, key=lambda utterance: utterance.id)


def _fingerprint(data_folder: Path, splits: Sequence[str]) -> str:
    """Changes when a file of these splits' chapters is added, removed or rewritten (e.g. a rebuilt corpus)."""
    digest = hashlib.sha256()
    for split in splits:
        for path in sorted((data_folder / split).glob("*/*/*")):
            stat = path.stat()
            digest.update(f"{path.relative_to(data_folder)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _write_csv(path: Path, rows: list[tuple[Utterance, float]]) -> None:
    """Writes the manifest through a temporary file, so that a crash never leaves half a CSV."""
    partial = path.with_suffix(".csv.partial")
    with open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for utterance, duration in rows:
            writer.writerow((utterance.id, repr(duration), str(utterance.wav), utterance.spk_id, utterance.wrd))
    os.replace(partial, path)


def _manifest_groups(
    train_splits: Sequence[str], dev_splits: Sequence[str], test_splits: Sequence[str]
) -> dict[str, list[str]]:
    """Manifest name -> the splits merged into it (``train`` and ``dev`` only when given splits)."""
    groups = {"train": list(train_splits), "dev": list(dev_splits)}
    groups = {name: splits for name, splits in groups.items() if splits}
    for split in test_splits:
        if split in groups:
            raise ValueError(f"Test split {split!r} would overwrite the manifest {split}.csv of other splits")
        groups[split] = [split]
    if not groups:
        raise ValueError("prepare_librispeech: no train, dev or test split given")
    return groups


def prepare_librispeech(
    data_folder: str | Path,
    save_folder: str | Path,
    train_splits: Sequence[str] = (),
    dev_splits: Sequence[str] = (),
    test_splits: Sequence[str] = (),
    skip_prep: bool = False,
    num_workers: int | None = None,
) -> dict[str, Path]:
    """Writes the train, dev and test manifests of a LibriSpeech-layout folder.

    Every audio file is decoded once (durations, and what the check before
    training needs). Every fault of the layout (a missing split, a chapter
    without its transcript, a transcript line without text) is collected and
    reported in one ``LibriSpeechLayoutError``, together with every bad audio
    file, before any manifest is written. Bad audio alone (a transcript line
    without its file, an empty, undecodable, truncated or too short one) does
    not stop preparation: the manifests list it, and
    :func:`~speechbrain_gendistill.data.audio.check_manifest` names all of it in
    one error, or skips it.

    Arguments
    ---------
    data_folder : str or Path
        The folder holding the split folders (e.g. ``LibriSpeech/``).
    save_folder : str or Path
        Where the CSV files and the record of options go (created if needed).
    train_splits, dev_splits : sequence of str
        Splits merged into ``train.csv`` and into ``dev.csv``.
    test_splits : sequence of str
        Splits written to one ``<split>.csv`` each.
    skip_prep : bool
        Only check that the manifests exist (e.g. when they were written elsewhere).
    num_workers : int, optional
        Threads decoding the audio (default: the CPU count).

    Returns
    -------
    dict
        Manifest name (``train``, ``dev``, each test split) -> its CSV path; ``train``
        and ``dev`` only when given splits.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.demo.corpus import synthesize_corpus
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     data = synthesize_corpus(f"{tmp}/data", splits={"a": (1, 2), "b": (1, 1)}, num_workers=1)
    ...     paths = prepare_librispeech(data, f"{tmp}/csv", train_splits=["a"], dev_splits=["b"])
    ...     sorted(paths), paths["train"].read_text().splitlines()[0]
    (['dev', 'train'], 'ID,duration,wav,spk_id,wrd')
    """
    data_folder, save_folder = Path(data_folder).resolve(), Path(save_folder)
    groups = _manifest_groups(train_splits, dev_splits, test_splits)
    paths = {name: save_folder / f"{name}.csv" for name in groups}
    if skip_prep:
        missing = [str(path) for path in paths.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"skip_prep is set but these manifests do not exist: {', '.join(missing)}")
        return paths
    if not data_folder.is_dir():
        raise LibriSpeechLayoutError(data_folder, [f"data folder {data_folder} does not exist"])
    splits = list(dict.fromkeys(split for group in groups.values() for split in group))
    options = {
        "format": RECORD_FORMAT,
        "data_folder": str(data_folder),
        "manifests": groups,
        "files": _fingerprint(data_folder, splits),
    }
    record = save_folder / OPTIONS_RECORD
    if (
        record.is_file()
        and json.loads(record.read_text(encoding="utf-8")) == options
        and all(path.is_file() for path in paths.values())
    ):
        logger.info("LibriSpeech manifests in %s are up to date, skipping preparation", save_folder)
        return paths

    problems: list[str] = []
    scanned: dict[str, list[Utterance]] = {}
    for split in splits:
        if (data_folder / split).is_dir():
            scanned[split] = _scan_split(data_folder / split, problems)
        else:
            problems.append(f"split folder {data_folder / split} does not exist")
    for name, group in groups.items():
        counts = Counter(utterance.id for split in group for utterance in scanned.get(split, []))
        repeated = sorted(utterance_id for utterance_id, count in counts.items() if count > 1)
        if repeated:
            problems.append(f"{name}.csv would list these IDs more than once: {', '.join(repeated[:10])}")
    utterances = [utterance for split in scanned.values() for utterance in split]
    logger.info("Decoding the %d audio files of %s", len(utterances), data_folder)
    found = inspect_files(
        [str(utterance.wav) for utterance in utterances], save_folder / AUDIO_CHECK_CACHE, num_workers
    )
    if problems:
        bad = {path: audio_problem(result) for path, result in found.items()}
        problems += [f"audio file {path}: {reason}" for path, reason in bad.items() if reason is not None]
        raise LibriSpeechLayoutError(data_folder, problems)

    # A file that cannot be decoded gets a duration of 0: the check before training names or skips it.
    duration_of = {Path(path): result["frames"] / (result["rate"] or 1) for path, result in found.items()}
    save_folder.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    for name, group in groups.items():
        rows = [(utterance, duration_of[utterance.wav]) for split in group for utterance in scanned[split]]
        _write_csv(paths[name], rows)
        hours = sum(duration for _, duration in rows) / 3600
        logger.info("%s: %d utterances, %.2f hours -> %s", name, len(rows), hours, paths[name])
    record.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
    return paths


def librispeech_manifests(hparams: dict, test_splits: Sequence[str] = ()) -> dict[str, Path]:
    """A recipe's manifests, written by the main process and checked before any training.

    Runs :func:`prepare_librispeech` on the main process with the recipe's
    keys (``data_folder``, ``save_folder``, ``train_splits``, ``dev_splits``,
    ``skip_prep``, ``prep_workers``), then checks every listed audio file
    (:func:`~speechbrain_gendistill.data.audio.check_manifests`, honouring
    ``skip_bad_audio``, with the decode of the preparation). Returns ``train`` (the YAML's ``train_csv``),
    ``valid`` (``valid_csv``) and one entry per test split, each the manifest
    to read (without the skipped files, if any were).
    """
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "train_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "test_splits": list(test_splits),
            "skip_prep": hparams["skip_prep"],
            "num_workers": hparams["prep_workers"],
        },
    )
    manifests = {"train": Path(hparams["train_csv"]), "valid": Path(hparams["valid_csv"])}
    manifests.update({split: Path(hparams["save_folder"]) / f"{split}.csv" for split in test_splits})
    return check_manifests(manifests, hparams["skip_bad_audio"])
