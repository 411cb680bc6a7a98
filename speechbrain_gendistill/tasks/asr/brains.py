"""The ASR Brains: CTC, and joint CTC/attention, over a frozen or fine-tuned upstream.

Both read an upstream (``hparams.ssl``: a distilled student or a teacher, see
:func:`speechbrain_gendistill.lobes.build_upstream`), train the downstream
model with its own optimiser (and the upstream with another when it is
fine-tuned), score WER and CER, and keep the checkpoint of the best dev WER.
"""

from __future__ import annotations

from collections.abc import Iterable

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_gendistill.core.frames import frame_lengths
from speechbrain_gendistill.data.text import decode_tokens
from speechbrain_gendistill.lobes.upstream import upstream_conv_layers


def _words(texts: Iterable[str]) -> list[list[str]]:
    return [text.split() for text in texts]


class ASRBrain(sb.Brain):
    """What both ASR Brains share: two optimisers, WER/CER, logging, checkpoints, test outputs.

    Expects in ``hparams``: ``model`` (the trained downstream modules),
    ``model_opt_class``, ``lr_annealing_model``; ``ssl`` (the upstream) with
    ``freeze_upstream``, and when fine-tuning ``ssl_opt_class`` and
    ``lr_annealing_ssl``; ``mixer`` (a ``LayerMixer``); ``train_logger``,
    ``error_rate_computer``, ``cer_computer``, ``epoch_counter``. The recipe sets
    ``tokenizer`` on the Brain and ``hparams.test_wer_file`` before each test split.
    """

    def frame_lengths(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """The batch's relative lengths in encoder frames, for the CTC loss, the decoder and decoding."""
        return frame_lengths(wav_lens, wavs.shape[1], upstream_conv_layers(self.hparams.ssl))

    def init_optimizers(self):
        """The downstream model's optimiser, and the SSL lobe's own one when it is fine-tuned."""
        self.model_optimizer = self.hparams.model_opt_class(self.hparams.model.parameters())
        self.optimizers_dict = {"model_optimizer": self.model_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("model_optimizer", self.model_optimizer)
        if not self.hparams.freeze_upstream:
            self.ssl_optimizer = self.hparams.ssl_opt_class(self.hparams.ssl.parameters())
            self.optimizers_dict["ssl_optimizer"] = self.ssl_optimizer
            if self.checkpointer is not None:
                # A frozen lobe never changes: only a fine-tuned one goes into checkpoints.
                self.checkpointer.add_recoverable("ssl", self.hparams.ssl)
                self.checkpointer.add_recoverable("ssl_optimizer", self.ssl_optimizer)

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.cer_metric = self.hparams.cer_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["WER"] = self.wer_metric.summarize("error_rate")
        stats["CER"] = self.cer_metric.summarize("error_rate")
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing_model(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.model_optimizer, new_lr)
            meta = {"epoch": epoch, "lr": old_lr}
            if not self.hparams.freeze_upstream:
                old_lr_ssl, new_lr_ssl = self.hparams.lr_annealing_ssl(stage_loss)
                sb.nnet.schedulers.update_learning_rate(self.ssl_optimizer, new_lr_ssl)
                meta["lr_ssl"] = old_lr_ssl
            if getattr(self.hparams, "mixer", None) is not None and self.hparams.mixer.weights is not None:
                meta["layer_weights"] = " ".join(f"{weight:.3f}" for weight in self.hparams.mixer.layer_weights())
            self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            self.test_summary = {
                "WER": stats["WER"],
                "CER": stats["CER"],
                **{key: self.wer_metric.summarize()[key] for key in SUMMARY_COUNTS},
            }
            if if_main_process():
                with open(self.hparams.test_wer_file, "w", encoding="utf-8") as handle:
                    self.wer_metric.write_stats(handle)


SUMMARY_COUNTS = ("num_scored_sents", "num_scored_tokens", "insertions", "deletions", "substitutions", "SER")


class CTCBrain(ASRBrain):
    """CTC over characters or sentencepiece tokens: ``modules.encoder`` maps waveforms to log-probabilities.

    Greedy CTC decoding (``hparams.decoding_function``) at validation and test,
    the same function ``speechbrain.inference.ASR.EncoderASR`` applies to the export.
    """

    # How export_asr lays the model out: the inference class, its modules
    # (name in the exported YAML -> key of the recipe's YAML), and the keys it needs.
    inference_class = "EncoderASR"
    export_modules = {"encoder": "encoder"}
    export_roots = ("encoder", "model", "decoding_function")

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        if stage == sb.Stage.TRAIN and hasattr(self.hparams, "wav_augment"):
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
        return self.modules.encoder(wavs, wav_lens), self.frame_lengths(wavs, wav_lens)

    def compute_objectives(self, predictions, batch, stage):
        p_ctc, frame_lens = predictions
        tokens, token_lens = batch.tokens
        if stage == sb.Stage.TRAIN and hasattr(self.hparams, "wav_augment"):
            tokens, token_lens = self.hparams.wav_augment.replicate_multiple_labels(tokens, token_lens)
        loss = self.hparams.ctc_cost(p_ctc, tokens, frame_lens, token_lens)
        if stage != sb.Stage.TRAIN:
            hypotheses = _words(decode_tokens(self.tokenizer, self.hparams.decoding_function(p_ctc, frame_lens)))
            targets = _words(batch.wrd)
            self.wer_metric.append(batch.id, hypotheses, targets)
            self.cer_metric.append(batch.id, hypotheses, targets)
        return loss


class CTCAttentionBrain(ASRBrain):
    """Joint CTC/attention: ``modules.encoder`` gives states read by ``ctc_lin`` and the attentional decoder.

    The loss is ``ctc_weight * CTC + (1 - ctc_weight) * NLL`` of the decoder
    (teacher forcing). Validation decodes with ``valid_search`` (any of
    SpeechBrain's S2S searchers; the tiny config's is greedy), the test with
    ``test_search``, the joint CTC/attention beam search that
    ``speechbrain.inference.ASR.EncoderDecoderASR`` also runs on the export.
    """

    inference_class = "EncoderDecoderASR"
    export_modules = {"encoder": "encoder", "decoder": "test_search"}
    export_roots = ("encoder", "model", "test_search")

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        if stage == sb.Stage.TRAIN and hasattr(self.hparams, "wav_augment"):
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
            tokens_bos = self.hparams.wav_augment.replicate_labels(tokens_bos)
        states = self.modules.encoder(wavs, wav_lens)
        frame_lens = self.frame_lengths(wavs, wav_lens)
        p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(states))
        decoded, _ = self.modules.dec(self.modules.emb(tokens_bos), states, frame_lens)
        p_seq = self.hparams.log_softmax(self.modules.seq_lin(decoded))
        hypotheses = None
        if stage == sb.Stage.VALID:
            hypotheses, _, _, _ = self.hparams.valid_search(states.detach(), frame_lens)
        elif stage == sb.Stage.TEST:
            hypotheses, _, _, _ = self.hparams.test_search(states.detach(), frame_lens)
        return p_ctc, p_seq, frame_lens, hypotheses

    def compute_objectives(self, predictions, batch, stage):
        p_ctc, p_seq, frame_lens, hypotheses = predictions
        tokens, token_lens = batch.tokens
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        if stage == sb.Stage.TRAIN and hasattr(self.hparams, "wav_augment"):
            tokens, token_lens = self.hparams.wav_augment.replicate_multiple_labels(tokens, token_lens)
            tokens_eos, tokens_eos_lens = self.hparams.wav_augment.replicate_multiple_labels(
                tokens_eos, tokens_eos_lens
            )
        loss_ctc = self.hparams.ctc_cost(p_ctc, tokens, frame_lens, token_lens)
        loss_seq = self.hparams.seq_cost(p_seq, tokens_eos, length=tokens_eos_lens)
        weight = self.hparams.ctc_weight
        if stage != sb.Stage.TRAIN:
            words = _words(decode_tokens(self.tokenizer, hypotheses))
            targets = _words(batch.wrd)
            self.wer_metric.append(batch.id, words, targets)
            self.cer_metric.append(batch.id, words, targets)
        return weight * loss_ctc + (1 - weight) * loss_seq
