#!/usr/bin/env python3
"""Character CTC speech recognition as a probe of a frozen upstream, on cached frames.

    python train.py hparams/asr_probe.yaml --data_folder=/path/to/LibriSpeech --upstream_source=/path/to/student

The upstream's transformer layers are computed once per split and cached; a
weighted layer sum, a small BiLSTM and a linear CTC layer are trained for each
of ``learning_rates``, the best on dev (WER) is tested (WER and CER). Outputs in
``output_folder``: ``train_log.txt`` and ``results.json``. The full ASR system,
with its export, is ``recipes/LibriSpeech/ASR/CTC``.
"""

import sys

from speechbrain_gendistill.data.librispeech import librispeech_manifests
from speechbrain_gendistill.tasks.probing import (
    CTCProbeBrain,
    ProbeRecord,
    extract_features,
    probe_datasets,
    select_and_test,
)
from speechbrain_gendistill.training import load_recipe


def dataio_prepare(hparams):
    """LibriSpeech manifests, every bad file named (train, dev and the test split)."""
    manifests = librispeech_manifests(hparams, [hparams["test_split"]])
    return {"train": manifests["train"], "dev": manifests["valid"], "test": manifests[hparams["test_split"]]}


if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    record = ProbeRecord(hparams)
    manifests = record.time("prepare", dataio_prepare, hparams)
    features = extract_features(hparams, manifests, record)  # the frozen upstream runs once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)
    select_and_test(CTCProbeBrain, datasets, encoder, hparams, run_opts, record)
