"""The students' front-end: waveform CNN, LayerNorm, Linear to the model width, positional embedding."""

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
from speechbrain_gendistill.lobes.components import ConvFeatureExtractor, ConvPositionalEmbedding, scale_gradient
from speechbrain_gendistill.lobes.from_teacher import cnn_groups, copy_groups

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
    cnn_grad_scale : float
        Multiplies the gradients flowing back into the CNN (wav2vec 2.0 and
        s3prl's DistilHuBERT: 0.1); 1.0 leaves them as they are.

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
        cnn_grad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.cnn_grad_scale = cnn_grad_scale
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
        feats = scale_gradient(feats, self.cnn_grad_scale)
        mask = lengths_to_mask(frames, feats.shape[1])
        x = self.dropout(self.projection(self.layer_norm(feats)))
        return self.positional(x, mask), mask

    def load_teacher_cnn(self, teacher_state: dict[str, torch.Tensor]) -> list[str]:
        """Copies the teacher's CNN, LayerNorm and projection where shapes match.

        ``teacher_state`` is the state dict of a HF wav2vec 2.0 / HuBERT / WavLM
        model. Returns the names of the copied tensors.
        """
        copied = copy_groups(self, cnn_groups(self), teacher_state)
        if not any(name.startswith("feature_extractor.") for name in copied):
            logger.warning("the teacher's CNN does not match the student's: the CNN starts from scratch")
        return copied
