"""SpeechBrain CSV manifests from any folder (or CSV list) of unlabeled audio, for distillation.

Distillation needs no transcripts, so any speech will do: a folder tree of
files in any format soundfile reads (WAV, FLAC, OGG, MP3, ...), at any sample
rate and channel count (read as 16 kHz mono), or a CSV whose ``wav`` column
lists them. ``prepare_audio_folder`` writes ``train.csv`` and ``dev.csv`` with
the columns ``ID, duration, wav, start, stop``: a file longer than
``max_file_seconds`` becomes several rows, each a stretch of it (``start`` and
``stop`` in seconds, exact to the file's frame: ``round(seconds * rate)`` gives
it back), and a training crop is drawn within a row. The dev set is a fixed
share of the files, chosen by a hash of their IDs, so it does not depend on the
order of the listing. The manifests are written once; they are written again
when a file is added, removed or changed (size or modification time) or the
options change.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from pathlib import Path

from speechbrain.utils.distributed import run_on_main

from speechbrain_gendistill.data.audio import AUDIO_CHECK_CACHE, audio_problem, check_manifests, inspect_files

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("ID", "duration", "wav", "start", "stop")
# Extensions of the containers libsndfile decodes (lower case); other files in the folder are ignored.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".rf64")
OPTIONS_RECORD = "audio_folder_prepare.json"
RECORD_FORMAT = 1


class AudioListError(ValueError):
    """A folder or CSV that lists no usable audio; ``problems`` lists every fault found."""

    def __init__(self, source: Path, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the audio list {source}:\n{listing}")


def list_audio_folder(folder: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> dict[str, str]:
    """ID (the path relative to ``folder``) -> absolute path of each audio file under it, hidden ones left out.

    Linked folders are followed (a corpus is often put together with links), each real folder once.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "spk1").mkdir()
    >>> for name in ("spk1/a.WAV", "b.flac", "notes.txt", ".hidden.wav"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> (folder / "spk1" / "loop").symlink_to(folder)
    >>> sorted(list_audio_folder(folder))
    ['b.flac', 'spk1/a.WAV']
    """
    found = {}
    visited = set()
    for root, folders, names in os.walk(folder, followlinks=True):
        if os.path.realpath(root) in visited:  # a link back up the tree
            folders[:] = []
            continue
        visited.add(os.path.realpath(root))
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name.lower().endswith(extensions):
                path = Path(root) / name
                found[path.relative_to(folder).as_posix()] = str(path)
    return found


def list_audio_csv(csv_path: Path) -> dict[str, str]:
    """ID -> absolute path of each row of a CSV with a ``wav`` column (paths relative to the CSV's folder).

    ``ID`` is optional (default: the path as written). Rows without a path
    and IDs listed twice are reported together in one :class:`AudioListError`.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "list.csv").write_text("wav,language\\nclips/a.ogg,sw\\n/data/b.wav,sw\\n")
    >>> list(list_audio_csv(folder / "list.csv").items())[0] == ("clips/a.ogg", str(folder / "clips" / "a.ogg"))
    True
    """
    # utf-8-sig: a spreadsheet's byte-order mark would otherwise become part of the first column's name.
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = reader.fieldnames or []
    if "wav" not in columns:
        raise AudioListError(csv_path, [f"no column 'wav' (the audio files' paths); the columns are {columns}"])
    found: dict[str, str] = {}
    problems = []
    for line, row in enumerate(rows, start=2):
        wav = (row["wav"] or "").strip()
        if not wav:
            problems.append(f"line {line}: no path in the column 'wav'")
            continue
        utterance_id = (row.get("ID") or "").strip() or wav
        if utterance_id in found:
            problems.append(f"line {line}: the ID {utterance_id!r} is listed more than once")
        found[utterance_id] = str((csv_path.parent / Path(wav).expanduser()).resolve())
    if problems:
        raise AudioListError(csv_path, problems)
    return found


def split_dev(ids: list[str], dev_fraction: float) -> set[str]:
    """The IDs of the dev set: ``dev_fraction`` of ``ids`` (at least one, never all), those of lowest hash.

    A file's place depends on its ID, not on the listing's order; adding a few
    files moves a few others at most.

    Example
    -------
    >>> ids = [f"clip{i}.wav" for i in range(20)]
    >>> dev = split_dev(ids, 0.1)
    >>> len(dev), dev == split_dev(ids[::-1], 0.1)
    (2, True)
    """
    if len(ids) < 2:
        return set()
    count = min(len(ids) - 1, max(1, round(dev_fraction * len(ids))))
    return set(sorted(ids, key=lambda utterance_id: hashlib.sha256(utterance_id.encode()).hexdigest())[:count])


def segments(frames: int, rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """``(start, stop)`` frames of equal stretches of at most ``max_seconds`` covering ``frames`` (0: one stretch).

    Example
    -------
    >>> segments(25 * 8000, 8000, 10.0)
    [(0, 66667), (66667, 133333), (133333, 200000)]
    >>> segments(5 * 8000, 8000, 10.0), segments(5 * 8000, 8000, 0)
    ([(0, 40000)], [(0, 40000)])
    """
    pieces = max(1, math.ceil(frames / (max_seconds * rate))) if max_seconds > 0 and rate else 1
    bounds = [round(index * frames / pieces) for index in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _fingerprint(files: dict[str, str]) -> str:
    """Changes when a file is added, removed, renamed or rewritten."""
    digest = hashlib.sha256()
    for utterance_id, path in files.items():
        try:
            stat = os.stat(path)
            stamp = f"{stat.st_size} {stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{utterance_id}\t{path}\t{stamp}\n".encode())
    return digest.hexdigest()


def _write_csv(path: Path, rows: list[tuple]) -> None:
    """Writes a manifest through a temporary file, so that a crash never leaves half a CSV."""
    partial = path.with_suffix(".csv.partial")
    with open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    os.replace(partial, path)


def prepare_audio_folder(
    folder_or_csv: str | Path,
    save_folder: str | Path,
    dev_fraction: float = 0.05,
    max_file_seconds: float = 30.0,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
    skip_prep: bool = False,
    num_workers: int | None = None,
) -> dict[str, Path]:
    """Writes ``train.csv`` and ``dev.csv`` for the audio files of a folder tree or of a CSV's ``wav`` column.

    Every file is decoded once (durations, and what the check before training
    needs). Bad files (missing, empty, undecodable, truncated, non-finite, too
    short) are kept in ``train.csv`` as one row each: the check
    (:func:`~speechbrain_gendistill.data.audio.check_manifest`) then names all
    of them in one error, or skips them. The dev set is drawn from the good files.

    Arguments
    ---------
    folder_or_csv : str or Path
        A folder (searched recursively for ``extensions``) or a CSV file with a
        ``wav`` column (paths absolute or relative to the CSV) and optionally ``ID``.
    save_folder : str or Path
        Where the manifests and the record of what they were made from go.
    dev_fraction : float
        Share of the files held out for validation, strictly between 0 and 1.
    max_file_seconds : float
        Longer files are cut into equal stretches of at most this length (0: never cut).
    extensions : tuple of str
        File name endings (lower case) taken as audio in a folder.
    skip_prep : bool
        Only check that the manifests exist (e.g. when they were written elsewhere).
    num_workers : int, optional
        Threads decoding the audio (default: the CPU count).

    Returns
    -------
    dict
        ``train`` and ``dev`` -> their CSV paths.

    Example
    -------
    >>> import tempfile, numpy, soundfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for index in range(4):
    ...     soundfile.write(folder / f"{index}.ogg", numpy.zeros((22050 * 3, 2)), 22050)
    >>> paths = prepare_audio_folder(folder, folder / "csv", dev_fraction=0.25, max_file_seconds=2.0, num_workers=1)
    >>> [len(paths[name].read_text().splitlines()) - 1 for name in ("train", "dev")]
    [6, 2]
    """
    source, save_folder = Path(folder_or_csv).expanduser().resolve(), Path(save_folder)
    paths = {"train": save_folder / "train.csv", "dev": save_folder / "dev.csv"}
    if skip_prep:
        missing = [str(path) for path in paths.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"skip_prep is set but these manifests do not exist: {', '.join(missing)}")
        return paths
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction: {dev_fraction} is not strictly between 0 and 1")
    if source.is_dir():
        files = list_audio_folder(source, tuple(extensions))
        if not files:
            raise AudioListError(source, [f"no file ending in {', '.join(extensions)} under it"])
    elif source.is_file():
        files = list_audio_csv(source)
        if not files:
            raise AudioListError(source, ["the CSV lists no file"])
    else:
        raise AudioListError(source, [f"{source} is neither a folder nor a CSV file"])

    options = {
        "format": RECORD_FORMAT,
        "source": str(source),
        "dev_fraction": dev_fraction,
        "max_file_seconds": max_file_seconds,
        "files": _fingerprint(files),
    }
    record = save_folder / OPTIONS_RECORD
    if (
        record.is_file()
        and json.loads(record.read_text(encoding="utf-8")) == options
        and all(path.is_file() for path in paths.values())
    ):
        logger.info("audio manifests in %s are up to date, skipping preparation", save_folder)
        return paths

    logger.info("Decoding the %d audio files of %s", len(files), source)
    found = inspect_files(list(files.values()), save_folder / AUDIO_CHECK_CACHE, num_workers)
    good = {utterance_id for utterance_id, path in files.items() if audio_problem(found[path]) is None}
    dev = split_dev(sorted(good), dev_fraction)
    rows: dict[str, list[tuple]] = {"train": [], "dev": []}
    for utterance_id, path in files.items():
        result = found[path]
        stretches = segments(result["frames"], result["rate"], max_file_seconds) if utterance_id in good else []
        # A bad file stays as one row, for the check to name or skip.
        stretches = stretches or [(0, result["frames"])]
        rate = result["rate"]
        for index, (start, stop) in enumerate(stretches):
            row_id = utterance_id if len(stretches) == 1 else f"{utterance_id}#{index}"
            duration = (stop - start) / rate if rate else 0.0
            seconds = (repr(start / rate), repr(stop / rate)) if rate else ("", "")
            rows["dev" if utterance_id in dev else "train"].append((row_id, repr(duration), path, *seconds))

    save_folder.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    for name, path in paths.items():
        _write_csv(path, rows[name])
        hours = sum(float(row[1]) for row in rows[name]) / 3600
        logger.info("%s: %d rows, %.2f hours -> %s", name, len(rows[name]), hours, path)
    record.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
    return paths


def audio_folder_manifests(hparams: dict) -> dict[str, Path]:
    """A recipe's manifests of an audio folder, written by the main process and checked before any training.

    Runs :func:`prepare_audio_folder` on the main process with the recipe's
    keys (``data_folder``: the folder or CSV, ``save_folder``,
    ``dev_fraction``, ``max_file_seconds``, ``skip_prep``, ``prep_workers``),
    then checks every file (honouring ``skip_bad_audio``) with the decode of
    the preparation. Returns ``train`` (the YAML's ``train_csv``) and
    ``valid`` (``valid_csv``), each the manifest to read.
    """
    run_on_main(
        prepare_audio_folder,
        kwargs={
            "folder_or_csv": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "dev_fraction": hparams["dev_fraction"],
            "max_file_seconds": hparams["max_file_seconds"],
            "skip_prep": hparams["skip_prep"],
            "num_workers": hparams["prep_workers"],
        },
    )
    manifests = {"train": Path(hparams["train_csv"]), "valid": Path(hparams["valid_csv"])}
    return check_manifests(manifests, hparams["skip_bad_audio"])
