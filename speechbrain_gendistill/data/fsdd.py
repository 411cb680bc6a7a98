"""Manifests of the Free Spoken Digit Dataset (FSDD): ten digit classes, a keyword-spotting task.

FSDD is a folder of ``{digit}_{speaker}_{take}.wav`` (or ``.flac``), 8 kHz
(``load_audio`` resamples to 16 kHz). The splits:

- with no ``test_speakers``, FSDD's own: takes 0-4 (``test_takes``) of every
  speaker are the test set; of the other takes (5-49), those in ``dev_takes``
  (5-9) are the dev set, on which the probe's learning rate is chosen, and the
  rest (10-49) train;
- with ``test_speakers``, every take of those speakers is the test set (speakers
  never heard in training); the other speakers' ``dev_takes`` are the dev set
  and the rest of their takes train.

Columns: ``ID`` (the file name's stem), ``duration``, ``wav``, ``start``,
``stop``, ``label`` (the digit), ``spk_id``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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

FILE_NAME = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9-]+)_(?P<take>[0-9]+)")
COLUMNS = [*BASE_COLUMNS, "label", "spk_id"]


class FSDDLayoutError(ValueError):
    """A folder that is not laid out as FSDD; the message lists every fault."""


def prepare_fsdd(
    data_folder: str | Path,
    save_folder: str | Path,
    test_speakers: Sequence[str] = (),
    dev_takes: Sequence[int] = (5, 6, 7, 8, 9),
    test_takes: Sequence[int] = (0, 1, 2, 3, 4),
    max_takes: int | None = None,
) -> dict[str, Path]:
    """Writes ``train.csv``, ``dev.csv`` and ``test.csv`` of an FSDD folder (see the module docstring).

    ``max_takes`` keeps only takes ``0 .. max_takes - 1`` of each digit and
    speaker (a smaller run, e.g. for tests); None keeps every take.

    Every file whose name does not follow the pattern, every unreadable file
    and every unknown test speaker is listed in one :class:`FSDDLayoutError`
    before anything is written; a rerun with the same files and options
    reuses the manifests.

    Example
    -------
    >>> import tempfile, numpy, soundfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for take in range(12):
    ...     soundfile.write(folder / f"3_ann_{take}.wav", numpy.zeros(4000), 8000)
    >>> paths = prepare_fsdd(folder, folder / "csv")
    >>> [len(path.read_text().splitlines()) - 1 for path in paths.values()]
    [2, 5, 5]
    >>> try:
    ...     prepare_fsdd(folder, folder / "csv2", test_speakers=["ann"])
    ... except FSDDLayoutError as error:
    ...     print(str(error).splitlines()[1])
      - no speaker is left for training once the test speakers ['ann'] are held out
    """
    data_folder = Path(data_folder).resolve()
    files = audio_files(data_folder, recursive=False) if data_folder.is_dir() else []
    options = {
        "data_folder": str(data_folder),
        "test_speakers": sorted(test_speakers),
        "dev_takes": sorted(dev_takes),
        "test_takes": sorted(test_takes),
        "max_takes": max_takes,
        "files": fingerprint(files),
    }
    return write_once(
        save_folder,
        "fsdd_prepare",
        options,
        lambda: _rows(data_folder, files, test_speakers, dev_takes, test_takes, max_takes),
        COLUMNS,
    )


def _rows(
    data_folder: Path,
    files: list[Path],
    test_speakers: Sequence[str],
    dev_takes: Sequence[int],
    test_takes: Sequence[int],
    max_takes: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    problems = []
    if not data_folder.is_dir():
        problems.append(f"{data_folder} is not a folder")
    elif not files:
        problems.append(f"{data_folder} holds no audio file")
    parsed = {}
    for path in files:
        match = FILE_NAME.fullmatch(path.stem)
        if match is None:
            problems.append(f"{path.name}: not named {{digit}}_{{speaker}}_{{take}}")
        elif max_takes is None or int(match["take"]) < max_takes:
            parsed[path] = match
    speakers = {match["speaker"] for match in parsed.values()}
    unknown = sorted(set(test_speakers) - speakers)
    if unknown:
        problems.append(f"test_speakers {unknown} have no recording here (speakers: {sorted(speakers)})")
    elif files and test_speakers and not speakers - set(test_speakers):
        problems.append(f"no speaker is left for training once the test speakers {sorted(test_speakers)} are held out")
    seconds = durations(parsed, problems)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise FSDDLayoutError(f"{len(problems)} problem(s) in the FSDD folder {data_folder}:\n{listing}")
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    for path, match in parsed.items():
        take = int(match["take"])
        if test_speakers:
            split = "test" if match["speaker"] in test_speakers else "dev" if take in dev_takes else "train"
        else:
            split = "test" if take in test_takes else "dev" if take in dev_takes else "train"
        rows[split].append(
            {
                "ID": path.stem,
                "duration": seconds[path],
                "wav": str(path),
                "label": match["digit"],
                "spk_id": match["speaker"],
            }
        )
    return rows


def fsdd_manifests(hparams: dict[str, Any]) -> dict[str, Path]:
    """A recipe's FSDD manifests, written on the main process and checked (keys ``data_folder``, ``save_folder``,
    ``test_speakers``, ``dev_takes``, ``max_takes`` (optional), ``skip_bad_audio``)."""
    kwargs = {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["save_folder"],
        "test_speakers": hparams["test_speakers"] or (),
        "dev_takes": hparams["dev_takes"],
        "max_takes": hparams.get("max_takes"),
    }
    return checked_manifests(prepare_fsdd, kwargs, hparams["skip_bad_audio"])
