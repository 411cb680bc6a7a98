"""The packed copy of the HuBERT-style teacher, and its model card.

``pack_teacher`` (the CTC teacher's, :mod:`speechbrain_gendistill.demo.teacher_ctc`)
writes the half-precision folder and the ``initial_weights.json`` from which
``initial_teacher`` rebuilds the untrained control; its card describes the CTC
teacher, so :func:`write_pack` writes its own README.md over it: what the model
is, how it was trained, on what, how well (next to the untrained weights'
figures on the same dev set and masks), and under which licenses.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from transformers import WavLMModel

from speechbrain_gendistill.core.licenses import card_splits, license_section
from speechbrain_gendistill.data.audio_folder import OPTIONS_RECORD
from speechbrain_gendistill.demo.teacher_ctc import command_line, pack_teacher

UNITS_FILE = "kmeans_units.safetensors"
INITIAL_DEV_FILE = "initial_dev.json"
MODULE = "speechbrain_gendistill.demo.teacher_hubert"
# This machine's folders, shown as placeholders in the card's command line.
PLACEHOLDERS = {"data_folder": "<audio folder>", "output_folder": "<output>", "pack_folder": "<packed>"}


def pack_config(hparams: dict) -> dict[str, Any]:
    """The packed model's config: the training config with the saved ``mask_time_prob`` (the weights are the same).

    Example
    -------
    >>> pack_config({"teacher_config": {"mask_time_prob": 0.8, "hidden_size": 8}, "saved_mask_time_prob": 0.05})
    {'mask_time_prob': 0.05, 'hidden_size': 8}
    """
    return {**hparams["teacher_config"], "mask_time_prob": hparams["saved_mask_time_prob"]}


def manifest_summary(csv_path: str | Path) -> str:
    """Files, rows (a long file may be cut into several) and minutes of audio a manifest lists.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = path.write_text("ID,duration,wav\\na.flac#0,30.0,/a.flac\\na.flac#1,30.0,/a.flac\\nb.flac,60.0,/b.flac\\n")
    >>> manifest_summary(path)
    '2 files (3 rows), 2.0 min'
    """
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    files = len({row["ID"].split("#")[0] for row in rows})
    minutes = sum(float(row["duration"]) for row in rows) / 60
    return f"{files} files{f' ({len(rows)} rows)' if len(rows) != files else ''}, {minutes:.1f} min"


def is_earlier_run(hparams: dict) -> bool:
    """True when the run's manifests were not written by ``prepare_audio_folder`` (no record of it beside them).

    So were those of a run of this recipe's earlier version, ``speechbrain_gendistill.hubert_pretraining``
    (the first trained teacher), which this code can pack once it has finished.
    """
    return not (Path(hparams["save_folder"]) / OPTIONS_RECORD).is_file()


def dev_split(hparams: dict) -> str:
    """How the dev split was drawn, for the card: its size, and by what."""
    summary = manifest_summary(hparams["valid_csv"])
    if is_earlier_run(hparams):
        return (
            f"{summary}: as listed in the run's dev.csv, written by this recipe's earlier version "
            "(`hubert_pretraining`), which held out a seeded random choice of files"
        )
    return (
        f"{summary}: a share {hparams['dev_fraction']} of the files, chosen by a hash of their IDs (not the "
        "dev split of the first teacher trained by this recipe's earlier version, `hubert_pretraining`, "
        "which held out a seeded random choice of 16 of its 251 files)"
    )


def _figures(stats: dict) -> str:
    return f"dev masked-prediction accuracy {stats['acc']:.2f}%, dev loss {stats['loss']:.3f}"


def card_fields(hparams: dict) -> dict[str, Any]:
    """What the README's table records, read from the run's checkpoints and records."""
    checkpointer = hparams["checkpointer"]
    best = checkpointer.find_checkpoint(min_key="loss").meta
    last = checkpointer.find_checkpoint(ckpt_predicate=lambda checkpoint: "loss" in checkpoint.meta).meta
    initial_record = Path(hparams["output_folder"]) / INITIAL_DEV_FILE
    initial = json.loads(initial_record.read_text()) if initial_record.is_file() else None
    model = WavLMModel.from_pretrained(hparams["trained_teacher_folder"])
    config = hparams["teacher_config"]
    return {
        "parameters": f"{sum(p.numel() for p in model.parameters()):,} (the encoder; the prediction head is dropped)",
        "layers, width": f"{model.config.num_hidden_layers}, {model.config.hidden_size}",
        "objective": (
            f"masked prediction of {hparams['num_units']} k-means units of 39-dim MFCC frames (13 + deltas + "
            f"delta-deltas, 20 ms hop, normalised per utterance); span masks: mask_prob {hparams['mask_prob']}, "
            f"length {hparams['mask_length']}; HuBERT head: final dim {hparams['final_dim']}, cosine / "
            f"{hparams['temperature']}; loss on masked frames only"
        ),
        "trained by": (
            "this recipe's earlier version (`python -m speechbrain_gendistill.hubert_pretraining` with "
            f"`--audio_folder=<audio folder>`), packed by `{command_line(MODULE, hparams, PLACEHOLDERS)}`"
            if is_earlier_run(hparams)
            else f"`{command_line(MODULE, hparams, PLACEHOLDERS)}`"
        ),
        "data": hparams.get("data_description") or "(not described)",
        # The data folder's name: what the license section recognises the corpus by.
        "train data": Path(hparams["data_folder"]).name,
        "train split": manifest_summary(hparams["train_csv"]),
        "dev split": dev_split(hparams),
        "crops, batches": (
            f"random {hparams['crop_duration']} s crops (dev: {hparams['valid_crop_duration'] or 'whole'} "
            f"utterances), batches of at most {hparams['max_batch_length']} s"
        ),
        "optimisation": (
            f"AdamW, peak lr {hparams['lr']}, linear warm-up over {hparams['warmup_fraction']:.0%} "
            "of the updates then linear decay to 0"
        ),
        "epochs, updates": f"{last['epoch']}, {last['updates']}",
        "training time": (
            f"{last['seconds'] / 60:.1f} min of training and validation on {last['threads']} CPU thread(s) "
            "(k-means fitting not included)"
        ),
        "chosen epoch (best dev loss)": f"epoch {best['epoch']} ({best['updates']} updates): {_figures(best)}",
        "last epoch": f"epoch {last['epoch']}: {_figures(last)}",
        "untrained initial weights, same dev set and masks": _figures(initial) if initial else "(not measured)",
        "reference levels": (
            f"chance {100 / hparams['num_units']:.2f}%; always answering the dev set's most frequent unit "
            f"{best['majority acc']:.2f}%"
        ),
        "initial weights": (
            f"`save_random_model` with seed {hparams['seed']} (`initial_teacher` rebuilds them from "
            "initial_weights.json)"
        ),
        "saved config": (
            f"mask_time_prob {hparams['saved_mask_time_prob']} and mask_time_length {config.get('mask_time_length')} "
            "(fine-tuning SpecAugment, as hub HuBERT configs); pretraining used explicit masks"
        ),
        "unit centroids": f"`{UNITS_FILE}` (tensor `centroids`, {hparams['num_units']} x 39)",
    }


def write_pack(hparams: dict) -> Path:
    """Writes the half-precision copy, its ``initial_weights.json``, the unit centroids and the model card."""
    trained = Path(hparams["trained_teacher_folder"])
    folder = pack_teacher(trained, hparams["pack_folder"], {}, pack_config(hparams), hparams["seed"])
    shutil.copyfile(trained / UNITS_FILE, folder / UNITS_FILE)
    fields = card_fields(hparams)
    lines = [
        "# The demo's self-supervised teacher (HuBERT-style, first iteration)",
        "",
        "A small WavLM pretrained from scratch without labels, as HuBERT's first iteration is: spans of",
        "its CNN features are replaced by a learned mask embedding and, at the masked frames, it predicts",
        "the k-means unit of each frame's MFCCs. Trained by the recipe of",
        f"`{MODULE}` (SpeechBrain's WavLM lobe and Brain), from a random model",
        "built by `speechbrain_gendistill.lobes.teacher.save_random_model` as the demo's CTC teacher",
        "(`pretrained/demo_teacher`) is.",
        "Stored in half precision; `speechbrain_gendistill.demo.teacher_ctc.unpack_teacher` writes the",
        "full-precision folder that `SSLTeacher` and the recipes load like a hub model.",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in fields.items()),
        "",
        *license_section(card_splits(fields)),
    ]
    (folder / "README.md").write_text("\n".join(lines))
    return folder
