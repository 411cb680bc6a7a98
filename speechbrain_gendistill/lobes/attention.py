"""Multi-head attention with a key/value cache, and the masks of the 2D attention.

GenDistiller's generator sees a grid of tokens: K generation steps (teacher
layers) by T frames. Token (k, t) may attend to (k', t') iff k' <= k and frame t'
is valid: causal along the layer axis, bidirectional along time. Teacher forcing
flattens the grid to K*T tokens under :func:`block_causal_mask`; generation feeds
the T tokens of one step at a time and keeps earlier steps in a :class:`KVCache`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of the steps generated so far, one entry per block.

    Example
    -------
    >>> cache = KVCache()
    >>> k, v = cache.extend(0, torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))
    >>> k, v = cache.extend(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    >>> k.shape
    torch.Size([1, 2, 6, 4])
    """

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def extend(self, layer_index: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends [B, H, T, Dh] keys and values along time; returns all of them."""
        if layer_index in self.keys:
            keys = torch.cat([self.keys[layer_index], keys], dim=2)
            values = torch.cat([self.values[layer_index], values], dim=2)
        self.keys[layer_index], self.values[layer_index] = keys, values
        return keys, values


def key_padding_mask(frame_mask: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
    """Attention mask [B, 1, 1, num_steps*T] that hides padded frames of every step.

    Example
    -------
    >>> key_padding_mask(torch.tensor([[True, False]]), num_steps=2).int()
    tensor([[[[1, 0, 1, 0]]]], dtype=torch.int32)
    """
    return frame_mask.repeat(1, num_steps)[:, None, None, :]


def block_causal_mask(frame_mask: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Attention mask [B, 1, K*T, K*T] of the 2D attention over a flattened grid.

    Example
    -------
    >>> block_causal_mask(torch.tensor([[True, True]]), num_steps=2)[0, 0].int()
    tensor([[1, 1, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 1],
            [1, 1, 1, 1]], dtype=torch.int32)
    """
    num_frames = frame_mask.shape[1]
    step = torch.arange(num_steps, device=frame_mask.device).repeat_interleave(num_frames)
    causal = step[None, :] <= step[:, None]
    return causal[None, None] & key_padding_mask(frame_mask, num_steps)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention whose keys and values can come from a cache.

    Arguments
    ---------
    d_model : int
        Width of the tokens.
    num_heads : int
        Number of heads; must divide ``d_model``.
    dropout : float
        Dropout on the attention weights in training.

    Example
    -------
    >>> attention = MultiHeadAttention(16, num_heads=4, dropout=0.0)
    >>> x = torch.randn(2, 5, 16)
    >>> attention(x, torch.ones(2, 1, 1, 5, dtype=torch.bool)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor,
        cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> torch.Tensor:
        """x [B, N, D] attends to itself, after the cached tokens when ``cache`` is given.

        ``attn_mask`` is boolean (True: may attend), broadcastable to [B, H, N, M].
        """
        batch, length, width = x.shape
        q, k, v = self.in_proj(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if cache is not None:
            k, v = cache.extend(layer_index, k, v)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))
