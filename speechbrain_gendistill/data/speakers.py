"""Closed-set speaker identification manifests from any folder of audio whose speaker is known by its place.

Two layouts, no transcripts needed:

- LibriSpeech's, or any ``<speaker>/<chapter>/<files>`` (the speaker is the top
  folder under ``data_folder``; files anywhere below it);
- a flat folder of ``<speaker>-<anything>.flac`` (the speaker is the file name's
  first dash-separated field), as ``<spk>-<chapter>-<utt>.flac``.

Closed set: every speaker is in every split. A speaker with at least
``min_utterances`` utterances is split by utterance: in ID order, the first
ones train, then ``split_fractions[1]`` of them (at least one) dev, and the last
``split_fractions[2]`` (at least one) test. A speaker with fewer utterances has
each of them split in time instead: its first ``time_fractions[0]`` trains,
the next ``time_fractions[1]`` is dev, the rest test. Each region is a segment
(``start``, ``stop``) that the feature cache cuts before the upstream sees it,
so no test frame's features depend on training audio.

Columns: ``ID``, ``duration`` (of the region), ``wav``, ``start``, ``stop``, ``label`` (the speaker).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.data.audio import MIN_SAMPLES
from speechbrain_gendistill.data.manifests import (
    BASE_COLUMNS,
    audio_files,
    checked_manifests,
    durations,
    fingerprint,
    write_once,
)

COLUMNS = [*BASE_COLUMNS, "label"]
SPLITS = ("train", "dev", "test")


def speaker_of(path: Path, data_folder: Path) -> str:
    """The top folder under ``data_folder``, or for a file directly in it, its name's first dash-separated field.

    Example
    -------
    >>> speaker_of(Path("/d/103/1240/103-1240-0000.flac"), Path("/d"))
    '103'
    >>> speaker_of(Path("/d/19-198-0001.flac"), Path("/d"))
    '19'
    """
    parts = path.relative_to(data_folder).parts
    return parts[0] if len(parts) > 1 else path.stem.split("-")[0]


def _fractions(name: str, values: Sequence[float], problems: list[str]) -> None:
    if len(values) != 3 or any(value < 0 for value in values) or abs(sum(values) - 1.0) > 1e-6:
        problems.append(f"{name} {list(values)}: three fractions (train, dev, test) >= 0 summing to 1")


def prepare_speakers(
    data_folder: str | Path,
    save_folder: str | Path,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    time_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    min_utterances: int = 3,
) -> dict[str, Path]:
    """Writes ``train.csv``, ``dev.csv`` and ``test.csv`` of a speaker folder (see the module docstring).

    Every unreadable file, repeated ID, and region too short for one frame is
    listed in one error before anything is written; a rerun with the same
    files and options reuses the manifests.

    Example
    -------
    >>> import tempfile, numpy, soundfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> soundfile.write(folder / "7-1-0000.flac", numpy.zeros(16000), 16000)  # one utterance: split in time
    >>> for utt in range(5):
    ...     soundfile.write(folder / f"8-1-000{utt}.flac", numpy.zeros(8000), 16000)
    >>> paths = prepare_speakers(folder, folder / "csv")
    >>> [line.split(",")[0] + " " + line.split(",")[3] for line in paths["test"].read_text().splitlines()[1:]]
    ['7-1-0000_test 0.8', '8-1-0004 ']
    """
    data_folder = Path(data_folder).resolve()
    files = audio_files(data_folder) if data_folder.is_dir() else []
    options = {
        "data_folder": str(data_folder),
        "split_fractions": list(split_fractions),
        "time_fractions": list(time_fractions),
        "min_utterances": min_utterances,
        "files": fingerprint(files),
    }
    return write_once(
        save_folder,
        "speakers_prepare",
        options,
        lambda: _rows(data_folder, files, split_fractions, time_fractions, min_utterances),
        COLUMNS,
    )


def _rows(
    data_folder: Path,
    files: list[Path],
    split_fractions: Sequence[float],
    time_fractions: Sequence[float],
    min_utterances: int,
) -> dict[str, list[dict[str, Any]]]:
    problems: list[str] = []
    _fractions("split_fractions", split_fractions, problems)
    _fractions("time_fractions", time_fractions, problems)
    if not files:
        problems.append(f"{data_folder} holds no audio file")
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            problems.append(f"ID {path.stem} is both {seen[path.stem]} and {path}")
        seen[path.stem] = path
        by_speaker[speaker_of(path, data_folder)].append(path)
    seconds = durations(files, problems)
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    if problems:
        _raise(data_folder, problems)
    min_seconds = MIN_SAMPLES / SAMPLE_RATE
    for speaker, paths in sorted(by_speaker.items()):
        paths = sorted(paths, key=lambda path: path.stem)
        if len(paths) >= min_utterances:
            dev = max(1, round(len(paths) * split_fractions[1]))
            test = max(1, round(len(paths) * split_fractions[2]))
            splits = ["train"] * (len(paths) - dev - test) + ["dev"] * dev + ["test"] * test
            for path, split in zip(paths, splits, strict=True):
                row = {"ID": path.stem, "duration": seconds[path], "wav": str(path), "label": speaker}
                rows[split].append(row)
            continue
        for path in paths:
            bounds = [0.0, time_fractions[0], time_fractions[0] + time_fractions[1], 1.0]
            for split, first, last in zip(SPLITS, bounds, bounds[1:], strict=False):
                start, stop = round(first * seconds[path], 4), round(last * seconds[path], 4)
                if stop - start < min_seconds:
                    problems.append(f"{path}: its {split} region ({start}-{stop} s) is shorter than one frame")
                row = {
                    "ID": f"{path.stem}_{split}",
                    "duration": stop - start,
                    "wav": str(path),
                    "start": start,
                    "stop": stop,
                    "label": speaker,
                }
                rows[split].append(row)
    if problems:
        _raise(data_folder, problems)
    return rows


def _raise(data_folder: Path, problems: list[str]) -> None:
    listing = "\n".join(f"  - {problem}" for problem in problems)
    raise ValueError(f"{len(problems)} problem(s) in the speaker folder {data_folder}:\n{listing}")


def speaker_manifests(hparams: dict[str, Any]) -> dict[str, Path]:
    """A recipe's speaker manifests, written on the main process and checked (keys ``data_folder``,
    ``save_folder``, ``split_fractions``, ``time_fractions``, ``min_utterances``, ``skip_bad_audio``)."""
    kwargs = {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["save_folder"],
        "split_fractions": hparams["split_fractions"],
        "time_fractions": hparams["time_fractions"],
        "min_utterances": hparams["min_utterances"],
    }
    return checked_manifests(prepare_speakers, kwargs, hparams["skip_bad_audio"])
