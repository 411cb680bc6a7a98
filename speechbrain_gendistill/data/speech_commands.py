"""Manifests of Speech Commands v0.01 for keyword spotting, with SUPERB's twelve classes and splits.

The classes: ``yes no up down left right on off stop go``, ``_unknown_`` (every
other word) and ``_silence_``. The splits, as SUPERB's KS task takes them:

- dev: the files of the archive's ``validation_list.txt`` (its hash-based split);
- train: every other file of a word folder, except those of ``testing_list.txt``;
- test: the separate official test set (``speech_commands_test_set_v0.01``),
  whose folders name the classes (``_silence_`` and ``_unknown_`` included; a
  folder of another word counts as ``_unknown_``).

``_silence_`` for train and dev is cut from the ``_background_noise_`` files as
non-overlapping windows of ``silence_seconds``; every ``dev_silence_every``-th
window of each file (the first, then every n-th) goes to dev, the others to train.

Columns: ``ID``, ``duration``, ``wav``, ``start``, ``stop``, ``label``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechbrain_gendistill.data.manifests import (
    BASE_COLUMNS,
    audio_files,
    checked_manifests,
    durations,
    fingerprint,
    write_once,
)

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
CLASSES = (*WORDS, UNKNOWN, SILENCE)
NOISE_FOLDER = "_background_noise_"
COLUMNS = [*BASE_COLUMNS, "label"]


def word_label(word: str) -> str:
    """The class of a word folder.

    Example
    -------
    >>> word_label("yes"), word_label("marvin"), word_label("_silence_")
    ('yes', '_unknown_', '_silence_')
    """
    return word if word in CLASSES else UNKNOWN


def _item_id(prefix: str, relative: str) -> str:
    return f"{prefix}-{Path(relative).with_suffix('').as_posix().replace('/', '-')}"


def _listed(path: Path, problems: list[str]) -> list[str]:
    if not path.is_file():
        problems.append(f"{path} is missing")
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def prepare_speech_commands(
    data_folder: str | Path,
    test_folder: str | Path,
    save_folder: str | Path,
    silence_seconds: float = 1.0,
    dev_silence_every: int = 10,
) -> dict[str, Path]:
    """Writes ``train.csv``, ``dev.csv`` and ``test.csv`` (see the module docstring).

    Every missing list, listed file that does not exist, unreadable file or
    empty class is reported in one error before anything is written; a rerun
    with the same files and options reuses the manifests.

    Arguments
    ---------
    data_folder : str or Path
        The v0.01 archive: word folders, ``_background_noise_``, ``validation_list.txt``, ``testing_list.txt``.
    test_folder : str or Path
        The official test set: one folder per class.
    save_folder : str or Path
        Where the manifests go.
    silence_seconds : float
        Length of a ``_silence_`` window.
    dev_silence_every : int
        Every n-th window of each noise file is dev.
    """
    data_folder, test_folder = Path(data_folder).resolve(), Path(test_folder).resolve()
    files = [*audio_files(data_folder), *audio_files(test_folder)]
    options = {
        "data_folder": str(data_folder),
        "test_folder": str(test_folder),
        "silence_seconds": silence_seconds,
        "dev_silence_every": dev_silence_every,
        "files": fingerprint(files),
    }
    return write_once(
        save_folder,
        "speech_commands_prepare",
        options,
        lambda: _rows(data_folder, test_folder, silence_seconds, dev_silence_every),
        COLUMNS,
    )


def _rows(
    data_folder: Path, test_folder: Path, silence_seconds: float, dev_silence_every: int
) -> dict[str, list[dict[str, Any]]]:
    problems: list[str] = []
    for folder in (data_folder, test_folder):
        if not folder.is_dir():
            problems.append(f"{folder} is not a folder")
    dev_list = set(_listed(data_folder / "validation_list.txt", problems))
    test_list = set(_listed(data_folder / "testing_list.txt", problems))
    words = [
        path
        for path in (audio_files(data_folder) if not problems else [])
        if path.parent.name != NOISE_FOLDER and not path.is_relative_to(test_folder)  # the test set may lie inside
    ]
    present = {path.relative_to(data_folder).as_posix() for path in words}
    for name, listed in (("validation_list.txt", dev_list), ("testing_list.txt", test_list)):
        missing = sorted(listed - present)
        problems += [f"{name}: {relative} does not exist in {data_folder}" for relative in missing]
    noise = audio_files(data_folder / NOISE_FOLDER) if data_folder.is_dir() else []
    tests = audio_files(test_folder) if test_folder.is_dir() else []
    seconds = durations([*words, *noise, *tests], problems)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    for path in words if not problems else []:
        relative = path.relative_to(data_folder).as_posix()
        if relative in test_list:
            continue
        split = "dev" if relative in dev_list else "train"
        rows[split].append(
            {
                "ID": _item_id(split, relative),
                "duration": seconds[path],
                "wav": str(path),
                "label": word_label(path.parent.name),
            }
        )
    for path in noise if not problems else []:
        windows = int(seconds[path] // silence_seconds)
        for index in range(windows):
            split = "dev" if index % dev_silence_every == 0 else "train"
            start = round(index * silence_seconds, 4)
            rows[split].append(
                {
                    "ID": f"{SILENCE}-{path.stem}-{index}",
                    "duration": silence_seconds,
                    "wav": str(path),
                    "start": start,
                    "stop": round(start + silence_seconds, 4),
                    "label": SILENCE,
                }
            )
    for path in tests if not problems else []:
        relative = path.relative_to(test_folder).as_posix()
        rows["test"].append(
            {
                "ID": _item_id("test", relative),
                "duration": seconds[path],
                "wav": str(path),
                "label": word_label(path.parent.name),
            }
        )
    for split, split_rows in rows.items() if not problems else ():
        empty = sorted(set(CLASSES) - {row["label"] for row in split_rows})
        if empty:
            problems.append(f"{split}: no item of the classes {empty}")
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ValueError(f"{len(problems)} problem(s) in Speech Commands ({data_folder}, {test_folder}):\n{listing}")
    return rows


def speech_commands_manifests(hparams: dict[str, Any]) -> dict[str, Path]:
    """A recipe's Speech Commands manifests, written on the main process and checked (keys ``data_folder``,
    ``test_folder``, ``save_folder``, ``silence_seconds``, ``dev_silence_every``, ``skip_bad_audio``)."""
    kwargs = {
        "data_folder": hparams["data_folder"],
        "test_folder": hparams["test_folder"],
        "save_folder": hparams["save_folder"],
        "silence_seconds": hparams["silence_seconds"],
        "dev_silence_every": hparams["dev_silence_every"],
    }
    return checked_manifests(prepare_speech_commands, kwargs, hparams["skip_bad_audio"])
