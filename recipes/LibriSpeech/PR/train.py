#!/usr/bin/env python3
r"""Phoneme recognition on LibriSpeech (or any folder in its layout), a frozen upstream probed on cached frames.

    python train.py hparams/pr.yaml --data_folder=/path/to/LibriSpeech --upstream_source=/path/to/student \
        --phonemizer=lexicon --lexicon=/path/to/librispeech-lexicon.txt
    python train.py hparams/pr.yaml --data_folder=... --upstream_source=... --phonemizer=espeak

The transcripts become phonemes (``speechbrain_gendistill.data.phonemes``:
a lexicon, stress stripped, or espeak-ng); the upstream's transformer layers
are computed once per split and cached; a weighted layer sum and a linear CTC
layer are trained for each of ``learning_rates``, the best on dev (PER) is
tested. Outputs in ``output_folder``: ``train_log.txt`` and ``results.json``.
"""

import sys

from speechbrain.utils.distributed import run_on_main

from speechbrain_gendistill.data.librispeech import librispeech_manifests
from speechbrain_gendistill.data.phonemes import phoneme_manifests
from speechbrain_gendistill.tasks.probing import (
    CTCProbeBrain,
    ProbeRecord,
    extract_features,
    probe_datasets,
    select_and_test,
)
from speechbrain_gendistill.training import load_recipe


def dataio_prepare(hparams):
    """LibriSpeech manifests (every bad file named), then their phonemes (every unknown word named)."""
    manifests = librispeech_manifests(hparams, [hparams["test_split"]])
    manifests = {"train": manifests["train"], "dev": manifests["valid"], "test": manifests[hparams["test_split"]]}
    kwargs = {
        "manifests": manifests,
        "save_folder": hparams["save_folder"],
        "phonemizer": hparams["phonemizer"],
        "lexicon": hparams["lexicon"],
        "espeak_voice": hparams["espeak_voice"],
        "drop_unknown_words": hparams["drop_unknown_words"],
    }
    run_on_main(phoneme_manifests, kwargs=kwargs)
    return phoneme_manifests(**kwargs)


if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    record = ProbeRecord(hparams)
    manifests = record.time("prepare", dataio_prepare, hparams)
    features = extract_features(hparams, manifests, record)  # the frozen upstream runs once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)
    select_and_test(CTCProbeBrain, datasets, encoder, hparams, run_opts, record)
