"""Library changes proposed for speed, measured by ``benchmark.py --prototypes`` before they are applied.

Each patch takes a built student and returns it changed in place; its effect is
measured against the unpatched student in the same run. Once a change lands in
``speechbrain_gendistill``, its patch (and its ``--prototypes`` rows) go away.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_gendistill.components import MaskedGroupNorm


class FusedMaskedGroupNorm(MaskedGroupNorm):
    """MaskedGroupNorm with the same statistics, computed by the fused ``F.group_norm``.

    The masked version makes about eight passes over the first CNN layer's
    output (C x 32000 values for 10 s); ``F.group_norm`` makes one or two. An
    unpadded batch is normalised at once; a padded one item by item over its
    valid frames, the padded frames being left at zero (they only reach invalid
    output frames of the next layers).

    Example
    -------
    >>> reference, fused = MaskedGroupNorm(4), FusedMaskedGroupNorm(4)
    >>> x = torch.randn(2, 4, 10)
    >>> mask = torch.arange(10)[None, :] < torch.tensor([[10], [6]])
    >>> torch.allclose((reference(x, mask) * mask[:, None]), fused(x, mask), atol=1e-5)
    True
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if bool(mask.all()):
            return F.group_norm(x, channels, self.weight, self.bias, self.eps)
        out = torch.zeros_like(x)
        for item, length in enumerate(mask.sum(dim=1).tolist()):
            valid = x[item : item + 1, :, :length]
            out[item, :, :length] = F.group_norm(valid, channels, self.weight, self.bias, self.eps)[0]
        return out


def fused_group_norm(student: nn.Module) -> nn.Module:
    """Swaps every MaskedGroupNorm of ``student`` for the fused one (same parameters)."""
    for module in student.modules():
        if type(module) is MaskedGroupNorm:
            module.__class__ = FusedMaskedGroupNorm
    return student


PATCHES: dict[str, Callable[[nn.Module], nn.Module]] = {"fused_group_norm": fused_group_norm}
