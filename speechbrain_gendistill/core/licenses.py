"""Licenses for model cards: the code's, and those of the speech corpora this project knows.

A model's weights are shaped by the data it saw (and, for a student, by its
teacher), so a card says under which terms that data came. Corpora are
recognised by the names of the splits a recipe read (LibriSpeech's
``train-clean-100``, the synthetic ``train-synth``, a folder named after FSDD);
a split that matches none is named as unknown, so that the card never implies
terms it cannot know.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

CODE_LICENSE = "Apache-2.0"


class DataLicense(NamedTuple):
    """A corpus, the split names that identify it, its license, and what that license asks of weights trained on it."""

    name: str
    splits: re.Pattern
    license: str
    terms: str


KNOWN_DATA = (
    DataLicense(
        "LibriSpeech (Panayotov et al., 2015)",
        re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$|librispeech", re.IGNORECASE),
        "CC BY 4.0",
        "credit LibriSpeech when sharing the weights or what they produce",
    ),
    DataLicense(
        "Free Spoken Digit Dataset (FSDD, Zohar Jackson et al.)",
        re.compile(r"fsdd|spoken.digit", re.IGNORECASE),
        "CC BY-SA 4.0",
        "share-alike: weights trained on these recordings are arguably an adaptation of them, so share them "
        "under CC BY-SA 4.0 (or a license it names as compatible), crediting FSDD",
    ),
    DataLicense(
        "synthetic speech made by this project (espeak-ng voices reading the project's own sentences; "
        "no recording of a person)",
        re.compile(r"-synth$"),
        f"made by this project's code, under its {CODE_LICENSE} license",
        "espeak-ng (GPL-3.0) is the program that speaks it; the corpus is not distributed but rebuilt by "
        "`python -m speechbrain_gendistill.demo.corpus`",
    ),
)


def data_licenses(splits: Iterable[str]) -> list[str]:
    """One Markdown bullet per corpus among ``splits``: its license and terms; unknown splits are listed as such.

    Example
    -------
    >>> for line in data_licenses(["train-clean-100", "dev-clean", "my-split"]):
    ...     print(line)
    - LibriSpeech (Panayotov et al., 2015): CC BY 4.0; credit LibriSpeech when sharing the weights or what they produce.
    - my-split: license unknown here; check its terms before sharing these weights.
    """
    found, unknown = {}, []
    for split in splits:
        match = next((corpus for corpus in KNOWN_DATA if corpus.splits.search(split)), None)
        if match is None:
            unknown.append(split)
        else:
            found[match.name] = match
    lines = [f"- {corpus.name}: {corpus.license}; {corpus.terms}." for corpus in found.values()]
    if unknown:
        lines.append(f"- {', '.join(unknown)}: license unknown here; check its terms before sharing these weights.")
    return lines


def card_splits(card: dict[str, Any]) -> list[str]:
    """The split names a model card records under "train data" and "dev data" (comma-separated).

    Example
    -------
    >>> card_splits({"train data": "train-clean-100, train-clean-360", "dev data": "dev-clean", "epochs": 3})
    ['train-clean-100', 'train-clean-360', 'dev-clean']
    """
    names = (name.strip() for key in ("train data", "dev data") for name in str(card.get(key) or "").split(","))
    return [name for name in names if name]


def license_section(splits: Iterable[str], teacher: str | None = None, weights_license: str | None = None) -> list[str]:
    """A model card's license paragraph (Markdown lines) for weights trained on ``splits``.

    Arguments
    ---------
    splits : iterable of str
        The splits the weights were trained and chosen on (see :func:`data_licenses`).
    teacher : str, optional
        The model they were distilled from, whose license applies to them too.
    weights_license : str, optional
        The license the weights are released under, when the project can grant
        one (it made both the weights and their data); otherwise the card says
        which terms bind them.

    Example
    -------
    >>> print("\\n".join(license_section(["train-synth"], weights_license="Apache-2.0"))[:150])
    ## License
    <BLANKLINE>
    The code that made and loads these weights is under the Apache License 2.0 (Apache-2.0). The weights are ...
    """
    lines = [
        "## License",
        "",
        f"The code that made and loads these weights is under the Apache License 2.0 ({CODE_LICENSE}).",
    ]
    if weights_license:
        lines[-1] += f" The weights are released under {weights_license}; the data they saw:"
    elif teacher:
        lines[-1] += (
            f" The weights were distilled from `{teacher}`: its license (see its model card) applies to them,"
            " and so do the licenses of the data they saw:"
        )
    else:
        lines[-1] += " The weights are subject to the licenses of the data they saw:"
    splits = list(splits)
    return [*lines, "", *(data_licenses(splits) if splits else ["- not recorded for this model"]), ""]
