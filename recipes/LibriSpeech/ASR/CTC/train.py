#!/usr/bin/env python3
"""CTC speech recognition on a distilled student, or on an SSL teacher in its place.

    python train.py hparams/ctc.yaml --data_folder=/path/to/LibriSpeech --upstream_source=/path/to/student
    python train.py hparams/ctc_bpe.yaml --data_folder=... --upstream_source=microsoft/wavlm-base-plus
    torchrun --nproc_per_node=8 train.py hparams/ctc.yaml --data_folder=... --upstream_source=...

``upstream_source`` is a folder exported by the distillation recipe, or a
HuggingFace wav2vec 2.0 / HuBERT / WavLM (hub name or local folder), so the
teacher, the baseline and GenDistiller go through the same recipe. The encoder
is frozen or fine-tuned (``freeze_upstream``); a downstream reads its last layer
or a learned weighted sum of its layers (``layer_mode``). Characters
(``ctc.yaml``) or sentencepiece tokens (``ctc_bpe.yaml``), greedy CTC decoding.

Outputs in ``output_folder``: ``train_log.txt``, ``wer_<test split>.txt`` per
test split, ``wer_summary.json``, and ``asr/``, the model in SpeechBrain's
pretrained layout: ``speechbrain.inference.ASR.EncoderASR.from_hparams(source=<output_folder>/asr)``.
Running the same command again resumes from the last checkpoint.
"""

import sys

from speechbrain.utils.distributed import if_main_process

from speechbrain_gendistill.tasks.asr import CTCBrain, dataio_prepare, evaluate_test_splits, export_asr
from speechbrain_gendistill.training import fit, load_recipe, make_loaders

if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    train_data, valid_data, test_sets, tokenizer = dataio_prepare(hparams)  # every bad file or transcript stops here
    train_loader, valid_loader = make_loaders(hparams, train_data, valid_data)

    brain = CTCBrain(
        modules=hparams["modules"], hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"]
    )
    brain.tokenizer = tokenizer
    fit(brain, train_loader, valid_loader, hparams)

    evaluate_test_splits(brain, test_sets, hparams)
    if if_main_process():
        export_asr(
            hparams["export_folder"], CTCBrain, hparams, tokenizer, hparams["hparams_file"], hparams["overrides"]
        )
