#!/usr/bin/env python3
r"""Closed-set speaker identification on a folder of speakers' audio, a frozen upstream probed on cached features.

    python recipes/LibriSpeech/SID/train.py recipes/LibriSpeech/SID/hparams/sid.yaml --upstream_source=STUDENT
    python recipes/LibriSpeech/SID/train.py recipes/LibriSpeech/SID/hparams/sid.yaml --upstream_source=... \
        --data_folder=/path/to/librispeech_train-clean-100

(from the repository root, whose ``data/librispeech_sid`` is the default ``data_folder``)

``data_folder`` is a LibriSpeech-layout folder (the speaker is the top
folder) or a flat folder of ``<speaker>-<...>.flac``; every speaker is in every
split (see ``speechbrain_gendistill.data.speakers``). The upstream's layers are
computed once per split and cached, mean-pooled over windows; a weighted layer
sum and one linear layer are trained for each of ``learning_rates``, the best
on dev is tested. Outputs in ``output_folder``: ``train_log.txt`` and ``results.json``.
"""

import sys

from speechbrain_gendistill.data.speakers import speaker_manifests
from speechbrain_gendistill.tasks.probing import (
    ClassificationProbeBrain,
    ProbeRecord,
    extract_features,
    probe_datasets,
    select_and_test,
)
from speechbrain_gendistill.training import load_recipe

if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    record = ProbeRecord(hparams)
    manifests = record.time("prepare", speaker_manifests, hparams)  # every bad file stops here
    features = extract_features(hparams, manifests, record)  # the frozen upstream runs once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)
    select_and_test(ClassificationProbeBrain, datasets, encoder, hparams, run_opts, record)
