"""GenDistiller's generator: a decoder-only transformer along the layer axis.

Step k reads a grid row of history tokens u_k [B, T, d] and emits the k-th target
layer y_k [B, T, D_t]:

* u_1 = x_0 + e_1 (x_0: the front-end's output),
* u_k = in_proj(g_{k-1}) + e_k, where g_{k-1} is the previous layer, the
  teacher's (teacher forcing) or the generator's own (free running),
* y_k = out_proj(z_k) + skip(u_k), z_k being the transformer's output for step k.

All K steps share the same blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_gendistill.lobes.attention import KVCache, block_causal_mask, key_padding_mask
from speechbrain_gendistill.lobes.components import TransformerBlock


class LayerGenerator(nn.Module):
    """Generates K teacher-space layers one after another.

    Arguments
    ---------
    d_model : int
        Width of the transformer.
    target_dim : int
        Width of the generated layers (the teacher's hidden size).
    num_steps : int
        Number of generated layers K.
    num_layers : int
        Transformer blocks, shared by all steps.
    num_heads : int
        Attention heads.
    d_ffn : int
        Feed-forward width.
    dropout : float
        Dropout in the blocks.

    Example
    -------
    >>> generator = LayerGenerator(16, 24, num_steps=3, num_layers=1, num_heads=4, d_ffn=32, dropout=0.0)
    >>> x0, mask = torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)
    >>> free = generator(x0, mask)
    >>> free.shape
    torch.Size([3, 2, 7, 24])
    >>> forced = generator(x0, mask, teacher_history=free)
    >>> torch.allclose(free, forced, atol=1e-5)
    True
    >>> torch.allclose(free, generator.generate(x0, mask, use_cache=False), atol=1e-5)
    True
    """

    def __init__(
        self,
        d_model: int,
        target_dim: int,
        num_steps: int,
        num_layers: int,
        num_heads: int,
        d_ffn: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.num_steps = num_steps
        self.step_embedding = nn.Parameter(torch.randn(num_steps, d_model) * 0.02)
        self.in_proj = nn.Linear(target_dim, d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ffn, dropout, norm_first=True) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, target_dim)
        self.skip = nn.Identity() if d_model == target_dim else nn.Linear(d_model, target_dim, bias=False)

    def forward(
        self,
        x0: torch.Tensor,
        frame_mask: torch.Tensor,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
    ) -> torch.Tensor:
        """Generates [K, B, T, D_t] from x0 [B, T, d].

        ``teacher_history`` [K, B, T, D_t] (the teacher's layers) is read as
        the previous layer with probability ``teacher_history_prob`` per step
        and utterance; 1.0 is teacher forcing in one parallel pass, no history
        (or 0.0) is free running.
        """
        if teacher_history is not None and teacher_history_prob >= 1.0:
            return self.teacher_forced(x0, frame_mask, teacher_history)
        return self.generate(x0, frame_mask, teacher_history, teacher_history_prob)

    def teacher_forced(self, x0: torch.Tensor, frame_mask: torch.Tensor, teacher_history: torch.Tensor) -> torch.Tensor:
        """All steps in one pass over the flattened K*T grid under the block-causal mask."""
        batch, frames, _ = x0.shape
        previous = self.in_proj(teacher_history[: self.num_steps - 1])  # [K-1, B, T, d]
        tokens = torch.cat([x0[None], previous], dim=0) + self.step_embedding[:, None, None, :]
        grid = tokens.transpose(0, 1).reshape(batch, self.num_steps * frames, -1)
        out = self.transform(grid, block_causal_mask(frame_mask, self.num_steps))
        out = out.view(batch, self.num_steps, frames, -1).transpose(0, 1)
        return self.out_proj(out) + self.skip(tokens)

    def generate(
        self,
        x0: torch.Tensor,
        frame_mask: torch.Tensor,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 0.0,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """One step at a time; each step's T queries attend to the keys of steps <= k.

        With ``use_cache`` those keys and values come from a :class:`KVCache`;
        without it, step k runs the blocks again over the whole grid of steps
        1..k and keeps its last row: the same result, the work the cache saves.
        """
        batch, frames, _ = x0.shape
        cache = KVCache() if use_cache else None
        rows: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        for step in range(self.num_steps):
            if step == 0:
                tokens = x0
            else:
                previous = outputs[-1]
                if teacher_history is not None and teacher_history_prob > 0.0:
                    use_teacher = torch.rand(batch, 1, 1, device=x0.device) < teacher_history_prob
                    previous = torch.where(use_teacher, teacher_history[step - 1], previous)
                tokens = self.in_proj(previous)
            tokens = tokens + self.step_embedding[step]
            if use_cache:
                out = self.transform(tokens, key_padding_mask(frame_mask, step + 1), cache)
            else:
                rows.append(tokens)
                grid = torch.stack(rows, dim=1).reshape(batch, (step + 1) * frames, -1)
                out = self.transform(grid, block_causal_mask(frame_mask, step + 1))[:, step * frames :]
            outputs.append(self.out_proj(out) + self.skip(tokens))
        return torch.stack(outputs)

    def transform(self, tokens: torch.Tensor, attn_mask: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, attn_mask, cache, index)
        return self.norm(tokens)
