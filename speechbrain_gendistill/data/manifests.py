"""Writing a task's SpeechBrain CSV manifests once, and reusing them while their inputs stay the same.

The probes' data preparations (``fsdd``, ``speech_commands``, ``speakers``,
``voxceleb``) share this: each scans its folder, collects every fault before
writing anything, and hands :func:`write_once` its rows per manifest; the
options and a fingerprint of the audio files (path, size, mtime) are recorded
beside the manifests, and a later call with the same record returns at once.
:func:`checked_manifests` then decodes every listed file once
(:func:`~speechbrain_gendistill.data.audio.check_manifest`).

Columns: ``ID``, ``duration`` (seconds), ``wav``, ``start`` and ``stop`` (a
segment in seconds; empty for the whole file), then the task's own.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import soundfile
from speechbrain.utils.distributed import run_on_main

from speechbrain_gendistill.data.audio import check_manifest

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")
BASE_COLUMNS = ("ID", "duration", "wav", "start", "stop")


def audio_files(folder: str | Path, recursive: bool = True) -> list[Path]:
    """The audio files under ``folder`` (by suffix, case-insensitive), sorted.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.WAV", "a.flac", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [path.name for path in audio_files(folder)]
    ['a.flac', 'b.WAV']
    """
    paths = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(path for path in paths if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file())


def fingerprint(paths: Iterable[Path]) -> str:
    """Changes when one of ``paths`` is added, removed, resized or touched."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def durations(paths: Iterable[Path], problems: list[str]) -> dict[Path, float]:
    """Seconds of audio in each file; an unreadable one is appended to ``problems``."""
    found = {}
    for path in paths:
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as error:
            problems.append(f"{path}: not readable as audio ({error})")
            continue
        found[path] = info.frames / info.samplerate
    return found


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    os.replace(partial, path)


def write_once(
    save_folder: str | Path,
    name: str,
    options: dict[str, Any],
    build: Callable[[], dict[str, list[dict[str, Any]]]],
    columns: list[str],
) -> dict[str, Path]:
    """The manifests ``<save_folder>/<split>.csv`` that ``build()`` gives rows for, written unless up to date.

    Arguments
    ---------
    save_folder : str or Path
        Where the CSV files and the record (``<name>.json``) go.
    name : str
        The preparation's name (its record file).
    options : dict
        Everything the rows depend on (the folder, the options, a fingerprint of the files), as JSON.
    build : callable
        Returns split -> rows (dicts over ``columns``); raises on any fault, before anything is written.
    columns : list of str
        The CSV columns.

    Example
    -------
    >>> import tempfile
    >>> folder, calls = tempfile.mkdtemp(), []
    >>> def build():
    ...     calls.append(1)
    ...     return {"train": [{"ID": "a", "label": "x"}]}
    >>> paths = write_once(folder, "toy", {"v": 1}, build, ["ID", "label"])
    >>> paths = write_once(folder, "toy", {"v": 1}, build, ["ID", "label"])
    >>> len(calls), paths["train"].read_text().splitlines()
    (1, ['ID,label', 'a,x'])
    """
    save_folder = Path(save_folder)
    record = save_folder / f"{name}.json"
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        paths = {split: save_folder / f"{split}.csv" for split in saved.get("splits", [])}
        if saved.get("options") == options and paths and all(path.is_file() for path in paths.values()):
            logger.info("%s manifests in %s are up to date, skipping preparation", name, save_folder)
            return paths
    rows = build()
    save_folder.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    paths = {}
    for split, split_rows in rows.items():
        paths[split] = save_folder / f"{split}.csv"
        _write_csv(paths[split], columns, split_rows)
        logger.info("%s %s: %d items -> %s", name, split, len(split_rows), paths[split])
    record.write_text(json.dumps({"options": options, "splits": list(rows)}, indent=1) + "\n", encoding="utf-8")
    return paths


def checked_manifests(
    prepare: Callable[..., dict[str, Path]], kwargs: dict[str, Any], skip_bad_audio: bool = False
) -> dict[str, Path]:
    """Runs ``prepare(**kwargs)`` on the main process, then checks every audio file of every manifest it wrote.

    Returns split -> the manifest to read (without the bad files when ``skip_bad_audio``).
    """
    run_on_main(prepare, kwargs=kwargs)
    manifests = prepare(**kwargs)  # up to date now: only reads the record
    for split, manifest in manifests.items():
        run_on_main(check_manifest, args=[manifest], kwargs={"skip_bad_audio": skip_bad_audio})
        manifests[split] = check_manifest(manifest, skip_bad_audio=skip_bad_audio, num_workers=1)
    return manifests
