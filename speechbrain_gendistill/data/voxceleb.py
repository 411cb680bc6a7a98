"""Manifests of VoxCeleb1 speaker identification, SUPERB's protocol: ``iden_split.txt``, 1,251 speakers.

``iden_split.txt`` lists ``<set> <speaker>/<video>/<utterance>.wav`` lines:
set 1 trains, 2 is dev, 3 is test (every speaker in each). The audio is looked
for under ``data_folder/wav/``, ``data_folder/dev/wav/``,
``data_folder/test/wav/`` and ``data_folder/`` itself, in that order (the
official archives unpack into ``wav/``). SUPERB trains on random 8 s crops,
drawn anew each epoch: the probe's recipe sets ``train_crop_seconds`` (the
crop is a run of cached windows, drawn from the seed, the epoch and the item).

Columns: ``ID`` (``<speaker>-<video>-<utterance>``), ``duration``, ``wav``, ``start``, ``stop``,
``label`` (the speaker).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from speechbrain_gendistill.data.manifests import BASE_COLUMNS, checked_manifests, durations, write_once

SETS = {"1": "train", "2": "dev", "3": "test"}
AUDIO_ROOTS = ("wav", "dev/wav", "test/wav", ".")
COLUMNS = [*BASE_COLUMNS, "label"]


def _locate(data_folder: Path, relative: str) -> Path | None:
    for root in AUDIO_ROOTS:
        path = data_folder / root / relative
        if path.is_file():
            return path
    return None


def prepare_voxceleb_sid(
    data_folder: str | Path, save_folder: str | Path, split_file: str | Path | None = None, num_workers: int = 8
) -> dict[str, Path]:
    """Writes ``train.csv``, ``dev.csv`` and ``test.csv`` from ``iden_split.txt`` (see the module docstring).

    Every malformed line and every listed file that is missing or unreadable is
    reported in one error before anything is written; a rerun with the same
    split file reuses the manifests (the audio files are checked by the recipe).

    Arguments
    ---------
    data_folder : str or Path
        The VoxCeleb1 folder.
    save_folder : str or Path
        Where the manifests go.
    split_file : str or Path, optional
        ``iden_split.txt`` (default: the one in ``data_folder``).
    num_workers : int
        Threads reading durations.
    """
    data_folder = Path(data_folder).resolve()
    split_file = Path(split_file) if split_file else data_folder / "iden_split.txt"
    stat = split_file.stat() if split_file.is_file() else None
    options = {
        "data_folder": str(data_folder),
        "split_file": str(split_file.resolve()),
        "split_file_stat": [stat.st_size, stat.st_mtime_ns] if stat else None,
    }
    return write_once(
        save_folder, "voxceleb_sid_prepare", options, lambda: _rows(data_folder, split_file, num_workers), COLUMNS
    )


def _rows(data_folder: Path, split_file: Path, num_workers: int) -> dict[str, list[dict[str, Any]]]:
    problems: list[str] = []
    entries: list[tuple[str, str]] = []
    if not split_file.is_file():
        problems.append(f"split file {split_file} not found (VoxCeleb1's iden_split.txt)")
    else:
        for number, line in enumerate(split_file.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[0] not in SETS or len(Path(fields[1]).parts) != 3:
                problems.append(f"{split_file}:{number}: expected '<1|2|3> <speaker>/<video>/<file>', got {line!r}")
            else:
                entries.append((SETS[fields[0]], fields[1]))
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        paths = list(pool.map(lambda entry: _locate(data_folder, entry[1]), entries))
    missing = [relative for (_, relative), path in zip(entries, paths, strict=True) if path is None]
    problems += [f"{relative}: not found under {data_folder} ({', '.join(AUDIO_ROOTS)})" for relative in missing]
    found = [path for path in paths if path is not None]
    seconds = {}
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        for chunk in pool.map(lambda path: durations([path], problems), found):
            seconds.update(chunk)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ValueError(f"{len(problems)} problem(s) in VoxCeleb1 ({data_folder}):\n{listing}")
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    for (split, relative), path in zip(entries, paths, strict=True):
        speaker = Path(relative).parts[0]
        item_id = Path(relative).with_suffix("").as_posix().replace("/", "-")
        rows[split].append({"ID": item_id, "duration": seconds[path], "wav": str(path), "label": speaker})
    return rows


def voxceleb_manifests(hparams: dict[str, Any]) -> dict[str, Path]:
    """A recipe's VoxCeleb1 manifests, written on the main process and checked (keys ``data_folder``,
    ``split_file``, ``save_folder``, ``skip_bad_audio``)."""
    kwargs = {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["save_folder"],
        "split_file": hparams["split_file"],
    }
    return checked_manifests(prepare_voxceleb_sid, kwargs, hparams["skip_bad_audio"])
