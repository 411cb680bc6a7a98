#!/usr/bin/env bash
# Quick start: installs the package at the tested versions, builds a small
# synthetic corpus and a small local WavLM teacher (random weights, saved like a
# hub model), then distils it with the tiny GenDistiller recipe and exports the
# student to <output>/distill/student.
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-results/quickstart}")"
python -m pip install --quiet --disable-pip-version-check -e . -c constraints.txt
python -m speechbrain_gendistill.corpus --folder "$out/corpus" \
    --split train-synth 6 10 --split dev-synth 2 5 --split test-synth 2 5
python - "$out/teacher" <<'PY'
import sys
from pathlib import Path

import torch
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

folder = Path(sys.argv[1])
if not (folder / "config.json").is_file():
    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=192,
                         conv_dim=(128,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8)
    WavLMModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(folder)
PY
cd recipes/LibriSpeech/distill
python train.py hparams/distill_tiny.yaml --data_folder="$out/corpus" --teacher_source="$out/teacher" \
    --target_layers="[2, 3, 4]" --output_folder="$out/distill"
echo "student exported to $out/distill/student; training log: $out/distill/train_log.txt"
