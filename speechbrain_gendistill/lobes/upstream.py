"""Upstreams for downstream tasks: a distilled student or an HF SSL model behind one contract.

:func:`build_upstream` builds a frozen or fine-tuned SSL lobe from an exported
student folder (:class:`~speechbrain_gendistill.lobes.distilled.DistilledSSL`)
or from a HuggingFace model (SpeechBrain's wav2vec 2.0 / HuBERT / WavLM lobes),
always returning every layer, so that a teacher, the baseline and GenDistiller
go through the same recipe. :class:`LayerMixer` reduces the layers to the one
sequence a downstream model reads (the last layer, or SUPERB's learned weighted
sum), and :class:`FrameLengthsSequential` chains an upstream with downstream
layers that read lengths in encoder frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.nnet.containers import LengthsCapableSequential
from torch import nn
from transformers import AutoConfig

from speechbrain_gendistill.core.export_format import CONFIG_FILE, EXPORT_FORMAT, is_exported_student
from speechbrain_gendistill.core.frames import ConvSpec, frame_lengths
from speechbrain_gendistill.core.hub import resolve_source
from speechbrain_gendistill.lobes.distilled import DistilledSSL
from speechbrain_gendistill.lobes.students import GenDistillStudent
from speechbrain_gendistill.lobes.teacher import HF_SSL_MODELS, hf_conv_layers, hf_lobe_class, resolve_hf_model

LAYER_MODES = ("last", "weighted")
PROBE_SAMPLES = 4000  # a quarter of a second: enough frames for any of the supported encoders


def build_upstream(source: str, freeze: bool = True, save_path: str = "", output_norm: bool = False) -> nn.Module:
    """The SSL encoder of an ASR recipe: a distilled student, or a teacher in its place.

    Returns a lobe with SpeechBrain's HF SSL contract whose ``forward(wavs,
    wav_lens)`` gives every layer, [N, B, T, D].

    Arguments
    ---------
    source : str
        An exported student (read by ``DistilledSSL``), or a HuggingFace
        wav2vec 2.0 / HuBERT / WavLM model (read by SpeechBrain's lobe for
        that model type); either a local folder or a hub id, fetched through
        the HuggingFace cache, whose ``config.json`` tells which it is.
    freeze : bool
        Frozen features, or fine-tuning (the recipe then gives the lobe its own optimiser).
        A HuggingFace model is fine-tuned without LayerDrop.
    save_path : str
        Passed to the lobe as its ``save_path`` (hub downloads go to the HuggingFace cache).
    output_norm : bool
        Layer-normalise the outputs (passed to the lobe).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> lobe = build_upstream(str(export_student(student, tempfile.mkdtemp())))
    >>> lobe(torch.randn(2, 1600), torch.tensor([1.0, 0.5])).shape
    torch.Size([3, 2, 159, 24])
    >>> try:
    ...     build_upstream(tempfile.mkdtemp())
    ... except ValueError as error:
    ...     print(str(error).split("' ")[1][:48])
    is neither an exported student (config.json with
    """
    source = str(source)
    # For a hub id, its config.json alone tells an exported student from a HF model.
    if is_exported_student(resolve_source(source, files=(CONFIG_FILE,), required=(CONFIG_FILE,))):
        return DistilledSSL(
            source=source, save_path=save_path, freeze=freeze, output_norm=output_norm, output_all_hiddens=True
        )
    folder = resolve_hf_model(source)
    try:
        model_type = AutoConfig.from_pretrained(folder).model_type
    except (OSError, ValueError) as error:
        raise ValueError(
            f"upstream {source!r} is neither an exported student ({CONFIG_FILE} with format "
            f"{EXPORT_FORMAT!r}) nor a HuggingFace wav2vec 2.0 / HuBERT / WavLM model: {error}"
        ) from error
    lobe = hf_lobe_class(model_type, source)(
        folder, save_path=save_path, freeze=freeze, output_norm=output_norm, output_all_hiddens=True
    )
    # HF's LayerDrop skips layers in training, and a skipped layer gives no hidden state:
    # the number of layers returned would change from batch to batch.
    lobe.model.config.layerdrop = 0.0
    return lobe


def _probe(ssl: nn.Module) -> torch.Size:
    wavs = torch.zeros(1, PROBE_SAMPLES, device=next(ssl.parameters()).device)
    with torch.no_grad():
        return ssl(wavs, torch.ones(1, device=wavs.device)).shape


def upstream_num_layers(ssl: nn.Module) -> int:
    """How many layers an SSL lobe returns (1 when it returns [B, T, D] only), measured by a short forward pass.

    Example
    -------
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> upstream_num_layers(GenDistillStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4,
    ...     output_all_hiddens=True))
    3
    """
    shape = _probe(ssl)
    return shape[0] if len(shape) == 4 else 1


def upstream_feature_dim(ssl: nn.Module) -> int:
    """The width D of an SSL lobe's features, measured by a short forward pass.

    Example
    -------
    >>> from speechbrain_gendistill.lobes import DistilHuBERTStudent
    >>> upstream_feature_dim(DistilHuBERTStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4))
    16
    """
    return _probe(ssl)[-1]


def upstream_conv_layers(ssl: nn.Module) -> ConvSpec:
    """The (channels, kernel, stride) of an SSL lobe's waveform CNN, which set its frame count.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> upstream_conv_layers(DistilledSSL(source=str(export_student(student, tempfile.mkdtemp()))))
    [(16, 10, 5), (16, 3, 2)]
    """
    if isinstance(ssl, DistilledSSL):
        return ssl.model.frontend.conv_layers
    return hf_conv_layers(ssl.model.config)


def transformer_layer_slice(upstream: nn.Module, max_layers: int | None = None) -> slice:
    """The layers of ``upstream(wavs, wav_lens)`` [N, B, T, D] that a probe's weighted sum reads.

    The parity rule: every upstream shows the probe the same kinds of layers, the
    outputs of its transformer layers (or generated layers), never the output of
    its CNN front-end. A HF teacher returns ``hidden_states[0..L]``, of which
    index 0 is the transformer's input: layers 1..L are kept. A DistilHuBERT
    student returns its front-end output, then each encoder layer's: index 0 is
    dropped. A GenDistiller student returns its K generated layers only: all are kept.

    Arguments
    ---------
    upstream : nn.Module
        A lobe from :func:`build_upstream` (a ``DistilledSSL`` or one of SpeechBrain's HF SSL lobes).
    max_layers : int, optional
        Keep only the first ``max_layers`` of those layers (an early exit of a layer generator).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export import export_student
    >>> from speechbrain_gendistill.lobes import DistilHuBERTStudent
    >>> student = DistilHuBERTStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=2,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> lobe = build_upstream(str(export_student(student, tempfile.mkdtemp())))
    >>> transformer_layer_slice(lobe), transformer_layer_slice(lobe, max_layers=1)
    (slice(1, 3, None), slice(1, 2, None))
    """
    if isinstance(upstream, DistilledSSL):
        # DistilledSSL.num_layers counts what it returns: K generated layers, or the front-end and each encoder layer.
        start = 0 if isinstance(upstream.model, GenDistillStudent) else 1
        count = upstream.num_layers - start
    elif isinstance(upstream, tuple(lobe for lobe, _, _ in HF_SSL_MODELS.values())):
        start, count = 1, int(upstream.model.config.num_hidden_layers)
    else:
        raise TypeError(f"no layer rule for a {type(upstream).__name__}: expected a DistilledSSL or a HF SSL lobe")
    if max_layers is not None:
        if not 1 <= int(max_layers) <= count:
            raise ValueError(f"max_layers: {max_layers} is not between 1 and the upstream's {count} layers")
        count = int(max_layers)
    return slice(start, start + count)


class FrameLengthsSequential(LengthsCapableSequential):
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
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> ssl = DistilledSSL(source=str(export_student(student, tempfile.mkdtemp())))
    >>> lstm = LSTM(hidden_size=8, input_shape=[None, None, 24], bidirectional=True)
    >>> wavs = torch.randn(2, 1600)  # the second item: 928 samples (91 frames), then padding
    >>> def batched_and_alone(encoder):
    ...     return encoder(wavs, torch.tensor([1.0, 0.58]))[1, :91], encoder(wavs[1:, :928], torch.ones(1))[0]
    >>> batched, alone = batched_and_alone(FrameLengthsSequential(ssl, lstm).eval())
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
                lengths = frame_lengths(lengths, num_samples, upstream_conv_layers(layer))
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
