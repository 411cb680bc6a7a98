#!/usr/bin/env python3
"""Speaker identification on VoxCeleb1 (SUPERB's SID), a frozen upstream probed on cached features.

    python train.py hparams/sid.yaml --data_folder=/path/to/VoxCeleb1 --upstream_source=/path/to/student

``iden_split.txt`` gives the splits (see ``speechbrain_gendistill.data.voxceleb``).
The upstream's layers are computed once per utterance and cached as means
over 1 s windows; training reads a random 8 s run of windows per utterance and
epoch, dev and test each utterance whole. A weighted layer sum and one linear
layer are trained for each of ``learning_rates``, the best on dev is tested.
Outputs in ``output_folder``: ``train_log.txt`` and ``results.json``.
"""

import sys

from speechbrain_gendistill.data.voxceleb import voxceleb_manifests
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
    manifests = record.time("prepare", voxceleb_manifests, hparams)  # every bad file stops here
    features = extract_features(hparams, manifests, record)  # the frozen upstream runs once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)
    select_and_test(ClassificationProbeBrain, datasets, encoder, hparams, run_opts, record)
