"""Model cards of exported students: the hub's YAML front matter, how the student was distilled, its results.

Every export (the student folder, the ``transformers`` HuBERT folder, the
SpeechBrain inference folder) writes a ``README.md`` by :func:`model_card`:
metadata the hub reads (license, library, tags, datasets, metrics, base
model), how to load it, the facts of the distillation as a table, and the
measured results when given. :func:`read_model_card` reads the facts and
results back, so that a re-export of a student folder keeps them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCardData

from speechbrain_gendistill.core.hub import is_hub_id

FACTS_HEADER = "| field | value |"
RESULTS_HEADER = "| result | value |"
STUDENT_KINDS = {"GenDistillStudent": "gendistiller", "DistilHuBERTStudent": "distilhubert"}
LIBRISPEECH_SPLITS = {
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
}
LIBRISPEECH = "openslr/librispeech_asr"
# What well-known teachers were pretrained on, as hub datasets (WavLM Base+'s 60k h of Libri-Light has no hub id).
TEACHER_DATASETS = {
    "facebook/hubert-base-ls960": [LIBRISPEECH],
    "facebook/wav2vec2-base": [LIBRISPEECH],
    "microsoft/wavlm-base": [LIBRISPEECH],
    "microsoft/wavlm-base-plus": ["speechcolab/gigaspeech", "facebook/voxpopuli"],
}
# Hub metric names of what a card may report, found by these words in a fact's or result's name.
METRIC_WORDS = {"l1": "l1", "cosine": "cosine_similarity", "wer": "wer", "cer": "cer"}


def card_metadata(
    class_name: str,
    library_name: str,
    facts: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    license: str | None = None,
    extra_tags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The hub metadata of a student's card, from what is known of its distillation.

    ``license`` is ``unknown`` when not given (the student inherits the
    teacher's and the data's terms: set it knowingly); ``base_model`` is the
    teacher when it is a hub id; ``datasets`` are the distillation's
    (LibriSpeech split names) and the teacher's pretraining data when known.

    Example
    -------
    >>> meta = card_metadata("GenDistillStudent", "speechbrain",
    ...     {"teacher": "microsoft/wavlm-base-plus", "train data": "train-clean-100", "dev L1, layer 4": 0.3})
    >>> meta["base_model"], meta["datasets"], meta["metrics"]
    ('microsoft/wavlm-base-plus', ['openslr/librispeech_asr', 'speechcolab/gigaspeech', 'facebook/voxpopuli'], ['l1'])
    """
    teacher = str(facts.get("teacher", ""))
    splits = [split.strip() for split in str(facts.get("train data", "")).split(",") if split.strip()]
    datasets = [LIBRISPEECH] if splits and set(splits) <= LIBRISPEECH_SPLITS else []
    datasets += [name for name in TEACHER_DATASETS.get(teacher, []) if name not in datasets]
    names = " ".join([*facts, *(results or {})]).lower()
    metrics = [metric for word, metric in METRIC_WORDS.items() if re.search(rf"\b{word}\b", names)]
    tags = ["speech", "audio", "self-supervised-learning", "distillation", STUDENT_KINDS.get(class_name, class_name)]
    data = ModelCardData(
        license=license or "unknown",
        library_name=library_name,
        tags=[*tags, "speechbrain-gendistill", *extra_tags],
        datasets=datasets or None,
        metrics=metrics or None,
        base_model=teacher if teacher and is_hub_id(teacher) else None,
        pipeline_tag="feature-extraction",
    )
    return data.to_dict()


def _table(header: str, rows: Mapping[str, Any]) -> list[str]:
    return [header, "| --- | --- |", *(f"| {key} | {value} |" for key, value in rows.items()), ""]


def model_card(
    title: str,
    metadata: Mapping[str, Any],
    usage: str,
    parameters: int,
    facts: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    license_lines: Sequence[str] = (),
) -> str:
    """A ``README.md``: front matter, title, how to load it, how it was distilled, results, license, configuration.

    Example
    -------
    >>> text = model_card("A student", {"license": "unknown"}, "Load it.", 1500, {"teacher": "t"}, {"test WER": 9.5})
    >>> text.splitlines()[:3]
    ['---', 'license: unknown', '---']
    >>> read_model_card_text(text)
    ({'license': 'unknown'}, {'teacher': 't'}, {'test WER': '9.5'})
    """
    lines = ["---", yaml.safe_dump(dict(metadata), sort_keys=False).strip(), "---", "", f"# {title}", ""]
    lines += [f"Parameters used at inference: {parameters:,} ({parameters / 1e6:.2f}M).", "", usage.strip(), ""]
    lines += ["## How it was distilled", "", *_table(FACTS_HEADER, facts)]
    if results:
        lines += ["## Measured results", "", *_table(RESULTS_HEADER, results)]
    lines += list(license_lines)
    if config is not None:
        lines += ["## Student configuration", "", "```json", json.dumps(dict(config), indent=2), "```", ""]
    return "\n".join(lines)


def _read_table(lines: list[str], header: str) -> dict[str, str]:
    if header not in lines:
        return {}
    rows = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        key, _, value = line.strip().strip("|").partition("|")
        rows[key.strip()] = value.strip()
    return rows


def read_model_card_text(text: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The front matter, facts and results of a card :func:`model_card` wrote (or an earlier version's card)."""
    metadata: dict[str, Any] = {}
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        front, text = text[4:].split("\n---\n", 1)
        metadata = yaml.safe_load(front) or {}
    lines = text.splitlines()
    return metadata, _read_table(lines, FACTS_HEADER), _read_table(lines, RESULTS_HEADER)


def read_model_card(folder: str | Path) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Like :func:`read_model_card_text` for ``folder/README.md``; empty when the folder has none."""
    path = Path(folder) / "README.md"
    return read_model_card_text(path.read_text(encoding="utf-8")) if path.is_file() else ({}, {}, {})
