"""Small building blocks shared by the students.

The convolutional front-end, the convolutional positional embedding and one
transformer block, each padding-aware: a padded sample or frame never changes a
valid frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_gendistill.core.frames import (
    DEFAULT_CONV_LAYERS,
    ConvSpec,
    conv_output_lengths,
    lengths_to_mask,
)
from speechbrain_gendistill.lobes.attention import KVCache, MultiHeadAttention


class MaskedGroupNorm(nn.Module):
    """Per-channel normalisation over time whose statistics use valid frames only.

    This is wav2vec 2.0's first-layer ``GroupNorm(C, C)`` with the same
    parameters, except that padding does not leak into the mean and variance.
    While ``statistics`` is set (a per-channel mean and variance, [C] each),
    they are used instead of the input's own: chunked inference sets those of
    the whole waveform, so that each window is normalised as the whole is
    (see :meth:`ConvFeatureExtractor.fixed_statistics`).

    Arguments
    ---------
    num_channels : int
        Channels of the input.
    eps : float
        Added to the variance.

    Example
    -------
    >>> norm = MaskedGroupNorm(4)
    >>> x = torch.randn(2, 4, 10)
    >>> mask = lengths_to_mask(torch.tensor([10, 6]), 10)
    >>> y = norm(x, mask)
    >>> torch.allclose(y[1, :, :6], norm(x[1:, :, :6], mask[1:, :6])[0], atol=1e-6)
    True
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.statistics: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.statistics is not None:
            mean, var = (statistic.to(x.dtype)[None, :, None] for statistic in self.statistics)
        elif not torch.jit.is_tracing() and bool(mask.all()):
            # No padding: PyTorch's fused kernel computes the same statistics, several times faster.
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        else:
            # Sums over valid frames as matrix-vector products: no masked copy of x.
            m = mask.to(x.dtype)[:, :, None]  # [B, T, 1]
            count = m.sum(dim=1, keepdim=True).clamp(min=1.0)
            mean = torch.bmm(x, m) / count
            var = (torch.bmm(x.square(), m) / count - mean.square()).clamp(min=0.0)
        scale = self.weight[None, :, None] * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias[None, :, None] - mean * scale, x, scale)


class ConvBlock(nn.Module):
    """Conv1d without bias, an optional normalisation, GELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.norm_kind = norm
        if norm == "group_norm":
            self.norm = MaskedGroupNorm(out_channels)
        elif norm == "layer_norm":
            self.norm = nn.LayerNorm(out_channels)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)
        lengths = conv_output_lengths(lengths, [(0, self.conv.kernel_size[0], self.conv.stride[0])])
        if self.norm_kind == "group_norm":
            x = self.norm(x, lengths_to_mask(lengths.to(x.device), x.shape[-1]))
        elif self.norm_kind == "layer_norm":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x), lengths


class ConvFeatureExtractor(nn.Module):
    """wav2vec 2.0's waveform CNN, padding-aware.

    Arguments
    ---------
    conv_layers : list of (channels, kernel, stride)
        One entry per layer.
    norm : str
        ``"group_norm"``: a per-channel norm over time after the first layer
        (the "default" mode of WavLM/HuBERT Base), over valid frames only.
        ``"layer_norm"``: a LayerNorm over channels after every layer (the
        "layer_norm" mode of the Large models).

    Example
    -------
    >>> cnn = ConvFeatureExtractor([(8, 10, 5), (8, 3, 2)])
    >>> feats, lengths = cnn(torch.randn(2, 1600), torch.tensor([1600, 800]))
    >>> feats.shape, lengths.tolist()
    (torch.Size([2, 159, 8]), [159, 79])
    """

    def __init__(self, conv_layers: ConvSpec = DEFAULT_CONV_LAYERS, norm: str = "group_norm") -> None:
        super().__init__()
        if norm not in ("group_norm", "layer_norm"):
            raise ValueError(f"extractor norm must be 'group_norm' or 'layer_norm', got {norm!r}")
        self.conv_layers_spec = [tuple(layer) for layer in conv_layers]
        blocks, in_channels = [], 1
        for index, (channels, kernel, stride) in enumerate(self.conv_layers_spec):
            if norm == "layer_norm":
                layer_norm = "layer_norm"
            else:
                layer_norm = "group_norm" if index == 0 else None
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, layer_norm))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)
        self.output_dim = in_channels

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = wavs[:, None, :]
        for block in self.conv_layers:
            x, lengths = block(x, lengths)
        return x.transpose(1, 2), lengths

    def patch_moments(self, wav: torch.Tensor, block_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [k] and second moment [k, k] of the first layer's input patches over a whole waveform [S].

        A patch is the ``k`` samples (the first layer's kernel) that one
        first-layer frame reads. The first layer's group norm statistics over a
        waveform depend on it through these alone
        (:meth:`statistics_from_moments`); they are summed block by block, so
        that memory follows ``block_samples``, not the waveform's length.
        """
        conv = self.conv_layers[0].conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = (wav.shape[-1] - kernel) // stride + 1
        per_block = max(1, (block_samples - kernel) // stride + 1)
        total = torch.zeros(kernel, dtype=torch.float64, device=wav.device)
        outer = torch.zeros(kernel, kernel, dtype=torch.float64, device=wav.device)
        for begin in range(0, frames, per_block):
            end = min(frames, begin + per_block)
            patches = wav[begin * stride : (end - 1) * stride + kernel].double().unfold(0, kernel, stride)  # [n, k]
            total += patches.sum(0)
            outer += patches.T @ patches
        return total / frames, outer / frames

    def statistics_from_moments(
        self, patch_mean: torch.Tensor, patch_moment: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's per-channel output mean and variance over a waveform, from its :meth:`patch_moments`.

        The first layer is a convolution without bias, linear in its patch:
        with weights W [C, k], the mean is W mu and the variance
        diag(W M W^T) - mean^2, M being the second moment.

        Example
        -------
        >>> cnn = ConvFeatureExtractor([(8, 10, 5), (8, 3, 2)])
        >>> wav = torch.randn(16000)
        >>> mean, var = cnn.statistics_from_moments(*cnn.patch_moments(wav, block_samples=3000))
        >>> whole = cnn.conv_layers[0].conv(wav[None, None])
        >>> torch.allclose(mean, whole.mean((0, 2)), atol=1e-5)
        True
        >>> torch.allclose(var, whole.var((0, 2), unbiased=False), rtol=1e-4)
        True
        """
        weight = self.conv_layers[0].conv.weight[:, 0, :]  # [C, k]
        mean = weight @ patch_mean.to(weight.dtype)
        var = ((weight @ patch_moment.to(weight.dtype)) * weight).sum(-1) - mean.square()
        return mean, var.clamp(min=0.0)

    @contextmanager
    def fixed_statistics(self, statistics: tuple[torch.Tensor, torch.Tensor] | None) -> Iterator[None]:
        """Within the block, the first layer's group norm (if any) uses ``statistics``: (mean, variance), [C] each.

        Example
        -------
        >>> cnn = ConvFeatureExtractor([(8, 10, 5), (8, 3, 2)])
        >>> wav = torch.randn(1, 16000)
        >>> whole, _ = cnn(wav, torch.tensor([16000]))
        >>> statistics = cnn.statistics_from_moments(*cnn.patch_moments(wav[0], block_samples=3000))
        >>> with cnn.fixed_statistics(statistics):
        ...     window, _ = cnn(wav[:, 3200:6400], torch.tensor([3200]))
        >>> window.shape[1], bool((window - whole[:, 320:639]).abs().max() < 1e-4)  # frame 320 starts at sample 3200
        (319, True)
        """
        first = self.conv_layers[0]
        if first.norm_kind != "group_norm":  # layer-norm mode normalises each frame on its own
            yield
            return
        first.norm.statistics = statistics
        try:
            yield
        finally:
            first.norm.statistics = None


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, but the gradient flowing back through it is multiplied by ``scale``.

    wav2vec 2.0 and s3prl's DistilHuBERT train their CNN this way (scale 0.1),
    so that the front-end moves more slowly than the layers above it.
    Without gradients (inference, tracing for ONNX) or with ``scale == 1`` it
    adds nothing to the graph.

    Example
    -------
    >>> x = torch.ones(3, requires_grad=True)
    >>> scale_gradient(x, 0.1).sum().backward()
    >>> x.grad
    tensor([0.1000, 0.1000, 0.1000])
    """
    if scale == 1.0 or not torch.is_grad_enabled():
        return x
    return _ScaleGradient.apply(x, scale)


class ConvPositionalEmbedding(nn.Module):
    """wav2vec 2.0's relative positional embedding: x + GELU(grouped conv over time).

    Arguments
    ---------
    d_model : int
        Channels.
    kernel_size : int
        Width of the convolution, in frames.
    groups : int
        Convolution groups.

    Example
    -------
    >>> pos = ConvPositionalEmbedding(16, kernel_size=8, groups=4)
    >>> pos(torch.randn(2, 20, 16), lengths_to_mask(torch.tensor([20, 5]), 20)).shape
    torch.Size([2, 20, 16])
    """

    def __init__(self, d_model: int, kernel_size: int = 128, groups: int = 16) -> None:
        super().__init__()
        conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # Zeroed padding makes the conv see exactly what a shorter input would.
        x = x * frame_mask[:, :, None].to(x.dtype)
        pos = self.conv(x.transpose(1, 2))
        if self.trim:
            pos = pos[:, :, :-1]
        return x + F.gelu(pos).transpose(1, 2)


class FeedForward(nn.Sequential):
    """Linear, GELU, dropout, Linear."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, d_ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ffn, d_model))


class TransformerBlock(nn.Module):
    """Self-attention and feed-forward with residuals.

    Arguments
    ---------
    d_model, num_heads, d_ffn : int
        Width, attention heads, feed-forward width.
    dropout : float
        Dropout on the residual branches and the attention weights.
    norm_first : bool
        True: pre-LN (GPT style, used by the generator). False: post-LN
        (wav2vec 2.0 Base style, used by the DistilHuBERT baseline).

    Example
    -------
    >>> block = TransformerBlock(16, 4, 32, dropout=0.0, norm_first=True)
    >>> mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    >>> block(torch.randn(1, 5, 16), mask).shape
    torch.Size([1, 5, 16])
    """

    def __init__(self, d_model: int, num_heads: int, d_ffn: int, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(d_model, num_heads, dropout)
        self.attention_norm = nn.LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ffn, dropout)
        self.feed_forward_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor, cache: KVCache | None = None, layer_index: int = 0
    ) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask, cache, layer_index))
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask, cache, layer_index)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))
