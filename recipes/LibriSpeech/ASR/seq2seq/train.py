#!/usr/bin/env python3
"""Joint CTC/attention speech recognition on a distilled student, or on an SSL teacher in its place.

    python train.py hparams/ctc_attention.yaml --data_folder=/path/to/LibriSpeech --upstream_source=/path/to/student
    torchrun --nproc_per_node=8 train.py hparams/ctc_attention.yaml --data_folder=... --upstream_source=...

``upstream_source`` is a folder exported by the distillation recipe, or a
HuggingFace wav2vec 2.0 / HuBERT / WavLM (hub name or local folder). The
encoder is frozen or fine-tuned (``freeze_upstream``) and read through
``layer_mode``; SpeechBrain's attentional RNN decoder and a CTC head share it,
trained on ``ctc_weight * CTC + (1 - ctc_weight) * NLL`` over sentencepiece
tokens, and decoded by a joint CTC/attention beam search.

Outputs in ``output_folder``: ``train_log.txt``, ``wer_<test split>.txt`` per
test split, ``wer_summary.json``, and ``asr/``, the model in SpeechBrain's
pretrained layout: ``speechbrain.inference.ASR.EncoderDecoderASR.from_hparams(source=<output_folder>/asr)``.
Running the same command again resumes from the last checkpoint.
"""

import sys

from speechbrain.utils.distributed import if_main_process

from speechbrain_gendistill.tasks.asr import CTCAttentionBrain, dataio_prepare, evaluate_test_splits, export_asr
from speechbrain_gendistill.training import fit, load_recipe, make_loaders

if __name__ == "__main__":
    hparams, run_opts = load_recipe(sys.argv[1:])
    train_data, valid_data, test_sets, tokenizer = dataio_prepare(hparams)  # every bad file or transcript stops here
    train_loader, valid_loader = make_loaders(hparams, train_data, valid_data)

    brain = CTCAttentionBrain(
        modules=hparams["modules"], hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"]
    )
    brain.tokenizer = tokenizer
    fit(brain, train_loader, valid_loader, hparams)

    evaluate_test_splits(brain, test_sets, hparams)
    if if_main_process():
        export_asr(
            hparams["export_folder"],
            CTCAttentionBrain,
            hparams,
            tokenizer,
            hparams["hparams_file"],
            hparams["overrides"],
        )
