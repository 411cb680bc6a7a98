"""The ASR recipes' data: checked manifests, the tokenizer, token pipelines; and the test on each split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import sentencepiece as spm
from speechbrain.dataio.dataset import DynamicItemDataset, set_output_keys
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.utils.distributed import if_main_process

from speechbrain_gendistill.data.librispeech import librispeech_manifests
from speechbrain_gendistill.data.pipelines import AudioCrop, load_manifest, sort_dataset, valid_dataloader
from speechbrain_gendistill.data.text import add_text_pipeline, build_tokenizer, check_transcripts
from speechbrain_gendistill.tasks.asr.brains import ASRBrain

logger = logging.getLogger(__name__)


Tokenizer = CTCTextEncoder | spm.SentencePieceProcessor


def dataio_prepare(
    hparams: dict,
) -> tuple[DynamicItemDataset, DynamicItemDataset, dict[str, DynamicItemDataset], Tokenizer]:
    """Writes and checks the manifests, builds the tokenizer, checks every transcript, builds the datasets.

    Returns the training and validation sets, the test sets by split name, and
    the tokenizer; every problem with the audio or the transcripts stops the
    recipe here, before training.
    """
    manifests = librispeech_manifests(hparams, hparams["test_splits"])
    tokenizer = build_tokenizer(
        hparams["tokenizer"],
        manifests["train"],
        hparams["save_folder"],
        hparams["blank_index"],
        hparams["output_neurons"],
        hparams.get("characters"),
    )
    check_transcripts(manifests.values(), tokenizer)
    whole = AudioCrop(max_duration=0, random_crop=False)
    datasets = {name: load_manifest(manifest, hparams["data_folder"], whole) for name, manifest in manifests.items()}
    keys = add_text_pipeline(list(datasets.values()), tokenizer, hparams.get("bos_index"), hparams.get("eos_index"))
    set_output_keys(list(datasets.values()), ["id", "sig", *keys])
    train = sort_dataset(datasets.pop("train"), hparams["sorting"])
    valid = datasets.pop("valid")
    return train, valid, datasets, tokenizer


def evaluate_test_splits(brain: ASRBrain, test_sets: dict[str, DynamicItemDataset], hparams: dict) -> dict:
    """Tests the best checkpoint (lowest dev WER) on each split; writes ``wer_<split>.txt`` and ``wer_summary.json``."""
    output_folder = Path(hparams["output_folder"])
    summary = {}
    for split, dataset in test_sets.items():
        brain.hparams.test_wer_file = output_folder / f"wer_{split}.txt"
        loader = valid_dataloader(dataset, hparams["test_batch_size"], hparams["num_workers"])
        brain.evaluate(loader, min_key="WER")
        summary[split] = brain.test_summary
        logger.info("%s: WER %.2f%%, CER %.2f%%", split, summary[split]["WER"], summary[split]["CER"])
    if if_main_process():
        (output_folder / "wer_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
