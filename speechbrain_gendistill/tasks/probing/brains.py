"""The probes' Brains: a head trained on cached features, the epoch of best dev metric kept in memory.

Both override ``compute_forward``, ``compute_objectives`` and the ``on_stage_*``
hooks only. A batch holds ``feats`` (pooled [B, N, D], or each item's frames
[T, N, D], which the head pads) and ``target``. After ``fit``, ``best_dev``
and ``best_epoch`` tell the best validation epoch, whose weights
``evaluate`` restores before testing; after ``evaluate``, ``test_value`` and
``test_outcomes`` (per item: 0/1, or [edit errors, reference length]) are set.

Expected in ``hparams``: ``train_logger``; with a crop of pooled windows,
``train_crop`` (its epoch is set at each training epoch); for CTC,
``blank_index``, ``target_key`` (``phn``: phoneme tokens; ``wrd``:
characters, scored in words) and ``error_stats`` (metric name -> an
``ErrorRateStats`` factory, the first one being the metric the probe is chosen on).
"""

from __future__ import annotations

import copy

import speechbrain as sb
import torch.nn.functional as F
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.nnet.losses import ctc_loss


class ProbeBrain(sb.Brain):
    """What both probes share: the dev metric per epoch, the best epoch's weights, the test outcomes.

    Subclasses set ``metric_name``, ``higher_is_better`` and ``collate_kwargs``;
    at validation and test they record each item in the metric objects of
    ``start_metrics``, from which ``summarize`` gives the stage's values and
    ``item_outcomes`` each item's outcome (metric name -> item id -> outcome).
    """

    metric_name = ""
    higher_is_better = True
    # How SpeechBrain's PaddedBatch collates a batch of this probe (its keyword arguments).
    collate_kwargs: dict = {}

    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TRAIN:
            crop = getattr(self.hparams, "train_crop", None)
            if crop is not None:
                crop.set_epoch(epoch)
            return
        self.start_metrics()
        if stage == sb.Stage.TEST and getattr(self, "best_state", None) is not None:
            self.modules.load_state_dict(self.best_state)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        values = self.summarize()
        value = values[self.metric_name]
        if stage == sb.Stage.VALID:
            if getattr(self, "best_epoch", None) is None or self.better(value, self.best_dev):
                self.best_dev, self.best_epoch = value, epoch
                self.best_state = copy.deepcopy(self.modules.state_dict())
            self.dev_history = [*getattr(self, "dev_history", []), value]
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                stats_meta={"lr": lr, "epoch": epoch},
                train_stats={"loss": self.train_loss},
                valid_stats={"loss": stage_loss, **values},
            )
        else:
            self.test_value, self.test_values = value, values
            self.test_outcomes = self.item_outcomes()
            self.hparams.train_logger.log_stats(
                stats_meta={"lr": self.optimizer.param_groups[0]["lr"], "epoch loaded": self.best_epoch},
                test_stats={"loss": stage_loss, **values},
            )

    def better(self, value: float, than: float) -> bool:
        return value > than if self.higher_is_better else value < than

    def start_metrics(self) -> None:
        raise NotImplementedError

    def summarize(self) -> dict[str, float]:
        raise NotImplementedError

    def item_outcomes(self) -> dict[str, dict]:
        raise NotImplementedError


class ClassificationProbeBrain(ProbeBrain):
    """Utterance classification (keywords, speakers): cross-entropy, accuracy in percent."""

    metric_name = "accuracy"
    higher_is_better = True
    collate_kwargs = {"padded_keys": []}  # pooled features have one shape: stacking is much cheaper than padding

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        return self.modules.head(batch.feats)

    def compute_objectives(self, predictions, batch, stage):
        targets = batch.target.view(-1)
        if stage != sb.Stage.TRAIN:
            correct = (predictions.argmax(-1) == targets).int().tolist()
            self.correct.update(zip(batch.id, correct, strict=True))
        return F.cross_entropy(predictions, targets)

    def start_metrics(self) -> None:
        self.correct: dict[str, int] = {}

    def summarize(self) -> dict[str, float]:
        return {"accuracy": 100.0 * sum(self.correct.values()) / max(len(self.correct), 1)}

    def item_outcomes(self) -> dict[str, dict]:
        return {"accuracy": dict(self.correct)}


class CTCProbeBrain(ProbeBrain):
    """Frame-level CTC (phonemes, characters): greedy decoding, error rates in percent (lower is better).

    The Brain's ``tokenizer`` (a ``CTCTextEncoder``) is set by the probe.
    """

    higher_is_better = False
    collate_kwargs = {
        "padded_keys": ["target"],
        "nonpadded_stack": False,
    }  # the head pads frames once layers are summed

    @property
    def metric_name(self) -> str:
        return next(iter(self.hparams.error_stats))

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        return self.modules.head([frames.to(self.device) for frames in batch.feats])

    def compute_objectives(self, predictions, batch, stage):
        log_probs, lengths = predictions
        tokens, token_lens = batch.target
        loss = ctc_loss(log_probs, tokens, lengths, token_lens, self.hparams.blank_index)
        if stage != sb.Stage.TRAIN:
            decoded = ctc_greedy_decode(log_probs, lengths, blank_id=self.hparams.blank_index)
            hypotheses = [self.units(self.tokenizer.decode_ndim(sequence)) for sequence in decoded]
            references = [self.units(text) for text in getattr(batch, self.hparams.target_key)]
            for stats in self.error_stats.values():
                stats.append(batch.id, hypotheses, references)
        return loss

    def units(self, text: str | list[str]) -> list[str]:
        """What is scored: phoneme tokens, or the words of a character sequence."""
        if self.hparams.target_key == "wrd":
            return "".join(text).split()
        return text.split() if isinstance(text, str) else list(text)

    def start_metrics(self) -> None:
        self.error_stats = {name: factory() for name, factory in self.hparams.error_stats.items()}

    def summarize(self) -> dict[str, float]:
        return {name: stats.summarize("error_rate") for name, stats in self.error_stats.items()}

    def item_outcomes(self) -> dict[str, dict]:
        return {
            name: {score["key"]: [score["num_edits"], score["num_ref_tokens"]] for score in stats.scores}
            for name, stats in self.error_stats.items()
        }


def layer_weights(brain: ProbeBrain) -> list[float]:
    """The learned softmax weight of each layer of a probe's head."""
    return [round(weight, 4) for weight in brain.modules.head.mixer.layer_weights().tolist()]
