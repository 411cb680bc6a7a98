#!/usr/bin/env python3
"""Rebuild the compact real-speech miniatures kept in ``data/`` from their sources.

Writes, under ``--out``:

* ``fsdd/``: every Free Spoken Digit Dataset recording converted losslessly from WAV to FLAC (8 kHz, 16-bit, mono),
  the speakers' gender/accent as ``speakers.json``, and a README with attribution and license (CC BY-SA 4.0).
* ``librispeech_sid/``: one fixed-length segment of each LibriSpeech train-clean-100 utterance (or of a
  sex-balanced subset of the speakers, ``--speakers``), laid out as
  LibriSpeech is (``<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``, 16 kHz, 16-bit), the matching lines of
  ``SPEAKERS.TXT``, and a README with attribution and license (CC BY 4.0).
* ``README.md``: an index of both folders.

Every decoded FLAC is checked sample-for-sample against its source. Only numpy and soundfile are needed; the output
is byte-for-byte reproducible given the same sources and the same libsndfile/libFLAC build.

Usage::

    python data/make_miniatures.py --fsdd ../shared/fsdd \\
        --librispeech /work/data/audio_data/librispeech_train-clean-100 --out data --seconds 11.6 --speakers 60
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import numpy as np
import soundfile as sf

FRAME_SECONDS = 0.02  # analysis frame for the silence-skipping rule (non-overlapping 20 ms frames)
TOP_DB = 30.0  # a segment starts at the first frame whose energy is within this many dB of the loudest frame
FLAC_LEVEL = 1.0  # soundfile's compression_level in [0, 1]; 1.0 is libFLAC's strongest (level 8), still lossless

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"
FSDD_COMMIT = "26eb9aa"
FSDD_LICENSE_URL = "https://creativecommons.org/licenses/by-sa/4.0/"
LIBRISPEECH_URL = "https://www.openslr.org/12"
RESEMBLYZER_URL = "https://github.com/resemble-ai/Resemblyzer"
LIBRISPEECH_LICENSE_URL = "https://creativecommons.org/licenses/by/4.0/"


def read_int16(path: Path, rate: int) -> np.ndarray:
    """Read a mono 16-bit PCM file as int16 samples, checking its format first."""
    info = sf.info(str(path))
    if info.samplerate != rate or info.channels != 1 or info.subtype != "PCM_16":
        raise ValueError(
            f"{path}: expected {rate} Hz mono PCM_16, got {info.samplerate} Hz, {info.channels} ch, {info.subtype}"
        )
    samples, _ = sf.read(str(path), dtype="int16")
    return samples


def write_flac(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write int16 samples as 16-bit FLAC and check that it decodes to exactly the same samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # start from an empty file, never patch an old one
    sf.write(str(path), samples, rate, format="FLAC", subtype="PCM_16", compression_level=FLAC_LEVEL)
    decoded, decoded_rate = sf.read(str(path), dtype="int16")
    if decoded_rate != rate or not np.array_equal(decoded, samples):
        raise RuntimeError(f"{path}: FLAC does not decode to its source samples")


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with Unix newlines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def read_fsdd_metadata(path: Path) -> dict[str, dict[str, str]]:
    """Read the ``metadata = {...}`` literal from FSDD's metadata.py without executing it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "metadata" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{path}: no `metadata = {{...}}` assignment found")


def folder_bytes(folder: Path) -> int:
    """Total size of the files under a folder, in bytes (apparent size, as stored in git)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_fsdd(src: Path, out: Path) -> tuple[int, float]:
    """Convert every FSDD WAV to FLAC; write speakers.json and README.md. Returns (files, seconds)."""
    rate = 8000
    wavs = sorted((src / "recordings").glob("*.wav"))
    total = 0
    for wav in wavs:
        samples = read_int16(wav, rate)
        write_flac(out / "recordings" / f"{wav.stem}.flac", samples, rate)
        total += len(samples)
    speakers = sorted({wav.stem.split("_")[1] for wav in wavs})
    metadata = read_fsdd_metadata(src / "metadata.py")
    table = {s: {"gender": metadata[s]["gender"], "accent": metadata[s]["accent"]} for s in speakers}
    write_text(out / "speakers.json", json.dumps(table, indent=2, sort_keys=True) + "\n")
    seconds = total / rate
    rows = "\n".join(f"| {s} | {table[s]['gender']} | {table[s]['accent']} |" for s in speakers)
    write_text(
        out / "README.md",
        f"""# Free Spoken Digit Dataset (FSDD), four speakers, as FLAC

Real human speech: English digits "zero" to "nine", 50 takes of each digit by each of {len(speakers)} speakers,
{len(wavs)} recordings ({seconds / 60:.1f} min in all), 8 kHz, 16-bit, mono, trimmed by the dataset's authors to
near-minimal silence. File names: `recordings/{{digit}}_{{speaker}}_{{take}}.flac`. FSDD's own split puts takes
0-4 in the test set and 5-49 in the training set.

`speakers.json` gives each speaker's gender and accent (taken from FSDD's `metadata.py`):

| speaker | gender | accent |
|---|---|---|
{rows}

## Source and attribution

Zohar Jackson et al., Free Spoken Digit Dataset (FSDD), {FSDD_URL} (commit {FSDD_COMMIT}), recordings of the
speakers listed above.

The files here are lossless FLAC conversions of the original WAV files (same base names): each decodes to
exactly the same samples as its WAV. Nothing else was changed.

## License

Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0), {FSDD_LICENSE_URL}.
Anything that redistributes these recordings, or audio derived from them, must keep this attribution and license
(share-alike). This license covers the data in this folder only, not the code of the repository.

Rebuilt by `data/make_miniatures.py`.
""",
    )
    return len(wavs), seconds


def segment_start(samples: np.ndarray, rate: int, length: int) -> int:
    """First sample of the segment, following the rule documented in librispeech_sid/README.md."""
    frame = round(rate * FRAME_SECONDS)
    count = len(samples) // frame  # whole frames only; a trailing partial frame is ignored
    energy = (samples[: count * frame].astype(np.float64).reshape(count, frame) ** 2).sum(axis=1)
    loud = energy >= energy.max() * 10.0 ** (-TOP_DB / 10.0)
    start = int(np.argmax(loud)) * frame  # first frame within TOP_DB of the loudest one
    return max(0, min(start, len(samples) - length))  # too short from there: end at the utterance's end


def choose_speakers(flacs: list[Path], speakers_txt: Path, count: int, length: int, rate: int) -> list[Path]:
    """``count`` utterances at least ``length`` samples long, half by women and half by men (SPEAKERS.TXT), each
    sex's speakers taken evenly spaced in numeric ID order: a fixed, balanced choice."""
    sexes = {}
    for line in speakers_txt.read_text(encoding="utf-8").splitlines():
        if not line.startswith(";") and line.count("|") >= 2:
            fields = [field.strip() for field in line.split("|")]
            sexes[fields[0]] = fields[1]
    chosen = []
    for sex, share in (("F", count // 2), ("M", count - count // 2)):
        eligible = [f for f in flacs if sexes.get(f.stem.split("-")[0]) == sex and sf.info(str(f)).frames >= length]
        eligible.sort(key=lambda flac: int(flac.stem.split("-")[0]))
        if len(eligible) < share:
            raise SystemExit(f"only {len(eligible)} speakers of sex {sex} have {length / rate:.1f} s; {share} wanted")
        chosen += [eligible[round(index * (len(eligible) - 1) / max(1, share - 1))] for index in range(share)]
    return sorted(chosen)


def build_librispeech(
    src: Path, out: Path, seconds: float, speakers_wanted: int | None = None
) -> tuple[int, float, list[str]]:
    """Cut one segment from each chosen utterance; write SPEAKERS.TXT and README.md. Returns (files, seconds, notes).

    ``speakers_wanted`` (None: every speaker) picks a sex-balanced subset of the speakers whose utterance is at
    least ``seconds`` long, for longer segments within the same size.
    """
    rate = 16000
    length = round(seconds * rate)
    notes: list[str] = []
    flacs = sorted(src.glob("*.flac"))
    if speakers_wanted is not None:
        flacs = choose_speakers(flacs, src / "SPEAKERS.TXT", speakers_wanted, length, rate)
    total = 0
    for flac in flacs:
        speaker, chapter, _ = flac.stem.split("-")
        samples = read_int16(flac, rate)
        if len(samples) < length:
            notes.append(f"{flac.stem} lasts {len(samples) / rate:.3f} s, shorter than {seconds:.1f} s: kept whole")
        start = segment_start(samples, rate, length)
        segment = samples[start : start + length]
        write_flac(out / speaker / chapter / flac.name, segment, rate)
        total += len(segment)
    speakers = {flac.stem.split("-")[0] for flac in flacs}
    speakers_txt = src / "SPEAKERS.TXT"
    if speakers_txt.exists():  # keep the header comments and the lines of the speakers present
        lines = speakers_txt.read_text(encoding="utf-8").splitlines()
        kept = [x for x in lines if x.startswith(";") or x.split("|")[0].strip() in speakers]
        write_text(out / "SPEAKERS.TXT", "\n".join(kept) + "\n")
    note_text = "".join(f"- {n}\n" for n in notes) if notes else "- none: every utterance is long enough.\n"
    chosen_text = (
        ""
        if speakers_wanted is None
        else f"\n(the {len(speakers)} speakers, {len(speakers) // 2} women and {len(speakers) - len(speakers) // 2} "
        f"men, chosen among the 251 whose utterance lasts at least {seconds:.1f} s, evenly spaced in ID order by sex)"
    )
    write_text(
        out / "README.md",
        f"""# LibriSpeech speaker-identification miniature

Real read English speech by {len(speakers)} speakers ({len(speakers)} utterances, one per speaker), for speaker
identification: one {seconds:.1f} s segment ({length} samples) of one utterance of each speaker{chosen_text}
({len(notes)} utterances shorter than that are kept whole, see below),
{total / rate / 60:.1f} min in all, 16 kHz, 16-bit, mono FLAC. Laid out as LibriSpeech is,
`<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`, without transcripts. `SPEAKERS.TXT` is LibriSpeech's
speaker table (ID, sex, subset, minutes, LibriVox reader name) restricted to these speakers.

## How the segments were cut

Each utterance is split into non-overlapping {FRAME_SECONDS * 1000:.0f} ms frames \
({round(rate * FRAME_SECONDS)} samples, from its first sample; a trailing partial frame is ignored) and each frame's
energy is the sum of its squared samples. The segment starts at the first frame whose energy is within \
{TOP_DB:.0f} dB of the utterance's loudest frame (this skips leading silence) and lasts {seconds:.1f} s. If the
utterance is too short for that, the segment instead ends at the utterance's end; an utterance shorter than
{seconds:.1f} s is kept whole. Samples are copied unchanged (no resampling, gain or dithering). Utterances kept whole:

{note_text}
## Source and attribution

Excerpts of the original recordings of LibriSpeech train-clean-100: V. Panayotov, G. Chen, D. Povey and
S. Khudanpur, "LibriSpeech: an ASR corpus based on public domain audio books", ICASSP 2015, {LIBRISPEECH_URL}.
LibriSpeech is derived from LibriVox audiobooks read by the volunteers listed in `SPEAKERS.TXT`. The
{len(flacs)} source utterances (one per speaker) were taken from the public GitHub repository resemble-ai/Resemblyzer
({RESEMBLYZER_URL}, folder `audio_data/librispeech_train-clean-100`).

## License

Creative Commons Attribution 4.0 International (CC BY 4.0), {LIBRISPEECH_LICENSE_URL}. The segments are
excerpts of the original recordings. This license covers the data in this folder only, not the code of the
repository.

Rebuilt by `data/make_miniatures.py`.
""",
    )
    return len(flacs), total / rate, notes


def write_index(
    out: Path, fsdd: tuple[int, float], libri: tuple[int, float, list[str]], seconds: float, speakers: int | None
) -> None:
    """Write the index README.md of the data folder."""
    speakers_option = f" --speakers {speakers}" if speakers else ""
    fsdd_mb = folder_bytes(out / "fsdd") / 1e6
    libri_mb = folder_bytes(out / "librispeech_sid") / 1e6
    write_text(
        out / "README.md",
        f"""# Data

Compact real human speech for the demo and the tests.

| folder | content | files | audio | size | license |
|---|---|---|---|---|---|
| `fsdd/` | spoken digits, 4 speakers, 8 kHz FLAC | {fsdd[0]} | {fsdd[1] / 60:.1f} min | {fsdd_mb:.2f} MB | \
CC BY-SA 4.0 |
| `librispeech_sid/` | one {seconds:.1f} s segment per speaker, {libri[0]} speakers, 16 kHz FLAC | {libri[0]} | \
{libri[1] / 60:.1f} min | {libri_mb:.2f} MB | CC BY 4.0 |

Sizes are the total bytes of the files in each folder (1 MB = 10^6 bytes). Each folder's README.md gives the
source, attribution and license of its data; keep them with the files.

The data's licenses are separate from the code's license: the audio in these folders is licensed under the
Creative Commons licenses above, not under the license of the code in this repository.

`make_miniatures.py` (numpy and soundfile only) rebuilds both folders byte-for-byte from the sources:

    python data/make_miniatures.py --fsdd <FSDD checkout> \\
        --librispeech <Resemblyzer>/audio_data/librispeech_train-clean-100 --out data \\
        --seconds {seconds:.1f}{speakers_option}
""",
    )


def main() -> None:
    """Parse the command line and rebuild everything."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", type=Path, required=True, help="FSDD folder holding recordings/ and metadata.py")
    parser.add_argument("--librispeech", type=Path, required=True, help="flat folder of LibriSpeech .flac files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (usually data/)")
    parser.add_argument("--seconds", type=float, required=True, help="segment length per LibriSpeech speaker")
    parser.add_argument("--speakers", type=int, default=None, help="a sex-balanced subset of speakers (default: all)")
    args = parser.parse_args()
    fsdd = build_fsdd(args.fsdd, args.out / "fsdd")
    libri = build_librispeech(args.librispeech, args.out / "librispeech_sid", args.seconds, args.speakers)
    write_index(args.out, fsdd, libri, args.seconds, args.speakers)
    for note in libri[2]:
        print("note:", note)
    print(f"fsdd: {fsdd[0]} files, {fsdd[1] / 60:.2f} min; librispeech_sid: {libri[0]} files, {libri[1] / 60:.2f} min")


if __name__ == "__main__":
    main()
