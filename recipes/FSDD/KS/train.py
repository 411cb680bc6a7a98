#!/usr/bin/env python3
r"""Keyword spotting on FSDD's ten spoken digits, a frozen upstream probed on cached features.

    python recipes/FSDD/KS/train.py recipes/FSDD/KS/hparams/ks.yaml --upstream_source=/path/to/exported/student
    python recipes/FSDD/KS/train.py recipes/FSDD/KS/hparams/ks.yaml --upstream_source=microsoft/wavlm-base-plus \
        --test_speakers='[theo]'

(from the repository root, whose ``data/fsdd`` is the default ``data_folder``)

The upstream's transformer (or generated) layers are computed once per split
and cached; a weighted layer sum of their means over each clip and one linear
layer are trained for each of ``learning_rates``, the best on dev is tested.
Outputs in ``output_folder``: ``train_log.txt`` and ``results.json`` (accuracy,
the chosen learning rate, every rate's dev accuracy, each test clip's outcome).
"""

import sys

from speechbrain_gendistill.data.fsdd import fsdd_manifests
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
    manifests = record.time("prepare", fsdd_manifests, hparams)  # every bad file stops here
    features = extract_features(hparams, manifests, record)  # the frozen upstream runs once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)
    select_and_test(ClassificationProbeBrain, datasets, encoder, hparams, run_opts, record)
