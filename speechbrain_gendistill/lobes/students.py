"""The students: GenDistiller and the DistilHuBERT baseline.

Both share the front-end (waveform CNN, LayerNorm, Linear to the model width,
convolutional positional embedding) and the contract of SpeechBrain's HF SSL
lobes: ``forward(wavs, wav_lens)`` gives [B, T, D], or [N, B, T, D] with
``output_all_hiddens=True``. ``predict_targets`` gives the K predicted teacher layers
[K, B, T, D_t] that distillation trains on.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from speechbrain_gendistill.core.frames import (
    DEFAULT_CONV_LAYERS,
    ConvSpec,
    conv_output_lengths,
    lengths_to_mask,
    receptive_field,
    relative_to_absolute,
)
from speechbrain_gendistill.lobes.attention import key_padding_mask
from speechbrain_gendistill.lobes.components import ConvFeatureExtractor, ConvPositionalEmbedding, TransformerBlock
from speechbrain_gendistill.lobes.generator import LayerGenerator

logger = logging.getLogger(__name__)


class FrontEnd(nn.Module):
    """Waveform CNN, LayerNorm, Linear to ``d_model``, dropout, positional embedding.

    Arguments
    ---------
    d_model : int
        Output width.
    conv_layers : list of (channels, kernel, stride)
        The CNN; the default is the teacher's, so frame counts match.
    extractor_norm : str
        ``"group_norm"`` or ``"layer_norm"`` (see ConvFeatureExtractor).
    pos_conv_kernel, pos_conv_groups : int
        The convolutional positional embedding.
    dropout : float
        Dropout after the projection.

    Example
    -------
    >>> frontend = FrontEnd(32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> x, mask = frontend(torch.randn(2, 800), torch.tensor([1.0, 0.5]))
    >>> x.shape, mask.sum(1).tolist()
    (torch.Size([2, 79, 32]), [79, 39])
    """

    def __init__(
        self,
        d_model: int,
        conv_layers: ConvSpec | None = None,
        extractor_norm: str = "group_norm",
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv_layers = [tuple(layer) for layer in (conv_layers or DEFAULT_CONV_LAYERS)]
        self.feature_extractor = ConvFeatureExtractor(self.conv_layers, extractor_norm)
        feature_dim = self.feature_extractor.output_dim
        self.layer_norm = nn.LayerNorm(feature_dim)
        self.projection = nn.Linear(feature_dim, d_model) if feature_dim != d_model else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.positional = ConvPositionalEmbedding(d_model, pos_conv_kernel, pos_conv_groups)

    def sample_lengths(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None) -> torch.Tensor:
        lengths = relative_to_absolute(wav_lens, wavs.shape[1], wavs.shape[0]).to(wavs.device)
        if torch.jit.is_tracing():
            # A traced graph (ONNX export) cannot raise: the check would freeze to the example input.
            return lengths
        too_short = (lengths < receptive_field(self.conv_layers)).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(
                f"batch items {too_short} are shorter than the CNN's receptive field "
                f"({receptive_field(self.conv_layers)} samples)"
            )
        return lengths

    def frame_mask(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None) -> torch.Tensor:
        """[B, T] True on the frames whose receptive field lies inside each item."""
        frames = conv_output_lengths(self.sample_lengths(wavs, wav_lens), self.conv_layers)
        num_frames = conv_output_lengths(torch.tensor([wavs.shape[1]]), self.conv_layers).item()
        return lengths_to_mask(frames, num_frames)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S] waveforms -> ([B, T, d_model] features, [B, T] frame mask)."""
        feats, frames = self.feature_extractor(wavs, self.sample_lengths(wavs, wav_lens))
        mask = lengths_to_mask(frames, feats.shape[1])
        x = self.dropout(self.projection(self.layer_norm(feats)))
        return self.positional(x, mask), mask

    def load_teacher_cnn(self, teacher_state: dict[str, torch.Tensor]) -> list[str]:
        """Copies the teacher's CNN, LayerNorm and projection where shapes match.

        ``teacher_state`` is the state dict of a HF wav2vec 2.0 / HuBERT / WavLM
        model. Returns the names of the copied tensors.
        """
        mapping = {}
        for name in self.feature_extractor.state_dict():
            mapping[f"feature_extractor.{name}"] = "feature_extractor." + name.replace(".norm.", ".layer_norm.")
        for name in self.layer_norm.state_dict():
            mapping[f"layer_norm.{name}"] = f"feature_projection.layer_norm.{name}"
        for name in self.projection.state_dict():
            mapping[f"projection.{name}"] = f"feature_projection.projection.{name}"
        own = self.state_dict()
        copied = []
        for own_name, teacher_name in mapping.items():
            source = teacher_state.get(teacher_name)
            if source is not None and source.shape == own[own_name].shape:
                own[own_name].copy_(source)
                copied.append(own_name)
        if not any(name.startswith("feature_extractor.") for name in copied):
            logger.warning("the teacher's CNN does not match the student's: the CNN starts from scratch")
        return copied


class DistillationStudent(nn.Module):
    """What both students share: the front-end and the SSL lobe contract."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        # The constructor's arguments: what an exported student needs to be rebuilt.
        self.config = {name: value for name, value in config.items() if name not in ("self", "__class__")}
        self.output_all_hiddens = config["output_all_hiddens"]
        self.frontend = FrontEnd(
            config["d_model"],
            config["conv_layers"],
            config["extractor_norm"],
            config["pos_conv_kernel"],
            config["pos_conv_groups"],
            config["dropout"],
        )

    def predict_targets(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
    ) -> torch.Tensor:
        raise NotImplementedError

    def hidden_states(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """The layers a downstream model reads, [N, B, T, D]."""
        raise NotImplementedError

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        hiddens = self.hidden_states(wavs, wav_lens)
        return hiddens if self.output_all_hiddens else hiddens[-1]

    def frame_mask(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] True on valid frames: the mask the distillation loss uses."""
        return self.frontend.frame_mask(wavs, wav_lens)

    def load_teacher_cnn(self, teacher_state: dict[str, torch.Tensor]) -> list[str]:
        """Initialises the front-end from a HF teacher's state dict where shapes match."""
        return ["frontend." + name for name in self.frontend.load_teacher_cnn(teacher_state)]


class GenDistillStudent(DistillationStudent):
    """GenDistiller: front-end plus a generator that produces K teacher layers in turn.

    Arguments
    ---------
    target_dim : int
        Width of the teacher's hidden states.
    num_target_layers : int
        K, the number of generated layers.
    d_model : int
        Width of the generator.
    num_layers : int
        Generator blocks (shared by all K steps).
    num_heads : int
        Attention heads.
    d_ffn : int
        Feed-forward width.
    dropout : float
        Dropout in the front-end and the generator.
    conv_layers : list of (channels, kernel, stride), optional
        The CNN; default: the teacher's.
    extractor_norm : str
        ``"group_norm"`` (Base models) or ``"layer_norm"`` (Large models).
    pos_conv_kernel, pos_conv_groups : int
        The convolutional positional embedding.
    output_all_hiddens : bool
        ``forward`` returns all K generated layers [K, B, T, D_t] instead of the last.

    Example
    -------
    >>> student = GenDistillStudent(
    ...     target_dim=24, num_target_layers=3, d_model=16, num_layers=1, num_heads=4, d_ffn=32,
    ...     conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> wavs = torch.randn(2, 1600)
    >>> student(wavs, torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 159, 24])
    >>> teacher_history = torch.randn(3, 2, 159, 24)
    >>> student.predict_targets(wavs, teacher_history=teacher_history).shape
    torch.Size([3, 2, 159, 24])
    """

    def __init__(
        self,
        target_dim: int = 768,
        num_target_layers: int = 3,
        d_model: int = 512,
        num_layers: int = 2,
        num_heads: int = 8,
        d_ffn: int = 2048,
        dropout: float = 0.1,
        conv_layers: ConvSpec | None = None,
        extractor_norm: str = "group_norm",
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        output_all_hiddens: bool = False,
    ) -> None:
        super().__init__(locals())
        self.generator = LayerGenerator(d_model, target_dim, num_target_layers, num_layers, num_heads, d_ffn, dropout)

    def predict_targets(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
    ) -> torch.Tensor:
        """The K generated layers [K, B, T, D_t]: teacher forcing when ``teacher_history`` is given, else free running.

        With ``teacher_history`` and ``0 < teacher_history_prob < 1``, each
        step and utterance reads the teacher's previous layer with that
        probability and its own otherwise (scheduled sampling, computed step by
        step).
        """
        x0, mask = self.frontend(wavs, wav_lens)
        return self.generator(x0, mask, teacher_history, teacher_history_prob)

    def hidden_states(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        return self.predict_targets(wavs, wav_lens)


class GroupedLinear(nn.Module):
    """K independent Linear maps applied to K slices of the last axis.

    Example
    -------
    >>> GroupedLinear(8, 3, 5)(torch.randn(2, 4, 3 * 8)).shape
    torch.Size([2, 4, 3, 5])
    """

    def __init__(self, in_dim: int, groups: int, out_dim: int) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(groups, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(groups, out_dim))
        bound = in_dim**-0.5  # nn.Linear's default range for each group
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(*x.shape[:-1], self.groups, -1)
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class DistilHuBERTStudent(DistillationStudent):
    """The DistilHuBERT baseline: front-end, a small post-LN encoder, K prediction heads.

    The heads (``prediction_heads``) are trained by distillation and then
    dropped: ``forward`` returns the encoder's own hidden states (the last, or
    the encoder input followed by every layer's output).

    Arguments
    ---------
    target_dim : int
        Width of the teacher's hidden states.
    num_target_layers : int
        K, the number of predicted layers (one head each).
    d_model, num_layers, num_heads, d_ffn : int
        The encoder (DistilHuBERT: 768, 2, 12, 3072).
    dropout : float
        Dropout in the front-end and the encoder.
    conv_layers, extractor_norm, pos_conv_kernel, pos_conv_groups
        As for :class:`GenDistillStudent`.
    output_all_hiddens : bool
        ``forward`` returns [num_layers + 1, B, T, d_model].

    Example
    -------
    >>> student = DistilHuBERTStudent(
    ...     target_dim=24, num_target_layers=3, d_model=16, num_layers=2, num_heads=4, d_ffn=32,
    ...     conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> wavs = torch.randn(2, 1600)
    >>> student.predict_targets(wavs).shape
    torch.Size([3, 2, 159, 24])
    >>> student(wavs).shape
    torch.Size([2, 159, 16])
    """

    def __init__(
        self,
        target_dim: int = 768,
        num_target_layers: int = 3,
        d_model: int = 768,
        num_layers: int = 2,
        num_heads: int = 12,
        d_ffn: int = 3072,
        dropout: float = 0.1,
        conv_layers: ConvSpec | None = None,
        extractor_norm: str = "group_norm",
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        output_all_hiddens: bool = False,
    ) -> None:
        super().__init__(locals())
        self.encoder_norm = nn.LayerNorm(d_model)
        self.encoder_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ffn, dropout, norm_first=False) for _ in range(num_layers)
        )
        self.num_target_layers = num_target_layers
        self.prediction_heads = nn.Sequential(
            nn.Linear(d_model, d_model * num_target_layers),
            nn.GELU(),
            GroupedLinear(d_model, num_target_layers, target_dim),
        )

    def hidden_states(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = self.frontend(wavs, wav_lens)
        x = self.encoder_dropout(self.encoder_norm(x))
        attn_mask = key_padding_mask(mask)
        hiddens = [x]
        for layer in self.layers:
            hiddens.append(layer(hiddens[-1], attn_mask))
        return torch.stack(hiddens)

    def predict_targets(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
    ) -> torch.Tensor:
        """[K, B, T, D_t] from the heads; the teacher's layers are not used."""
        if self.prediction_heads is None:
            raise RuntimeError("the prediction heads were dropped: this student only serves as an encoder now")
        last = self.hidden_states(wavs, wav_lens)[-1]
        return self.prediction_heads(last).permute(2, 0, 1, 3)

    def drop_prediction_heads(self) -> None:
        """Removes the heads once distillation is over: they are not part of the model used after it."""
        self.prediction_heads = None
