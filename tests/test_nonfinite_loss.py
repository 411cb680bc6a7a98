"""A batch whose loss is not finite is skipped with a warning, and the run goes on."""

from __future__ import annotations

import csv

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file
from test_distill_recipe import recipe_args, run_recipe, valid_losses

from speechbrain_gendistill.data.librispeech import prepare_librispeech


def test_a_nonfinite_loss_skips_the_batch(mini_librispeech, wavlm_dir, tmp_path):
    output = tmp_path / "run"
    manifests = prepare_librispeech(mini_librispeech, output / "save", ["train-synth"], ["dev-synth"])
    # Finite samples (the audio check lets them through) so loud that the CNN overflows.
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(24000, 3e38, dtype=np.float32) * np.sign(np.sin(np.arange(24000))), 16000, "FLOAT")
    with open(manifests["train"], "a", newline="") as handle:
        csv.writer(handle).writerow(["loud-0000", 1.5, str(loud), "loud", "A LOUD ONE"])

    log = run_recipe(recipe_args("distill_tiny.yaml", mini_librispeech, wavlm_dir, output, "--skip_prep=True"))
    assert "Patience not yet exhausted" in log  # SpeechBrain counted one non-finite loss and went on
    assert "contain NaN or Inf. Setting to None" in log  # and that batch changed no weight
    assert all(np.isfinite(valid_losses(output)))
    weights = load_file(output / "student" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
