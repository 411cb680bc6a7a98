"""Speech recognition on a distilled student, or on any SSL teacher in its place.

The pieces the ASR recipes (``recipes/LibriSpeech/ASR``) are made of:

- the encoder: :func:`ssl_lobe` builds a frozen or fine-tuned SSL lobe from
  an exported student folder (:class:`~speechbrain_gendistill.export.DistilledSSL`)
  or from a HuggingFace model (SpeechBrain's wav2vec 2.0 / HuBERT / WavLM lobes),
  always returning every layer, so that the teacher, the baseline and
  GenDistiller go through the same recipe; :class:`LayerMixer` reduces the
  layers to one sequence (the last one, or SUPERB's learned weighted sum);
- the text: characters (SpeechBrain's ``CTCTextEncoder``) or sentencepiece
  tokens (``speechbrain.tokenizers.SentencePiece``), and a check of every
  transcript before training (:func:`check_transcripts`);
- the Brains: :class:`CTCBrain` and :class:`CTCAttentionBrain`;
- the export to SpeechBrain's pretrained-model layout (:func:`export_asr`), which
  ``speechbrain.inference.ASR.EncoderASR`` / ``EncoderDecoderASR`` load offline.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ruamel.yaml
import sentencepiece as spm
import speechbrain as sb
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update
from speechbrain.dataio.dataset import DynamicItemDataset, add_dynamic_item, set_output_keys
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.nnet.containers import LengthsCapableSequential
from speechbrain.utils.distributed import if_main_process, run_on_main
from torch import nn
from transformers import AutoConfig

from speechbrain_gendistill.audio_check import check_manifest
from speechbrain_gendistill.components import ConvSpec, conv_output_lengths, relative_to_absolute
from speechbrain_gendistill.data import (
    AudioCrop,
    duration_batch_sampler,
    load_manifest,
    sort_dataset,
    train_dataloader,
    valid_dataloader,
)
from speechbrain_gendistill.export import CONFIG_FILE, EXPORT_FORMAT, DistilledSSL, export_config
from speechbrain_gendistill.librispeech_prepare import prepare_librispeech
from speechbrain_gendistill.teacher import TEACHER_LOBES

logger = logging.getLogger(__name__)

LAYER_MODES = ("last", "weighted")
PROBE_SAMPLES = 4000  # a quarter of a second: enough frames for any of the supported encoders


# ---------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------


def _is_exported_student(source: str) -> bool:
    config_path = Path(source) / CONFIG_FILE
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and config.get("format") == EXPORT_FORMAT


def ssl_lobe(source: str, freeze: bool = True, save_path: str = "", output_norm: bool = False) -> nn.Module:
    """The SSL encoder of an ASR recipe: a distilled student, or a teacher in its place.

    Returns a lobe with SpeechBrain's HF SSL contract whose ``forward(wavs,
    wav_lens)`` gives every layer, [N, B, T, D].

    Arguments
    ---------
    source : str
        An exported student folder (read by ``DistilledSSL``), or a HuggingFace
        wav2vec 2.0 / HuBERT / WavLM model (hub name or local folder, read by
        SpeechBrain's lobe for that model type).
    freeze : bool
        Frozen features, or fine-tuning (the recipe then gives the lobe its own optimiser).
        A HuggingFace model is fine-tuned without LayerDrop.
    save_path : str
        Download cache of a hub model.
    output_norm : bool
        Layer-normalise the outputs (passed to the lobe).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> from speechbrain_gendistill.student import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> lobe = ssl_lobe(str(export_student(student, tempfile.mkdtemp())))
    >>> lobe(torch.randn(2, 1600), torch.tensor([1.0, 0.5])).shape
    torch.Size([3, 2, 159, 24])
    >>> try:
    ...     ssl_lobe(tempfile.mkdtemp())
    ... except ValueError as error:
    ...     print(str(error).split("' ")[1][:48])
    is neither an exported student (config.json with
    """
    source = str(source)
    if _is_exported_student(source):
        return DistilledSSL(
            source=source, save_path=save_path, freeze=freeze, output_norm=output_norm, output_all_hiddens=True
        )
    try:
        model_type = AutoConfig.from_pretrained(source, cache_dir=save_path or None).model_type
    except (OSError, ValueError) as error:
        raise ValueError(
            f"student_source {source!r} is neither an exported student ({CONFIG_FILE} with format "
            f"{EXPORT_FORMAT!r}) nor a HuggingFace wav2vec 2.0 / HuBERT / WavLM model: {error}"
        ) from error
    if model_type not in TEACHER_LOBES:
        raise ValueError(
            f"student_source {source!r} is a {model_type!r} model; supported: an exported student, "
            f"or one of {sorted(TEACHER_LOBES)}"
        )
    lobe = TEACHER_LOBES[model_type](
        source, save_path=save_path, freeze=freeze, output_norm=output_norm, output_all_hiddens=True
    )
    # HF's LayerDrop skips layers in training, and a skipped layer gives no hidden state:
    # the number of layers returned would change from batch to batch.
    lobe.model.config.layerdrop = 0.0
    return lobe


def _probe(ssl: nn.Module) -> torch.Size:
    wavs = torch.zeros(1, PROBE_SAMPLES, device=next(ssl.parameters()).device)
    with torch.no_grad():
        return ssl(wavs, torch.ones(1, device=wavs.device)).shape


def ssl_num_layers(ssl: nn.Module) -> int:
    """How many layers an SSL lobe returns (1 when it returns [B, T, D] only), measured by a short forward pass.

    Example
    -------
    >>> from speechbrain_gendistill.student import GenDistillStudent
    >>> ssl_num_layers(GenDistillStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4,
    ...     output_all_hiddens=True))
    3
    """
    shape = _probe(ssl)
    return shape[0] if len(shape) == 4 else 1


def ssl_feature_dim(ssl: nn.Module) -> int:
    """The width D of an SSL lobe's features, measured by a short forward pass.

    Example
    -------
    >>> from speechbrain_gendistill.student import DistilHuBERTStudent
    >>> ssl_feature_dim(DistilHuBERTStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4))
    16
    """
    return _probe(ssl)[-1]


def ssl_conv_layers(ssl: nn.Module) -> ConvSpec:
    """The (channels, kernel, stride) of an SSL lobe's waveform CNN, which set its frame count.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> from speechbrain_gendistill.student import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> ssl_conv_layers(DistilledSSL(source=str(export_student(student, tempfile.mkdtemp()))))
    [(16, 10, 5), (16, 3, 2)]
    """
    if isinstance(ssl, DistilledSSL):
        return ssl.model.frontend.conv_layers
    config = ssl.model.config
    return list(zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=True))


def frame_lengths(wav_lens: torch.Tensor, num_samples: int, conv_layers: ConvSpec) -> torch.Tensor:
    """Relative lengths of a batch in encoder frames, from its relative lengths in samples.

    Rescaling a relative length in samples to frames can round one padding frame
    into a shorter item, or drop a valid one; counting each item's frames through
    the CNN cannot. A quarter of a frame is added, so that ``lengths * T`` gives
    the frame count both to SpeechBrain's code that rounds it (CTC loss,
    attention, decoding) and to the code that truncates it (RNN packing).

    Example
    -------
    >>> conv = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2  # 49 frames per second
    >>> lens = torch.tensor([1.0, 490 / 16000, 15834 / 16000])
    >>> (lens * 49).round().int().tolist()  # rescaled: one frame too many, then one too few
    [49, 2, 48]
    >>> counted = frame_lengths(lens, 16000, conv) * 49  # counted through the CNN
    >>> counted.round().int().tolist(), counted.int().tolist()
    ([49, 1, 49], [49, 1, 49])
    """
    samples = relative_to_absolute(wav_lens, num_samples, wav_lens.shape[0]).to(wav_lens.device)
    frames = conv_output_lengths(samples, conv_layers)
    total = conv_output_lengths(torch.tensor([num_samples], device=wav_lens.device), conv_layers)
    return (frames.float() + 0.25) / total.float()


class SSLEncoder(LengthsCapableSequential):
    """The ASR encoder: an SSL lobe, then downstream layers that read lengths in encoder frames.

    SpeechBrain's ``LengthsCapableSequential`` hands every layer the batch's
    relative lengths in samples; here the layers after the first (the SSL lobe)
    get :func:`frame_lengths` instead, so that a recurrent layer packs each
    utterance's exact frames and a batched utterance is encoded as it is alone.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.nnet.RNN import LSTM
    >>> from speechbrain_gendistill.export import export_student
    >>> from speechbrain_gendistill.student import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> ssl = DistilledSSL(source=str(export_student(student, tempfile.mkdtemp())))
    >>> lstm = LSTM(hidden_size=8, input_shape=[None, None, 24], bidirectional=True)
    >>> wavs = torch.randn(2, 1600)  # the second item: 928 samples (91 frames), then padding
    >>> def batched_and_alone(encoder):
    ...     return encoder(wavs, torch.tensor([1.0, 0.58]))[1, :91], encoder(wavs[1:, :928], torch.ones(1))[0]
    >>> batched, alone = batched_and_alone(SSLEncoder(ssl, lstm).eval())
    >>> alone.shape[0], bool((batched - alone).abs().max() < 1e-5)
    (91, True)
    >>> batched, alone = batched_and_alone(LengthsCapableSequential(ssl, lstm).eval())  # packs 92 frames
    >>> bool((batched - alone).abs().max() < 1e-5)
    False
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        num_samples = x.shape[1]
        for index, (layer, lengths_arg) in enumerate(zip(self.values(), self.lengths_arg_names, strict=True)):
            x = layer(x, **{lengths_arg: lengths}) if lengths_arg is not None else layer(x)
            if isinstance(x, tuple):
                x = x[0]
            if index == 0 and lengths is not None:
                lengths = frame_lengths(lengths, num_samples, ssl_conv_layers(layer))
        return x


class LayerMixer(nn.Module):
    """Reduces an SSL lobe's stacked layers [N, B, T, D] to the one sequence [B, T, D] a downstream model reads.

    Arguments
    ---------
    num_layers : int
        N, the number of layers the lobe returns.
    layer_mode : str
        ``"last"``: the last layer (for GenDistiller, the last generated one).
        ``"weighted"``: a softmax-weighted sum with one learned weight per layer,
        SUPERB's protocol for frozen upstreams.
    normalize : bool
        Layer-normalise each layer (no affine parameters) before the weighted sum.

    Example
    -------
    >>> hiddens = torch.randn(3, 2, 10, 8)
    >>> torch.equal(LayerMixer(3, "last")(hiddens), hiddens[-1])
    True
    >>> mixer = LayerMixer(3, "weighted")
    >>> torch.allclose(mixer(hiddens), hiddens.mean(0), atol=1e-6)
    True
    >>> [round(weight, 3) for weight in mixer.layer_weights().tolist()]
    [0.333, 0.333, 0.333]
    """

    def __init__(self, num_layers: int, layer_mode: str = "last", normalize: bool = False) -> None:
        super().__init__()
        if layer_mode not in LAYER_MODES:
            raise ValueError(f"layer_mode {layer_mode!r} is not one of {LAYER_MODES}")
        self.num_layers = int(num_layers)
        self.layer_mode = layer_mode
        self.normalize = normalize
        # Zeros: every layer starts with the same weight, as in SUPERB.
        self.weights = nn.Parameter(torch.zeros(self.num_layers)) if layer_mode == "weighted" else None

    def layer_weights(self) -> torch.Tensor:
        """The weight of each layer in the sum (one-hot on the last layer in ``"last"`` mode)."""
        if self.weights is None:
            return F.one_hot(torch.tensor(self.num_layers - 1), self.num_layers).float()
        return self.weights.detach().softmax(0)

    def forward(self, hiddens: torch.Tensor) -> torch.Tensor:
        """[N, B, T, D] (or [B, T, D] from a lobe that gives only its last layer) -> [B, T, D]."""
        if hiddens.dim() == 3:
            hiddens = hiddens.unsqueeze(0)
        if hiddens.shape[0] != self.num_layers:
            raise ValueError(f"the SSL lobe gave {hiddens.shape[0]} layers, the LayerMixer expects {self.num_layers}")
        if self.weights is None:
            return hiddens[-1]
        if self.normalize:
            hiddens = F.layer_norm(hiddens, hiddens.shape[-1:])
        return torch.einsum("n,nbtd->btd", self.weights.softmax(0), hiddens)


# ---------------------------------------------------------------------------
# The text
# ---------------------------------------------------------------------------

Tokenizer = CTCTextEncoder | spm.SentencePieceProcessor


class TranscriptError(ValueError):
    """One or more transcripts cannot be trained or scored on; the message lists them all."""


def _read_transcripts(manifest: str | Path) -> list[tuple[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ID", "wrd"} <= set(rows[0]):
        raise ValueError(f"{manifest}: an ASR manifest needs the columns ID and wrd, found {sorted(rows[0])}")
    return [(row["ID"], row["wrd"]) for row in rows]


def build_tokenizer(
    tokenizer: CTCTextEncoder | Callable,
    train_csv: str | Path,
    save_folder: str | Path,
    blank_index: int,
    output_neurons: int,
    characters: str | None = None,
) -> Tokenizer:
    """Creates (or reloads) the recipe's tokenizer.

    Arguments
    ---------
    tokenizer : CTCTextEncoder or callable
        The YAML's ``tokenizer``: an empty ``CTCTextEncoder`` (characters), or
        ``!name:speechbrain.tokenizers.SentencePiece.SentencePiece`` with its
        options, called here with ``annotation_train``.
    train_csv : path
        The training manifest (column ``wrd``).
    save_folder : path
        Where the character list is kept (the sentencepiece model goes to its own ``model_dir``).
    blank_index : int
        The CTC blank (characters only; with sentencepiece it is the unknown piece's index).
    output_neurons : int
        The model's number of outputs: the number of tokens (the CTC blank
        included) with sentencepiece or ``characters``, at least that otherwise.
    characters : str, optional
        The character inventory (plus the blank), in this order; without it,
        the characters of the training transcripts. A fixed inventory gives
        every output a label, and a transcript with another character is
        reported by :func:`check_transcripts`.

    Returns
    -------
    CTCTextEncoder or sentencepiece.SentencePieceProcessor
        What ``speechbrain.inference.ASR`` expects as ``tokenizer``.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.csv").write_text("ID,wrd\\na,HELLO WORLD\\n")
    >>> encoder = build_tokenizer(CTCTextEncoder(), folder / "train.csv", folder, blank_index=0, output_neurons=9)
    >>> decode_tokens(encoder, [encode_text(encoder, "HELLO")])
    ['HELLO']
    >>> fixed = build_tokenizer(CTCTextEncoder(), folder / "train.csv", tempfile.mkdtemp(), 0, 5, characters="HELO")
    >>> [fixed.ind2lab[index] for index in range(5)]
    ['<blank>', 'E', 'L', 'O', 'H']
    >>> build_tokenizer(CTCTextEncoder(), folder / "train.csv", tempfile.mkdtemp(), blank_index=0, output_neurons=4)
    Traceback (most recent call last):
    ...
    ValueError: output_neurons: 4 outputs for the 9 tokens of the tokenizer (the CTC blank included)
    """
    if isinstance(tokenizer, CTCTextEncoder):
        labels = [characters] if characters else [text for _, text in _read_transcripts(train_csv)]
        tokenizer.load_or_create(
            path=str(Path(save_folder) / "label_encoder.txt"),
            from_iterables=[labels],
            sequence_input=True,
            special_labels={"blank_label": blank_index},
        )
        size = len(tokenizer)
    elif callable(tokenizer):
        # SpeechBrain hands sentencepiece's trainer one "--key=value ..." string, which such a path splits.
        model_dir = str(getattr(tokenizer, "keywords", {}).get("model_dir", ""))
        if re.search(r"[\s=]", model_dir):
            raise ValueError(
                f"tokenizer: its model_dir {model_dir!r} holds whitespace or '=', which sentencepiece's trainer "
                "cannot take in a path; choose an output_folder without them"
            )
        tokenizer = tokenizer(annotation_train=str(train_csv), annotation_read="wrd").sp
        size = tokenizer.vocab_size()
    else:
        raise TypeError(
            "tokenizer must be a CTCTextEncoder or !name:speechbrain.tokenizers.SentencePiece.SentencePiece, "
            f"got {tokenizer!r}"
        )
    fixed = characters or not isinstance(tokenizer, CTCTextEncoder)
    if size > output_neurons or (fixed and size != output_neurons):
        raise ValueError(
            f"output_neurons: {output_neurons} outputs for the {size} tokens of the tokenizer (the CTC blank included)"
        )
    return tokenizer


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of a transcript."""
    if isinstance(tokenizer, CTCTextEncoder):
        return tokenizer.encode_sequence(list(text))
    return tokenizer.encode_as_ids(text)


def decode_tokens(tokenizer: Tokenizer, token_seqs: Iterable[Iterable[int]]) -> list[str]:
    """Texts of token sequences, exactly as ``speechbrain.inference.ASR`` writes them."""
    if isinstance(tokenizer, CTCTextEncoder):
        return ["".join(tokenizer.decode_ndim(list(tokens))) for tokens in token_seqs]
    return [tokenizer.decode_ids([int(token) for token in tokens]) for tokens in token_seqs]


def unknown_characters(tokenizer: Tokenizer, text: str) -> list[str]:
    """The characters of ``text`` that the tokenizer cannot represent (whitespace aside).

    Example
    -------
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(["AB C"], sequence_input=True)
    >>> unknown_characters(encoder, "ABD Cé")
    ['D', 'é']
    """
    chars = sorted({char for char in text if not char.isspace()})
    if isinstance(tokenizer, CTCTextEncoder):
        return [char for char in chars if char not in tokenizer.lab2ind]
    return [char for char in chars if tokenizer.unk_id() in tokenizer.encode_as_ids(char)]


def check_transcripts(manifests: Iterable[str | Path], tokenizer: Tokenizer) -> None:
    """Raises :class:`TranscriptError` listing every empty transcript and every character the tokenizer does not know.

    An unknown character would silently become the unknown token, which the
    recipes share with the CTC blank; an empty transcript has nothing to learn
    or score. Every manifest is read in full before the error, so one run shows
    all problems.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "dev.csv").write_text("ID,wrd\\na,HELLO\\nb,\\nc,HÉLLO\\n")
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(["HELLO"], sequence_input=True)
    >>> try:
    ...     check_transcripts([folder / "dev.csv"], encoder)
    ... except TranscriptError as error:
    ...     print(str(error).replace(str(folder), "DIR"))
    2 transcripts cannot be used:
      DIR/dev.csv, b: empty transcript
      DIR/dev.csv, c: characters the tokenizer does not know: 'É'
    """
    problems = []
    for manifest in manifests:
        for utt_id, text in _read_transcripts(manifest):
            if not text.strip():
                problems.append(f"{manifest}, {utt_id}: empty transcript")
                continue
            unknown = unknown_characters(tokenizer, text)
            if unknown:
                problems.append(
                    f"{manifest}, {utt_id}: characters the tokenizer does not know: "
                    + " ".join(repr(char) for char in unknown)
                )
    if problems:
        raise TranscriptError(f"{len(problems)} transcripts cannot be used:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------
# The Brains
# ---------------------------------------------------------------------------


def _words(texts: Iterable[str]) -> list[list[str]]:
    return [text.split() for text in texts]


class ASRBrain(sb.Brain):
    """What both ASR Brains share: two optimisers, WER/CER, logging, checkpoints, test outputs.

    Expects in ``hparams``: ``model`` (the trained downstream modules),
    ``model_opt_class``, ``lr_annealing_model``; ``ssl`` with
    ``freeze_student``, and when fine-tuning ``ssl_opt_class`` and
    ``lr_annealing_ssl``; ``mixer`` (a :class:`LayerMixer`); ``train_logger``,
    ``error_rate_computer``, ``cer_computer``, ``epoch_counter``. The recipe sets
    ``tokenizer`` on the Brain and ``hparams.test_wer_file`` before each test split.
    """

    def frame_lengths(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """The batch's relative lengths in encoder frames, for the CTC loss, the decoder and decoding."""
        return frame_lengths(wav_lens, wavs.shape[1], ssl_conv_layers(self.hparams.ssl))

    def init_optimizers(self):
        """The downstream model's optimiser, and the SSL lobe's own one when it is fine-tuned."""
        self.model_optimizer = self.hparams.model_opt_class(self.hparams.model.parameters())
        self.optimizers_dict = {"model_optimizer": self.model_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("model_optimizer", self.model_optimizer)
        if not self.hparams.freeze_student:
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
            if not self.hparams.freeze_student:
                old_lr_ssl, new_lr_ssl = self.hparams.lr_annealing_ssl(stage_loss)
                sb.nnet.schedulers.update_learning_rate(self.ssl_optimizer, new_lr_ssl)
                meta["lr_ssl"] = old_lr_ssl
            if self.hparams.mixer.weights is not None:
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


# ---------------------------------------------------------------------------
# Data, test and the recipe
# ---------------------------------------------------------------------------


def add_text_pipeline(
    datasets: list[DynamicItemDataset], tokenizer: Tokenizer, bos_index: int | None = None, eos_index: int | None = None
) -> list[str]:
    """Adds ``tokens`` (and ``tokens_bos`` / ``tokens_eos`` with the indices) to datasets; returns the keys to output.

    Example
    -------
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(["AB"], sequence_input=True)
    >>> dataset = DynamicItemDataset({"u": {"wrd": "BA"}})
    >>> keys = add_text_pipeline([dataset], encoder, bos_index=7, eos_index=8)
    >>> set_output_keys([dataset], keys)
    >>> dataset[0]["tokens"].tolist(), dataset[0]["tokens_bos"].tolist(), dataset[0]["tokens_eos"].tolist()
    ([1, 0], [7, 1, 0], [1, 0, 8])
    """

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens_list", "tokens")
    def tokens(wrd):
        token_list = encode_text(tokenizer, wrd)
        yield token_list
        yield torch.LongTensor(token_list)

    add_dynamic_item(datasets, tokens)
    keys = ["wrd", "tokens"]
    if bos_index is not None:

        @sb.utils.data_pipeline.takes("tokens_list")
        @sb.utils.data_pipeline.provides("tokens_bos", "tokens_eos")
        def decoder_tokens(token_list):
            yield torch.LongTensor([bos_index] + token_list)
            yield torch.LongTensor(token_list + [eos_index])

        add_dynamic_item(datasets, decoder_tokens)
        keys += ["tokens_bos", "tokens_eos"]
    return keys


def prepare_asr_data(hparams: dict) -> tuple[DynamicItemDataset, DynamicItemDataset, dict, Tokenizer]:
    """Writes and checks the manifests, builds the tokenizer, checks every transcript, builds the datasets.

    Returns the training and validation sets, the test sets by split name, and the tokenizer.
    """
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "train_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "test_splits": hparams["test_splits"],
            "skip_prep": hparams["skip_prep"],
            "num_workers": hparams["prep_workers"],
        },
    )
    manifests = {"train": hparams["train_csv"], "valid": hparams["valid_csv"]}
    manifests.update({split: str(Path(hparams["save_folder"]) / f"{split}.csv") for split in hparams["test_splits"]})
    for name, manifest in manifests.items():
        run_on_main(check_manifest, args=[manifest], kwargs={"skip_bad_audio": hparams["skip_bad_audio"]})
        manifests[name] = check_manifest(manifest, skip_bad_audio=hparams["skip_bad_audio"], num_workers=1)
    tokenizer = build_tokenizer(
        hparams["tokenizer"],
        manifests["train"],
        hparams["save_folder"],
        hparams["blank_index"],
        hparams["output_neurons"],
        hparams.get("characters"),
    )
    check_transcripts(manifests.values(), tokenizer)
    crop = AudioCrop(max_duration=0, random_crop=False)  # whole utterances
    datasets = {name: load_manifest(manifest, hparams["data_folder"], crop) for name, manifest in manifests.items()}
    keys = add_text_pipeline(list(datasets.values()), tokenizer, hparams.get("bos_index"), hparams.get("eos_index"))
    set_output_keys(list(datasets.values()), ["id", "sig", *keys])
    train = sort_dataset(datasets.pop("train"), hparams["sorting"])
    valid = datasets.pop("valid")
    return train, valid, datasets, tokenizer


def evaluate_test_splits(brain: ASRBrain, test_sets: dict[str, DynamicItemDataset], hparams: dict) -> dict:
    """Tests the best checkpoint (lowest dev WER) on each split; writes ``wer_<split>.txt`` and ``wer_summary.json``."""
    output_folder = Path(hparams["output_folder"])
    summary = {}
    for split, dataset in test_sets.items():
        brain.hparams.test_wer_file = output_folder / f"wer_{split}.txt"
        loader = valid_dataloader(dataset, hparams["test_batch_size"], hparams["num_workers"])
        brain.evaluate(loader, min_key="WER")
        summary[split] = brain.test_summary
        logger.info("%s: WER %.2f%%, CER %.2f%%", split, summary[split]["WER"], summary[split]["CER"])
    if if_main_process():
        (output_folder / "wer_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_asr_recipe(argv: list[str], brain_class: type[ASRBrain]) -> dict:
    """The whole recipe: prepare, train (resuming from the last checkpoint), test, export. Returns the test summary."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    train_data, valid_data, test_sets, tokenizer = prepare_asr_data(hparams)

    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    whole = AudioCrop(max_duration=0, random_crop=False)
    batch_sampler = duration_batch_sampler(
        train_data, hparams["max_batch_length"], hparams["num_buckets"], hparams["sorting"], whole, hparams["seed"]
    )
    train_loader = train_dataloader(
        train_data,
        batch_sampler,
        hparams["num_workers"],
        world_size,
        rank,
        hparams["seed"],
        hparams["sorting"] == "random",
    )
    valid_loader = valid_dataloader(valid_data, hparams["valid_batch_size"], hparams["num_workers"])
    checkpointer = hparams["checkpointer"]
    checkpointer.add_recoverable("train_loader", train_loader)
    brain = brain_class(modules=hparams["modules"], hparams=hparams, run_opts=run_opts, checkpointer=checkpointer)
    brain.tokenizer = tokenizer
    brain.train_sampler = train_loader.batch_sampler  # so that the Brain sets its epoch
    brain.fit(hparams["epoch_counter"], train_loader, valid_loader)

    summary = evaluate_test_splits(brain, test_sets, hparams)
    if if_main_process():
        export_asr(hparams["export_folder"], brain_class, hparams, tokenizer, hparams_file, overrides)
    return summary


# ---------------------------------------------------------------------------
# Export to SpeechBrain's pretrained-model layout
# ---------------------------------------------------------------------------

EXPORT_REPLACED = ("ssl", "num_ssl_layers", "ssl_dim", "tokenizer")
_REFERENCE = re.compile(r"<([^<>\[\]]+)")


def _references(node: Any) -> set[str]:
    """Top-level keys named by the ``!ref`` / ``!copy`` tags anywhere in a ruamel node."""
    found = set()
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag in ("!ref", "!copy"):
        found.update(name.split(".")[0] for name in _REFERENCE.findall(str(node.value)))
    if isinstance(node, dict):
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def _model_entries(hparams_file: str | Path, overrides: str | dict, roots: Iterable[str]) -> str:
    """The recipe YAML's entries that ``roots`` need, with their tags and references, as YAML text.

    The entries replaced by the export (:data:`EXPORT_REPLACED`) are left out.
    """
    yaml = ruamel.yaml.YAML()
    with open(hparams_file, encoding="utf-8") as handle:
        tree = yaml.load(handle)
    if overrides:
        recursive_update(tree, yaml.load(overrides) if isinstance(overrides, str) else overrides, must_match=False)
    needed, todo = set(), list(roots)
    while todo:
        key = todo.pop()
        if key in needed or key in EXPORT_REPLACED:
            continue
        if key not in tree:
            raise KeyError(f"{hparams_file}: the export needs the key {key!r}")
        needed.add(key)
        todo.extend(_references(tree[key]))
    stream = io.StringIO()
    yaml.dump({key: tree[key] for key in tree if key in needed}, stream)
    return stream.getvalue()


def _export_ssl(ssl: nn.Module, folder: Path) -> tuple[str, dict[str, str]]:
    """Saves the SSL lobe's current weights in ``folder``.

    Returns the YAML entries that rebuild it, and the Pretrainer loadables
    (name -> key) that load its weights. A student travels inside the folder
    (its config in the YAML, its weights in ``ssl.ckpt``, a safetensors file),
    so the folder can be moved or shared; a HuggingFace teacher is saved to
    ``ssl/`` and named by absolute path.
    """
    common = f"    output_norm: {json.dumps(bool(ssl.output_norm))}\n    freeze: True\n    output_all_hiddens: True\n"
    if isinstance(ssl, DistilledSSL):
        ssl.save_weights(folder / "ssl.ckpt")
        entry = (
            "ssl: !new:speechbrain_gendistill.lobes.DistilledSSL\n"
            f"    student_config: {json.dumps(export_config(ssl.model))}\n" + common
        )
        return entry, {"ssl": "ssl"}
    source = (folder / "ssl").resolve()
    ssl.model.save_pretrained(source)
    ssl.feature_extractor.save_pretrained(source)
    entry = (
        f"ssl_source: {json.dumps(str(source))}\n"
        f"ssl: !new:{type(ssl).__module__}.{type(ssl).__name__}\n"
        "    source: !ref <ssl_source>\n"
        "    save_path: !ref <ssl_source>\n" + common
    )
    return entry, {}


def export_asr(
    folder: str | Path,
    brain_class: type[ASRBrain],
    hparams: dict,
    tokenizer: Tokenizer,
    hparams_file: str | Path,
    overrides: str | dict | None = None,
) -> Path:
    """Writes the trained ASR in SpeechBrain's pretrained-model layout, loadable offline with ``speechbrain.inference``.

    ``folder`` receives ``hyperparams.yaml``, ``model.ckpt`` (the downstream
    modules' state dict), ``tokenizer.ckpt`` and the SSL encoder with its
    current weights: a student as ``ssl.ckpt`` (safetensors, loaded by
    ``DistilledSSL.load_weights``; its architecture is in the YAML), so that
    the folder can be moved and shared; a teacher standing in for the student
    as ``ssl/`` (a HuggingFace model folder), named by its absolute path (key
    ``ssl_source``: after moving the folder, pass ``overrides={"ssl_source":
    ...}`` to ``from_hparams``). ``hyperparams.yaml`` holds the recipe YAML's
    entries that the model needs, so any downstream architecture set there is
    rebuilt as it was trained.

    Arguments
    ---------
    folder : str or Path
        Where the model goes (created if needed).
    brain_class : type
        :class:`CTCBrain` (loaded by ``EncoderASR``) or :class:`CTCAttentionBrain` (``EncoderDecoderASR``).
    hparams : dict
        The loaded recipe YAML, with the trained modules.
    tokenizer : CTCTextEncoder or sentencepiece.SentencePieceProcessor
        The recipe's tokenizer.
    hparams_file : str or Path
        The recipe's YAML file, and ``overrides`` (a YAML string or a dict) as they were applied.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, CTCTextEncoder):
        tokenizer.save(str(folder / "tokenizer.ckpt"))
        tokenizer_entry = "tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder\n"
    else:
        (folder / "tokenizer.ckpt").write_bytes(tokenizer.serialized_model_proto())
        tokenizer_entry = "tokenizer: !new:sentencepiece.SentencePieceProcessor\n"
    state = {name: tensor.detach().cpu() for name, tensor in hparams["model"].state_dict().items()}
    torch.save(state, folder / "model.ckpt")
    ssl_entries, ssl_loadables = _export_ssl(hparams["ssl"], folder)
    loadables = {"model": "model", "tokenizer": "tokenizer", **ssl_loadables}
    modules = "".join(f"    {name}: !ref <{key}>\n" for name, key in brain_class.export_modules.items())
    text = (
        f"# An ASR model exported by speechbrain-gendistill ({brain_class.__name__}).\n"
        f"#   from speechbrain.inference.ASR import {brain_class.inference_class}\n"
        f"#   asr = {brain_class.inference_class}.from_hparams(source=<this folder>, savedir=<a cache folder>)\n"
        "#   asr.transcribe_file(<audio file>)\n\n"
        + ssl_entries
        + f"num_ssl_layers: {int(hparams['num_ssl_layers'])}\n"
        + f"ssl_dim: {int(hparams['ssl_dim'])}\n"
        + tokenizer_entry
        + _model_entries(hparams_file, overrides, brain_class.export_roots)
        + f"modules:\n{modules}"
        + "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        + "    loadables:\n"
        + "".join(f"        {name}: !ref <{key}>\n" for name, key in loadables.items())
    )
    (folder / "hyperparams.yaml").write_text(text, encoding="utf-8")
    logger.info("exported the ASR model to %s", folder)
    return folder
