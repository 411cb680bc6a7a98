#!/usr/bin/env python3
"""CTC speech recognition on a distilled student, or on an SSL teacher in its place.

    python train.py hparams/ctc.yaml --data_folder=/path/to/LibriSpeech --student_source=/path/to/student
    python train.py hparams/ctc_bpe.yaml --data_folder=... --student_source=microsoft/wavlm-base-plus
    torchrun --nproc_per_node=8 train.py hparams/ctc.yaml --data_folder=... --student_source=...

``student_source`` is a folder exported by the distillation recipe, or a
HuggingFace wav2vec 2.0 / HuBERT / WavLM (hub name or local folder), so the
teacher, the baseline and GenDistiller go through the same recipe. The encoder
is frozen or fine-tuned (``freeze_student``); a downstream reads its last layer
or a learned weighted sum of its layers (``layer_mode``). Characters
(``ctc.yaml``) or sentencepiece tokens (``ctc_bpe.yaml``), greedy CTC decoding.

Outputs in ``output_folder``: ``train_log.txt``, ``wer_<test split>.txt`` per
test split, ``wer_summary.json``, and ``asr/``, the model in SpeechBrain's
pretrained layout: ``speechbrain.inference.ASR.EncoderASR.from_hparams(source=<output_folder>/asr)``.
Running the same command again resumes from the last checkpoint.
"""

import sys

from speechbrain_gendistill.asr import CTCBrain, run_asr_recipe

if __name__ == "__main__":
    run_asr_recipe(sys.argv[1:], CTCBrain)
