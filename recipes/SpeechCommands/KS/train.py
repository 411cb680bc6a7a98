#!/usr/bin/env python3
r"""Keyword spotting on Speech Commands v0.01 (SUPERB's KS), a frozen upstream probed on cached features.

    python train.py hparams/ks.yaml --data_folder=/path/to/speech_commands_v0.01 \
        --test_folder=/path/to/speech_commands_test_set_v0.01 --upstream_source=/path/to/student

Twelve classes, the archive's validation list as dev and the official test
set as test (see ``speechbrain_gendistill.data.speech_commands``). The
upstream's layers are computed once per split and cached, mean-pooled over
each clip; a weighted layer sum and one linear layer are trained for each of
``learning_rates`` on class-balanced batches, the best on dev is tested.
Outputs in ``output_folder``: ``train_log.txt`` and ``results.json``.
"""

import sys

from speechbrain_gendistill.data.speech_commands import speech_commands_manifests
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
    manifests = record.time("prepare", speech_commands_manifests, hparams)  # every bad file stops here
    features = extract_features(hparams, manifests, record)  # the frozen upstream runs once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)
    select_and_test(ClassificationProbeBrain, datasets, encoder, hparams, run_opts, record)
