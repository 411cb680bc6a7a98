"""Phoneme transcripts (the manifest column ``phn``) for phoneme recognition, from words.

Two ways, both offline:

- ``lexicon``: a pronunciation lexicon the user points to, one ``WORD PH1 PH2 ...``
  line per pronunciation (OpenSLR's ``librispeech-lexicon.txt``: ARPAbet with
  stress digits). The stress digits are stripped, as SUPERB's phoneme
  recognition does (39 phonemes); a word's first pronunciation is used. A word
  the lexicon lacks is an error listing every such word with how many
  utterances hold it; with ``drop_unknown_words`` those utterances are dropped
  instead, with a count and the first few named in the log.
- ``espeak``: espeak-ng's own text-to-phoneme rules and dictionary
  (:class:`~speechbrain_gendistill.data.espeak.EspeakPhonemizer`, any
  language espeak-ng has a voice for), as its ASCII phoneme mnemonics; every
  word gets phonemes.

``phn`` holds the phonemes separated by spaces, without word boundaries.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechbrain_gendistill.data.espeak import EspeakPhonemizer
from speechbrain_gendistill.data.manifests import fingerprint, write_once

logger = logging.getLogger(__name__)

PHONEMIZERS = ("lexicon", "espeak")
STRESS = re.compile(r"[0-9]+$")


class LexiconPhonemizer:
    """Words to phonemes through a pronunciation lexicon, stress digits stripped.

    Arguments
    ---------
    lexicon : str or Path
        A text file of ``WORD PH1 PH2 ...`` lines (tabs or spaces); words are
        matched case-insensitively.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "lexicon.txt"
    >>> _ = path.write_text("HELLO\\tHH AH0 L OW1\\nHELLO\\tHH EH0 L OW1\\nWORLD\\tW ER1 L D\\n")
    >>> lexicon = LexiconPhonemizer(path)
    >>> " ".join(lexicon("Hello world")), lexicon.unknown_words("hello there")
    ('HH AH L OW W ER L D', ['THERE'])
    """

    def __init__(self, lexicon: str | Path) -> None:
        self.path = Path(lexicon)
        if not self.path.is_file():
            raise FileNotFoundError(f"lexicon {self.path} not found")
        self.pronunciations: dict[str, list[str]] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) >= 2:
                self.pronunciations.setdefault(fields[0].upper(), [STRESS.sub("", phone) for phone in fields[1:]])

    def unknown_words(self, text: str) -> list[str]:
        return [word for word in text.upper().split() if word not in self.pronunciations]

    def __call__(self, text: str) -> list[str]:
        return [phone for word in text.upper().split() for phone in self.pronunciations[word]]


def _read(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    if "wrd" not in (reader.fieldnames or []):
        raise ValueError(f"{manifest}: phonemes are made from the column wrd, found {reader.fieldnames}")
    return list(reader.fieldnames), rows


def _lexicon_digest(path: str | Path | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def phoneme_manifests(
    manifests: dict[str, Path],
    save_folder: str | Path,
    phonemizer: str = "espeak",
    lexicon: str | Path | None = None,
    espeak_voice: str = "en-us",
    drop_unknown_words: bool = False,
) -> dict[str, Path]:
    """Copies of ``manifests`` (``<split>_phn.csv`` in ``save_folder``) with the column ``phn``, written once.

    Arguments
    ---------
    manifests : dict
        Split -> a manifest with the column ``wrd``.
    save_folder : str or Path
        Where the copies go.
    phonemizer : str
        ``"lexicon"`` or ``"espeak"`` (see the module docstring).
    lexicon : str or Path, optional
        The lexicon file (``phonemizer: lexicon``).
    espeak_voice : str
        The espeak-ng voice (``phonemizer: espeak``).
    drop_unknown_words : bool
        Drop the utterances holding a word the lexicon lacks, instead of stopping with an error that lists them.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.csv").write_text("ID,wrd\\na,YES\\nb,NO\\n")
    >>> paths = phoneme_manifests({"train": folder / "train.csv"}, folder, "espeak")
    >>> paths["train"].read_text().splitlines()
    ['ID,wrd,phn', 'a,YES,j E s', 'b,NO,n oU']
    """
    if phonemizer not in PHONEMIZERS:
        raise ValueError(f"phonemizer {phonemizer!r} is not one of {PHONEMIZERS}")
    if phonemizer == "lexicon" and not lexicon:
        raise ValueError("phonemizer 'lexicon' needs a lexicon file (e.g. OpenSLR's librispeech-lexicon.txt)")
    options = {
        "manifests": {split: str(path) for split, path in manifests.items()},
        "files": fingerprint(manifests.values()),
        "phonemizer": phonemizer,
        "lexicon": str(lexicon) if phonemizer == "lexicon" else None,
        "lexicon_sha256": _lexicon_digest(lexicon) if phonemizer == "lexicon" else None,
        "espeak_voice": espeak_voice if phonemizer == "espeak" else None,
        "drop_unknown_words": drop_unknown_words,
    }
    columns = [*_read(next(iter(manifests.values())))[0], "phn"]
    written = write_once(
        save_folder,
        "phonemes",
        options,
        lambda: _rows(manifests, phonemizer, lexicon, espeak_voice, drop_unknown_words),
        columns,
    )
    return {name.removesuffix("_phn"): path for name, path in written.items()}


def _rows(
    manifests: dict[str, Path], phonemizer: str, lexicon: str | Path | None, voice: str, drop_unknown_words: bool
) -> dict[str, list[dict[str, Any]]]:
    tables = {split: _read(path)[1] for split, path in manifests.items()}
    if phonemizer == "espeak":
        with EspeakPhonemizer(voice) as espeak:
            return {f"{split}_phn": _with_phonemes(rows, espeak) for split, rows in tables.items()}
    words = LexiconPhonemizer(lexicon)
    unknown: dict[str, list[str]] = defaultdict(list)
    for split, rows in tables.items():
        for row in rows:
            for word in words.unknown_words(row["wrd"]):
                unknown[word].append(f"{split}:{row['ID']}")
    if unknown and not drop_unknown_words:
        listing = "\n".join(
            f"  {word}: {len(ids)} utterance(s), e.g. {', '.join(ids[:3])}" for word, ids in sorted(unknown.items())
        )
        raise ValueError(
            f"{len(unknown)} words are not in the lexicon {lexicon}:\n{listing}\n"
            "Add them to the lexicon, or set drop_unknown_words: True to leave those utterances out."
        )
    dropped = {item for ids in unknown.values() for item in ids}
    if dropped:
        logger.warning(
            "dropped %d utterances holding words the lexicon lacks (%d words), e.g. %s",
            len(dropped),
            len(unknown),
            ", ".join(sorted(dropped)[:5]),
        )
    kept = {split: [row for row in rows if f"{split}:{row['ID']}" not in dropped] for split, rows in tables.items()}
    return {f"{split}_phn": _with_phonemes(rows, words) for split, rows in kept.items()}


def _with_phonemes(rows: list[dict[str, str]], phonemize: Callable[[str], list[str]]) -> list[dict[str, Any]]:
    return [{**row, "phn": " ".join(phonemize(row["wrd"]))} for row in rows]
