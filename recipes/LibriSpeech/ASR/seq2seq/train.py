#!/usr/bin/env python3
"""Joint CTC/attention speech recognition on a distilled student, or on an SSL teacher in its place.

    python train.py hparams/ctc_attention.yaml --data_folder=/path/to/LibriSpeech --student_source=/path/to/student
    torchrun --nproc_per_node=8 train.py hparams/ctc_attention.yaml --data_folder=... --student_source=...

``student_source`` is a folder exported by the distillation recipe, or a
HuggingFace wav2vec 2.0 / HuBERT / WavLM (hub name or local folder). The
encoder is frozen or fine-tuned (``freeze_student``) and read through
``layer_mode``; SpeechBrain's attentional RNN decoder and a CTC head share it,
trained on ``ctc_weight * CTC + (1 - ctc_weight) * NLL`` over sentencepiece
tokens, and decoded by a joint CTC/attention beam search.

Outputs in ``output_folder``: ``train_log.txt``, ``wer_<test split>.txt`` per
test split, ``wer_summary.json``, and ``asr/``, the model in SpeechBrain's
pretrained layout: ``speechbrain.inference.ASR.EncoderDecoderASR.from_hparams(source=<output_folder>/asr)``.
Running the same command again resumes from the last checkpoint.
"""

import sys

from speechbrain_gendistill.asr import CTCAttentionBrain, run_asr_recipe

if __name__ == "__main__":
    run_asr_recipe(sys.argv[1:], CTCAttentionBrain)
