"""Reading audio the way every recipe here needs it, and checking every file of a manifest before training.

:func:`load_audio` gives a 16 kHz mono float tensor whatever the file holds (or
a stretch of it). :func:`inspect_files` decodes files once, in parallel, and
remembers by size and modification time what it found, so that the data
preparation (which needs durations) and the check before training
(:func:`check_manifest`, which needs to know every bad file) share one decode:
one pass names every missing, empty, undecodable, truncated, non-finite or too
short file together.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from speechbrain.utils.distributed import run_on_main

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.frames import DEFAULT_CONV_LAYERS, receptive_field

logger = logging.getLogger(__name__)

# The fewest samples wav2vec 2.0's CNN makes one frame of.
MIN_SAMPLES = receptive_field(DEFAULT_CONV_LAYERS)
# What inspect_files found, kept next to the manifests; the format number changes when an entry's meaning does.
AUDIO_CHECK_CACHE = "audio_check.json"
CACHE_FORMAT = 2
# Frames decoded at a time: a long file is never held whole in memory.
BLOCK_FRAMES = 1 << 18
# WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_EXTENSIBLE: formats whose frames have a fixed size.
UNCOMPRESSED_WAV_TAGS = (1, 3, 0xFFFE)


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


def declared_wav_frames(path: str) -> int | None:
    """Frames that an uncompressed RIFF/WAVE file's ``data`` chunk claims to hold (None: not such a file).

    libsndfile trims a WAV file's frame count to what the file holds, so a cut
    copy reads as a shorter, valid file; the header still says how long it was.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".wav")
    >>> sf.write(path, np.zeros((1000, 2)), 16000, subtype="PCM_16")
    >>> declared_wav_frames(path), sf.info(path).frames
    (1000, 1000)
    >>> with open(path, "r+b") as handle:
    ...     _ = handle.truncate(os.path.getsize(path) - 400)
    >>> declared_wav_frames(path), sf.info(path).frames
    (1000, 900)
    """
    block_align = None
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while len(chunk := handle.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"fmt ":
                fmt = handle.read(min(size, 16))
                if len(fmt) < 16 or int.from_bytes(fmt[:2], "little") not in UNCOMPRESSED_WAV_TAGS:
                    return None
                block_align = int.from_bytes(fmt[12:14], "little")
                handle.seek(size - len(fmt) + size % 2, os.SEEK_CUR)
            elif name == b"data":
                # 0 and 0xFFFFFFFF: a streaming writer that never knew the length.
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                handle.seek(size + size % 2, os.SEEK_CUR)
    return None


def inspect_audio(path: str) -> dict:
    """Decodes one file block by block; returns what was found.

    Returns ``{"problem": label or None, "detail": str, "frames": decoded
    frames, "rate": Hz, "channels": n}``; the label is one of ``file not
    found``, ``empty file``, ``not readable as audio``, ``truncated or
    corrupt`` (decoding failed, or fewer frames than the header announces)
    and ``NaN or infinite samples``. Whether the file is long enough depends on
    the reader: see :func:`audio_problem`.

    Example
    -------
    >>> inspect_audio("/nonexistent.flac")["problem"]
    'file not found'
    """
    found = {"problem": None, "detail": "", "frames": 0, "rate": 0, "channels": 0}
    if not os.path.isfile(path):
        return {**found, "problem": "file not found"}
    if os.path.getsize(path) == 0:
        return {**found, "problem": "empty file"}
    try:
        handle = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        return {**found, "problem": "not readable as audio", "detail": str(error)}
    finite = True
    with handle:
        found.update(rate=handle.samplerate, channels=handle.channels)
        announced = declared_wav_frames(path) or handle.frames
        try:
            while len(block := handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
                found["frames"] += block.shape[0]
                finite = finite and bool(np.isfinite(block).all())
        except (sf.LibsndfileError, RuntimeError) as error:
            reason = getattr(error, "error_string", "") or str(error)
            # libsndfile gives SF_COUNT_MAX frames for a length it does not know (a streamed FLAC).
            of = f" of the {announced} frames announced" if announced < 2**62 else " (length unknown)"
            detail = f"decoding failed after {found['frames']} frames{of}: {reason}"
            return {**found, "problem": "truncated or corrupt", "detail": detail}
    if found["frames"] < announced:
        detail = f"the header announces {announced} frames, the file holds {found['frames']}"
        return {**found, "problem": "truncated or corrupt", "detail": detail}
    if not finite:
        return {**found, "problem": "NaN or infinite samples"}
    return found


def audio_problem(found: dict, sample_rate: int = SAMPLE_RATE, min_samples: int = MIN_SAMPLES) -> str | None:
    """Why a file, as :func:`inspect_audio` found it, cannot be used (None: it can); the label comes first.

    Example
    -------
    >>> audio_problem({"problem": None, "detail": "", "frames": 100, "rate": 8000, "channels": 1})
    'too short (200 samples at 16000 Hz, fewer than 400)'
    """
    if found["problem"] is not None:
        return f"{found['problem']} ({found['detail']})" if found["detail"] else found["problem"]
    samples = math.floor(found["frames"] * sample_rate / found["rate"])
    if samples < min_samples:
        return f"too short ({samples} samples at {sample_rate} Hz, fewer than {min_samples})"
    return None


def _fingerprint(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def inspect_files(paths: list[str], cache_path: str | Path, num_workers: int | None = None) -> dict[str, dict]:
    """:func:`inspect_audio` of every path, decoding only files not seen (by size and mtime) in ``cache_path``.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> sf.write(folder / "a.wav", np.zeros(800), 8000)
    >>> inspect_files([str(folder / "a.wav")], folder / "check.json", num_workers=1)[str(folder / "a.wav")]["rate"]
    8000
    """
    cache_path = Path(cache_path)
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    known = cache.get("files", {}) if cache.get("format") == CACHE_FORMAT else {}
    fingerprints = {path: _fingerprint(path) for path in dict.fromkeys(paths)}
    # A missing file has no fingerprint: it is looked for again every time, and never decoded.
    missing = {path: inspect_audio(path) for path, stamp in fingerprints.items() if stamp is None}
    todo = [
        path
        for path, stamp in fingerprints.items()
        if stamp is not None and known.get(path, {}).get("fingerprint") != stamp
    ]
    if todo:
        logger.info(
            "decoding %d audio files (%d known from an earlier check, %d not found)",
            len(todo),
            len(fingerprints) - len(todo) - len(missing),
            len(missing),
        )
        workers = num_workers or os.cpu_count() or 1
        if workers > 1 and len(todo) > 1:
            # Threads, not processes: libsndfile and numpy release the GIL, and a process forked from one
            # that runs torch (a recipe, a worker of the demo) can stall for seconds on exit.
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(inspect_audio, todo, chunksize=16))
        else:
            results = [inspect_audio(path) for path in todo]
        for path, result in zip(todo, results, strict=True):
            known[path] = {**result, "fingerprint": fingerprints[path]}
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        # Several DDP processes may write at once: each writes its own file, then renames it into place.
        temporary = cache_path.with_name(f".{cache_path.name}.{os.getpid()}")
        temporary.write_text(json.dumps({"format": CACHE_FORMAT, "files": known}))
        os.replace(temporary, cache_path)
    return {path: missing[path] if path in missing else known[path] for path in fingerprints}


def _warn_conversions(found: dict[str, dict], sample_rate: int) -> None:
    """One warning per other sample rate and per other channel count, with how many files and one example."""
    groups: dict[str, list[str]] = {}
    for path, result in sorted(found.items()):
        if result["rate"] != sample_rate:
            groups.setdefault(f"sample rate {result['rate']} Hz", []).append(path)
        if result["channels"] > 1:
            groups.setdefault(f"{result['channels']} channels", []).append(path)
    for what, paths in groups.items():
        logger.warning(
            "%d file(s) with %s (e.g. %s): converted to %d Hz mono when read", len(paths), what, paths[0], sample_rate
        )


def check_manifest(
    manifest: str | Path,
    skip_bad_audio: bool = False,
    resample: bool = True,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = MIN_SAMPLES,
    num_workers: int | None = None,
    cache_path: str | Path | None = None,
) -> Path:
    """Checks every audio file of a SpeechBrain CSV (columns ``ID`` and ``wav``; a file may span several rows).

    Arguments
    ---------
    manifest : str or Path
        The CSV to check.
    skip_bad_audio : bool
        False: raise :class:`BadAudioError` listing every bad file. True: one
        warning per skipped row, a count per reason, and a copy of the manifest without them.
    resample : bool
        Whether a file at another sample rate is resampled (with a warning) or an error.
    sample_rate, min_samples : int
        What a usable file holds.
    num_workers : int, optional
        Threads decoding the audio (default: the CPU count).
    cache_path : str or Path, optional
        What :func:`inspect_files` remembers (default: ``audio_check.json`` beside
        the manifest, where the data preparation leaves it).

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
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ID", "wav"} <= set(rows[0]):
        raise ValueError(f"{manifest}: a manifest needs the columns ID and wav, found {sorted(rows[0])}")
    cache_path = cache_path or manifest.with_name(AUDIO_CHECK_CACHE)
    found = inspect_files([row["wav"] for row in rows], cache_path, num_workers)
    problems = {path: audio_problem(result, sample_rate, min_samples) for path, result in found.items()}
    if not resample:
        for path, result in found.items():
            if problems[path] is None and result["rate"] != sample_rate:
                problems[path] = f"sample rate {result['rate']} Hz, not {sample_rate} Hz (set resample to accept it)"
    _warn_conversions({path: found[path] for path, problem in problems.items() if problem is None}, sample_rate)
    bad = [(row["ID"], row["wav"], problems[row["wav"]]) for row in rows if problems[row["wav"]] is not None]
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
    bad_files = {path: reason for _, path, reason in bad}
    logger.warning(
        "%s: skipped %d of %d utterances with bad audio (%d files), by reason:",
        manifest,
        len(bad),
        len(rows),
        len(bad_files),
    )
    # The label is what comes before any parenthesised detail.
    for label, count in sorted(Counter(reason.split(" (")[0] for reason in bad_files.values()).items()):
        logger.warning("  %s: %d file(s)", label, count)
    bad_ids = {utt_id for utt_id, _, _ in bad}
    checked = manifest.with_name(manifest.stem + ".checked.csv")
    temporary = checked.with_name(f".{checked.name}.{os.getpid()}")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if row["ID"] not in bad_ids)
    os.replace(temporary, checked)
    return checked


def check_manifests(manifests: dict[str, Path], skip_bad_audio: bool) -> dict[str, Path]:
    """:func:`check_manifest` of each manifest, on the main process; every process gets the manifests to read."""
    return {
        name: run_on_main(check_manifest, args=[manifest], kwargs={"skip_bad_audio": skip_bad_audio})
        for name, manifest in manifests.items()
    }
