#!/usr/bin/env bash
# Quick start: installs the package at the tested versions, then runs the
# embedded demo (python -m speechbrain_gendistill.demo): a synthetic
# mini-LibriSpeech, the repository's small trained WavLM teacher, GenDistiller
# and the DistilHuBERT baseline distilled from it, a CTC probe on each, and
# <output>/report.md with the comparison. Extra arguments go to the demo
# (e.g. --ablations, --train_teacher).
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-results/demo}")"
python -m pip install --quiet --disable-pip-version-check -e . -c constraints.txt
python -m speechbrain_gendistill.demo --output_folder "$out" "${@:2}"
