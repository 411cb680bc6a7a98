"""The probes' data: SpeechBrain datasets read from the manifests, whose features come from the cache in memory.

Each dataset is a ``DynamicItemDataset`` over a split's CSV (so every column,
the targets included, comes from the manifest) with two dynamic items:
``feats`` (from the cached features: a pooled item's mean over its windows, or
a crop of them in training; or its frames [T, N, D], in half precision) and
``target`` (a class index, or CTC tokens). Every label or unit of dev and test
that training never shows is reported in one error before any training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from speechbrain.dataio.dataset import DynamicItemDataset, add_dynamic_item, set_output_keys
from speechbrain.dataio.encoder import CategoricalEncoder, CTCTextEncoder

from speechbrain_gendistill.tasks.probing.cache import CachedFeatures
from speechbrain_gendistill.tasks.probing.pooling import WindowCrop, weighted_mean


def _column(manifest: str | Path, key: str) -> list[tuple[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and key not in rows[0]:
        raise ValueError(f"{manifest}: the probe reads the column {key!r}, found {sorted(rows[0])}")
    return [(row["ID"], row[key]) for row in rows]


def transcript_units(text: str, key: str) -> list[str]:
    """A transcript's CTC units: phoneme tokens (``phn``, space-separated) or characters (``wrd``).

    Example
    -------
    >>> transcript_units("h @ l oU", "phn"), transcript_units("HI YOU", "wrd")
    (['h', '@', 'l', 'oU'], ['H', 'I', ' ', 'Y', 'O', 'U'])
    """
    return text.split() if key == "phn" else list(text)


def _check_known(manifests: dict[str, Path], key: str, known: set[str], units: bool) -> None:
    problems = []
    for manifest in manifests.values():
        for item_id, value in _column(manifest, key):
            values = transcript_units(value, key) if units else [value]
            unknown = sorted(set(values) - known)
            if not values or (units and not value.strip()):
                problems.append(f"{manifest}, {item_id}: empty {key}")
            elif unknown:
                problems.append(f"{manifest}, {item_id}: {key} never seen in training: {' '.join(map(repr, unknown))}")
    if problems:
        raise ValueError(f"{len(problems)} items cannot be trained or scored on:\n  " + "\n  ".join(problems))


def label_encoder(manifests: dict[str, Path], key: str = "label") -> CategoricalEncoder:
    """The classes of the training manifest (sorted); a dev or test label outside them is an error.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.csv").write_text("ID,label\\na,yes\\nb,no\\n")
    >>> _ = (folder / "test.csv").write_text("ID,label\\nc,maybe\\n")
    >>> label_encoder({"train": folder / "train.csv"}).encode_label("yes")
    1
    >>> label_encoder({"train": folder / "train.csv", "test": folder / "test.csv"})
    Traceback (most recent call last):
    ...
    ValueError: 1 items cannot be trained or scored on:
      .../test.csv, c: label never seen in training: 'maybe'
    """
    labels = sorted({value for _, value in _column(manifests["train"], key)})
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(labels)
    encoder.expect_len(len(labels))
    _check_known(manifests, key, set(labels), units=False)
    return encoder


def unit_encoder(manifests: dict[str, Path], key: str, blank_index: int = 0) -> CTCTextEncoder:
    """The CTC outputs: the blank, then every unit (phoneme or character) the transcripts hold, sorted.

    The inventory is the task's, as a fixed list of phonemes or characters
    would be: it is read from every split, so that a rare unit only dev or test
    holds still has an output (one training never taught: it counts as an
    error when scored). An empty transcript is an error.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.csv").write_text("ID,phn\\na,h @ l oU\\n")
    >>> _ = (folder / "test.csv").write_text("ID,phn\\nb,@- l\\n")
    >>> encoder = unit_encoder({"train": folder / "train.csv", "test": folder / "test.csv"}, "phn")
    >>> len(encoder), encoder.encode_sequence(["h", "oU"])
    (6, [3, 5])
    """
    units = sorted(
        {
            unit
            for manifest in manifests.values()
            for _, text in _column(manifest, key)
            for unit in transcript_units(text, key)
        }
    )
    encoder = CTCTextEncoder()
    encoder.insert_blank(index=blank_index)
    encoder.update_from_iterable(units, sequence_input=False)
    encoder.expect_len(len(units) + 1)
    _check_known(manifests, key, set(units), units=True)  # only empty transcripts can fail here
    return encoder


def cached_dataset(
    manifest: str | Path,
    features: CachedFeatures,
    target_key: str,
    encoder: CategoricalEncoder | CTCTextEncoder,
    crop: WindowCrop | None = None,
) -> DynamicItemDataset:
    """A split's dataset: ``id``, ``feats``, ``target`` and the raw ``target_key`` column.

    ``crop`` (training only) draws a run of windows of each pooled item per
    epoch; otherwise a pooled item is the frame-weighted mean of all its windows.
    """
    dataset = DynamicItemDataset.from_csv(str(manifest))
    missing = [item_id for item_id in dataset.data_ids if item_id not in features.index]
    if missing:
        raise ValueError(f"{manifest}: {len(missing)} items are not in the feature cache, e.g. {missing[:5]}")
    if features.pooled and (crop is None or not crop.num_windows):
        means = {item: weighted_mean(features.item(item), features.frames(item)) for item in dataset.data_ids}

        def feats(item_id: str) -> torch.Tensor:
            return means[item_id]

    elif features.pooled:

        def feats(item_id: str) -> torch.Tensor:
            return crop(features.item(item_id), features.frames(item_id), item_id)

    else:

        def feats(item_id: str) -> torch.Tensor:
            return features.item(item_id)  # half precision until the head has summed the layers

    add_dynamic_item([dataset], feats, takes=["id"], provides="feats")
    if isinstance(encoder, CTCTextEncoder):

        def target(value: str) -> torch.Tensor:
            return torch.LongTensor(encoder.encode_sequence(transcript_units(value, target_key)))

    else:

        def target(value: str) -> torch.Tensor:
            return torch.LongTensor([encoder.encode_label(value)])

    add_dynamic_item([dataset], target, takes=[target_key], provides="target")
    set_output_keys([dataset], ["id", "feats", "target", target_key])
    return dataset
