"""Reading audio the way every recipe here needs it, and checking a manifest before training.

:func:`load_audio` gives a 16 kHz mono float tensor whatever the file holds.
:func:`check_manifest` decodes every file of a SpeechBrain CSV once, in
parallel, before any training: it lists every bad file in one error (or, with
``skip_bad_audio``, warns per file and writes a manifest without them), and
remembers what it checked so that a rerun does not decode again.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.frames import DEFAULT_CONV_LAYERS, receptive_field

logger = logging.getLogger(__name__)

# The fewest samples wav2vec 2.0's CNN makes one frame of.
MIN_SAMPLES = receptive_field(DEFAULT_CONV_LAYERS)


class BadAudioError(ValueError):
    """One or more files of a manifest cannot be used; the message lists them all."""


def load_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, start: float = 0.0, stop: float | None = None
) -> torch.Tensor:
    """Reads a file (or its segment from ``start`` to ``stop`` seconds) as mono float32 at ``sample_rate``.

    Channels are averaged and the signal resampled; only the segment is decoded.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".flac")
    >>> sf.write(path, np.zeros((8000, 2)), 8000)
    >>> load_audio(path).shape, load_audio(path, start=0.25, stop=0.75).shape
    (torch.Size([16000]), torch.Size([8000]))
    """
    rate = sf.info(str(path)).samplerate if start or stop is not None else None
    first = round(start * rate) if rate else 0
    last = round(stop * rate) if rate and stop is not None else None
    data, rate = sf.read(str(path), dtype="float32", always_2d=True, start=first, stop=last)
    signal = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        signal = torchaudio.functional.resample(signal, rate, sample_rate)
    return signal


def inspect_audio(path: str, sample_rate: int = SAMPLE_RATE, min_samples: int = MIN_SAMPLES) -> dict:
    """Decodes one file; returns ``{"error": reason or None, "notes": [...]}``.

    Notes are what loading will fix on the fly (another sample rate, several channels).

    Example
    -------
    >>> inspect_audio("/nonexistent.flac")["error"]
    'file not found'
    """
    if not os.path.isfile(path):
        return {"error": "file not found", "notes": []}
    if os.path.getsize(path) == 0:
        return {"error": "empty file", "notes": []}
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        return {"error": f"not readable as audio ({error})", "notes": []}
    notes = []
    if data.shape[1] > 1:
        notes.append(f"{data.shape[1]} channels")
    if rate != sample_rate:
        notes.append(f"sample rate {rate} Hz")
    if not np.isfinite(data).all():
        return {"error": "NaN or infinite samples", "notes": notes}
    samples = math.floor(data.shape[0] * sample_rate / rate)
    if samples < min_samples:
        return {"error": f"{samples} samples at {sample_rate} Hz, fewer than {min_samples}", "notes": notes}
    return {"error": None, "notes": notes}


def _fingerprint(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def check_manifest(
    manifest: str | Path,
    skip_bad_audio: bool = False,
    resample: bool = True,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = MIN_SAMPLES,
    num_workers: int | None = None,
) -> Path:
    """Checks every audio file of a SpeechBrain CSV (columns ``ID`` and ``wav``).

    Arguments
    ---------
    manifest : str or Path
        The CSV to check.
    skip_bad_audio : bool
        False: raise :class:`BadAudioError` listing every bad file. True: one
        warning per bad file, a count, and a copy of the manifest without them.
    resample : bool
        Whether a file at another sample rate is resampled (one warning) or an error.
    sample_rate, min_samples : int
        What a usable file holds.
    num_workers : int, optional
        Decoding processes (default: the CPU count).

    Returns
    -------
    Path
        The manifest to train on: ``manifest`` itself, or ``<name>.checked.csv``
        without the bad rows when some were skipped.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> sf.write(folder / "a.wav", np.zeros(16000), 16000)
    >>> _ = (folder / "m.csv").write_text(f"ID,duration,wav\\na,1.0,{folder / 'a.wav'}\\nb,1.0,{folder / 'b.wav'}\\n")
    >>> try:
    ...     check_manifest(folder / "m.csv", num_workers=1)
    ... except BadAudioError as error:
    ...     print(str(error).splitlines()[1])
      b (.../b.wav): file not found
    >>> check_manifest(folder / "m.csv", skip_bad_audio=True, num_workers=1).name
    'm.checked.csv'
    """
    manifest = Path(manifest)
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ID", "wav"} <= set(rows[0]):
        raise ValueError(f"{manifest}: a manifest needs the columns ID and wav, found {sorted(rows[0])}")
    cache_path = manifest.with_name(manifest.name + ".audio_check.json")
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    key = f"{sample_rate}:{min_samples}"
    paths = sorted({row["wav"] for row in rows})
    fingerprints = {path: _fingerprint(path) for path in paths}
    known = cache.setdefault(key, {})
    # A missing file has no fingerprint: it is looked at again on every check.
    todo = [
        path
        for path in paths
        if fingerprints[path] is None or known.get(path, {}).get("fingerprint") != fingerprints[path]
    ]
    if todo:
        logger.info(
            "checking %d audio files of %s (%d known from an earlier check)",
            len(todo),
            manifest,
            len(paths) - len(todo),
        )
        workers = num_workers or os.cpu_count() or 1
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = list(
                    pool.map(inspect_audio, todo, [sample_rate] * len(todo), [min_samples] * len(todo), chunksize=16)
                )
        else:
            results = [inspect_audio(path, sample_rate, min_samples) for path in todo]
        for path, result in zip(todo, results, strict=True):
            known[path] = {**result, "fingerprint": fingerprints[path]}
        temporary = cache_path.with_name(f".{cache_path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(cache))
        os.replace(temporary, cache_path)
    results = known

    bad = []
    for row in rows:
        result = results[row["wav"]]
        error = result["error"]
        if error is None and not resample and any(note.startswith("sample rate") for note in result["notes"]):
            error = f"{result['notes'][-1]}, not {sample_rate} Hz (set resample to accept it)"
        if error is not None:
            bad.append((row["ID"], row["wav"], error))
    noted: dict[str, list[str]] = {}  # what loading converts -> the files it converts
    for path, result in sorted(results.items()):
        if path in fingerprints and result["notes"]:
            noted.setdefault(", ".join(result["notes"]), []).append(path)
    for notes, paths in noted.items():
        if len(paths) <= 5:
            for path in paths:
                logger.warning("%s: %s; converted to %d Hz mono when read", path, notes, sample_rate)
        else:  # a whole corpus at another rate (FSDD is 8 kHz): one line, not one per file
            logger.warning(
                "%d files (%s, ...): %s; converted to %d Hz mono when read",
                len(paths),
                ", ".join(paths[:3]),
                notes,
                sample_rate,
            )
    if not bad:
        return manifest
    listing = "\n".join(f"  {utt_id} ({path}): {reason}" for utt_id, path, reason in bad)
    if not skip_bad_audio:
        raise BadAudioError(
            f"{manifest}: {len(bad)} of {len(rows)} audio files cannot be used:\n{listing}\n"
            "Fix or remove them, or set skip_bad_audio: True to train without them."
        )
    for utt_id, path, reason in bad:
        logger.warning("skipping %s (%s): %s", utt_id, path, reason)
    logger.warning("%s: skipped %d of %d utterances with bad audio", manifest, len(bad), len(rows))
    bad_ids = {utt_id for utt_id, _, _ in bad}
    checked = manifest.with_name(manifest.stem + ".checked.csv")
    # Several DDP processes may check at once: each writes its own file, then renames it into place.
    temporary = checked.with_name(f".{checked.name}.{os.getpid()}")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if row["ID"] not in bad_ids)
    os.replace(temporary, checked)
    return checked
