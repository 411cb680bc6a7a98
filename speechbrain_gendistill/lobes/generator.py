"""GenDistiller's generator: a decoder-only transformer along the layer axis.

Step k reads a grid row of history tokens u_k [B, T, d] and emits the k-th target
layer y_k [B, T, D_t]:

* u_1 = x_0 + e_1 (x_0: the front-end's output),
* u_k = in_proj(g_{k-1}) + e_k, where g_{k-1} is the previous layer, the
  teacher's (teacher forcing) or the generator's own (free running),
* y_k = out_proj(z_k) + skip(u_k), z_k being the transformer's output for step k
  (``residual="projection"``); or, with ``residual="identity"``,
  y_k = g_{k-1} + out_proj(z_k) for k >= 2, each step a correction of the
  previous layer in teacher space.

All K steps share the same blocks; the output projection is shared too, or one
per step (``per_step_output``).
"""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_gendistill.lobes.attention import KVCache, block_causal_mask, key_padding_mask
from speechbrain_gendistill.lobes.components import TransformerBlock

RESIDUALS = ("projection", "identity")


class StepLinear(nn.Module):
    """One Linear map per generation step, held as a grouped weight [K, in, out].

    ``forward(x, first_step)`` maps x [k, ..., in] (steps first) with the maps
    of steps ``first_step .. first_step + k - 1``.

    Example
    -------
    >>> layer = StepLinear(4, 6, num_steps=3)
    >>> layer(torch.randn(3, 2, 5, 4)).shape, layer(torch.randn(1, 2, 5, 4), first_step=2).shape
    (torch.Size([3, 2, 5, 6]), torch.Size([1, 2, 5, 6]))
    """

    def __init__(self, in_dim: int, out_dim: int, num_steps: int) -> None:
        super().__init__()
        bound = in_dim**-0.5  # nn.Linear's default range, for each step's map
        self.weight = nn.Parameter(torch.empty(num_steps, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_steps, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, first_step: int = 0) -> torch.Tensor:
        steps = x.shape[0]
        weight = self.weight[first_step : first_step + steps]
        bias = self.bias[first_step : first_step + steps]
        out = torch.bmm(x.reshape(steps, -1, x.shape[-1]), weight) + bias[:, None, :]
        return out.view(*x.shape[:-1], -1)


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
    residual : str
        ``"projection"``: y_k = out_proj(z_k) + skip(u_k). ``"identity"``:
        y_k = g_{k-1} + out_proj(z_k) for k >= 2, g_{k-1} being the layer read
        as history (the teacher's under teacher forcing), with out_proj
        zero-initialised so that each step starts as a copy of the previous
        layer; y_1 is as with ``"projection"``.
    per_step_output : bool
        One output projection per step (K maps d -> D_t: (K - 1) * (d + 1) * D_t
        more parameters) instead of one shared by all steps.

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
    >>> torch.equal(generator(x0, mask, num_steps=2), free[:2])  # an early exit computes 2 steps only
    True
    >>> copier = LayerGenerator(16, 24, 3, 1, 4, 32, 0.0, residual="identity")
    >>> out = copier(x0, mask)
    >>> torch.equal(out[1], out[0]) and torch.equal(out[2], out[1])  # untrained: copies of the previous layer
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
        residual: str = "projection",
        per_step_output: bool = False,
    ) -> None:
        super().__init__()
        if residual not in RESIDUALS:
            raise ValueError(f"residual: {residual!r} is not one of {', '.join(RESIDUALS)}")
        self.num_steps = num_steps
        self.residual = residual
        self.per_step_output = per_step_output
        self.step_embedding = nn.Parameter(torch.randn(num_steps, d_model) * 0.02)
        self.in_proj = nn.Linear(target_dim, d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ffn, dropout, norm_first=True) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        if per_step_output:
            self.out_proj: nn.Module = StepLinear(d_model, target_dim, num_steps)
        else:
            self.out_proj = nn.Linear(d_model, target_dim)
        if residual == "identity":
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)
        self.skip = nn.Identity() if d_model == target_dim else nn.Linear(d_model, target_dim, bias=False)

    def steps(self, num_steps: int | None) -> int:
        """The number of steps to run: ``num_steps`` (an early exit) or all K."""
        if num_steps is None:
            return self.num_steps
        if not 1 <= num_steps <= self.num_steps:
            raise ValueError(f"num_steps={num_steps}: this generator has steps 1..{self.num_steps}")
        return num_steps

    def project(self, z: torch.Tensor, first_step: int) -> torch.Tensor:
        """out_proj of z [k, B, T, d], the rows being steps ``first_step`` onwards."""
        return self.out_proj(z, first_step) if self.per_step_output else self.out_proj(z)

    def forward(
        self,
        x0: torch.Tensor,
        frame_mask: torch.Tensor,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
        detach_history: bool = False,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Generates [K, B, T, D_t] (the first ``num_steps`` layers when given) from x0 [B, T, d].

        ``teacher_history`` [K, B, T, D_t] (the teacher's layers) is read as
        the previous layer with probability ``teacher_history_prob`` per step
        and utterance; 1.0 is teacher forcing in one parallel pass, no history
        (or 0.0) is free running. ``detach_history`` stops the gradient through
        the generator's own previous layers where they are read as history.
        """
        if teacher_history is not None and teacher_history_prob >= 1.0:
            return self.teacher_forced(x0, frame_mask, teacher_history, num_steps)
        return self.generate(
            x0, frame_mask, teacher_history, teacher_history_prob, detach_history=detach_history, num_steps=num_steps
        )

    def teacher_forced(
        self,
        x0: torch.Tensor,
        frame_mask: torch.Tensor,
        teacher_history: torch.Tensor,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """All steps in one pass over the flattened K*T grid under the block-causal mask."""
        batch, frames, _ = x0.shape
        steps = self.steps(num_steps)
        history = teacher_history[: steps - 1]
        tokens = torch.cat([x0[None], self.in_proj(history)], dim=0) + self.step_embedding[:steps, None, None, :]
        grid = tokens.transpose(0, 1).reshape(batch, steps * frames, -1)
        out = self.transform(grid, block_causal_mask(frame_mask, steps))
        out = out.view(batch, steps, frames, -1).transpose(0, 1)
        if self.residual == "identity":
            residual = torch.cat([self.skip(tokens[:1]), history], dim=0)
        else:
            residual = self.skip(tokens)
        return self.project(out, 0) + residual

    def generate(
        self,
        x0: torch.Tensor,
        frame_mask: torch.Tensor,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 0.0,
        use_cache: bool = True,
        detach_history: bool = False,
        num_steps: int | None = None,
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
        for step in range(self.steps(num_steps)):
            if step == 0:
                tokens = x0
            else:
                previous = outputs[-1].detach() if detach_history else outputs[-1]
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
            residual = previous if self.residual == "identity" and step > 0 else self.skip(tokens)
            outputs.append(self.project(out[None], step)[0] + residual)
        return torch.stack(outputs)

    def transform(self, tokens: torch.Tensor, attn_mask: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, attn_mask, cache, index)
        return self.norm(tokens)
