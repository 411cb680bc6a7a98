"""Initialising a student from its HF teacher's weights, where the shapes allow it.

s3prl's DistilHuBERT starts from its teacher: the CNN, the positional
convolution and the first transformer layers. This module maps the tensor
names of a HF wav2vec 2.0 / HuBERT / WavLM state dict to a student's. Tensors
are copied in groups (one CNN tensor; the positional convolution; the encoder
LayerNorm; one transformer layer): a group is copied only when every one of its
tensors exists in the teacher with the student's shape, so that no part is
left half initialised.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from speechbrain_gendistill.lobes.teacher import SSLTeacher

logger = logging.getLogger(__name__)

# HF names of the positional convolution's weight norm: (older transformers, newer) for g, then v.
WEIGHT_NORM_NAMES = (
    ("weight_g", "parametrizations.weight.original0"),
    ("weight_v", "parametrizations.weight.original1"),
)
HF_ATTENTION = re.compile(r"^(encoder\.layers\.\d+\.attention)\.q_proj\.(weight|bias)$")

Group = dict[str, str]  # the student's tensor name -> the teacher's


def normalise_teacher_state(teacher_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A HF teacher's state dict with the names the mappings read.

    Weight norm under either of transformers' namings (``weight_g`` /
    ``weight_v``, or the ``parametrizations.weight.original0`` /
    ``original1`` of ``torch.nn.utils.parametrizations.weight_norm``) appears
    under the latter; each layer's separate q, k and v projections also appear
    packed as one ``attention.in_proj``, in the order the student's attention
    splits its packed projection (q, k, v).

    Example
    -------
    >>> state = {"encoder.pos_conv_embed.conv.weight_g": torch.ones(1, 1, 4)}
    >>> for part in ("q", "k", "v"):
    ...     state[f"encoder.layers.0.attention.{part}_proj.weight"] = torch.ones(2, 2) * "qkv".index(part)
    >>> normal = normalise_teacher_state(state)
    >>> normal["encoder.pos_conv_embed.conv.parametrizations.weight.original0"].shape
    torch.Size([1, 1, 4])
    >>> normal["encoder.layers.0.attention.in_proj.weight"][:, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    """
    state = dict(teacher_state)
    for old, new in WEIGHT_NORM_NAMES:
        for name in [name for name in state if name.endswith(f".{old}")]:
            state.setdefault(name[: -len(old)] + new, state[name])
    for name in list(state):
        match = HF_ATTENTION.match(name)
        if match is None:
            continue
        prefix, kind = match.groups()
        parts = [state.get(f"{prefix}.{part}_proj.{kind}") for part in ("q", "k", "v")]
        if all(part is not None for part in parts):
            state[f"{prefix}.in_proj.{kind}"] = torch.cat(parts, dim=0)
    return state


def cnn_groups(frontend: nn.Module, prefix: str = "") -> list[Group]:
    """One group per tensor of a FrontEnd's CNN, its LayerNorm and its projection to the model width."""
    groups = []
    for name in frontend.feature_extractor.state_dict():
        # HF calls the first layer's GroupNorm (or each layer's LayerNorm) ``layer_norm``.
        teacher_name = "feature_extractor." + name.replace(".norm.", ".layer_norm.")
        groups.append({f"{prefix}feature_extractor.{name}": teacher_name})
    for name in frontend.layer_norm.state_dict():
        groups.append({f"{prefix}layer_norm.{name}": f"feature_projection.layer_norm.{name}"})
    for name in frontend.projection.state_dict():
        groups.append({f"{prefix}projection.{name}": f"feature_projection.projection.{name}"})
    return groups


def positional_group(prefix: str = "frontend.positional.") -> Group:
    """The convolutional positional embedding: bias and weight norm's g and v."""
    names = ["bias", "parametrizations.weight.original0", "parametrizations.weight.original1"]
    return {f"{prefix}conv.{name}": f"encoder.pos_conv_embed.conv.{name}" for name in names}


def layer_norm_group(own: str, teacher: str) -> Group:
    return {f"{own}.{name}": f"{teacher}.{name}" for name in ("weight", "bias")}


def encoder_layer_group(own_prefix: str, teacher_index: int) -> Group:
    """A post-LN TransformerBlock from HF encoder layer ``teacher_index`` (wav2vec 2.0 Base style).

    Attention (q, k, v packed, and the output projection), the feed-forward
    (``intermediate_dense``, ``output_dense``) and both LayerNorms.
    """
    layer = f"encoder.layers.{teacher_index}"
    group = {}
    for name in ("weight", "bias"):
        group[f"{own_prefix}attention.in_proj.{name}"] = f"{layer}.attention.in_proj.{name}"
        group[f"{own_prefix}attention.out_proj.{name}"] = f"{layer}.attention.out_proj.{name}"
        group[f"{own_prefix}feed_forward.0.{name}"] = f"{layer}.feed_forward.intermediate_dense.{name}"
        group[f"{own_prefix}feed_forward.3.{name}"] = f"{layer}.feed_forward.output_dense.{name}"
    group.update(layer_norm_group(f"{own_prefix}attention_norm", f"{layer}.layer_norm"))
    group.update(layer_norm_group(f"{own_prefix}feed_forward_norm", f"{layer}.final_layer_norm"))
    return group


@torch.no_grad()
def copy_groups(module: nn.Module, groups: list[Group], teacher_state: dict[str, torch.Tensor]) -> list[str]:
    """Copies each group whose tensors all exist in ``teacher_state`` with ``module``'s shapes.

    Returns the names (in ``module``) of the copied tensors.

    Example
    -------
    >>> student = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3))
    >>> teacher = {"a.weight": torch.ones(3, 2), "a.bias": torch.ones(3), "b.weight": torch.ones(4, 3)}
    >>> copy_groups(student, [{"0.weight": "a.weight", "0.bias": "a.bias"}, {"1.weight": "b.weight"}], teacher)
    ['0.weight', '0.bias']
    """
    teacher_state = normalise_teacher_state(teacher_state)
    own = module.state_dict()
    copied = []
    for group in groups:
        sources = {name: teacher_state.get(teacher_name) for name, teacher_name in group.items()}
        if all(source is not None and source.shape == own[name].shape for name, source in sources.items()):
            for name, source in sources.items():
                own[name].copy_(source)
            copied.extend(group)
    return copied


def teacher_encoder_fits(num_heads: int | None, teacher: SSLTeacher) -> bool:
    """Whether a student encoder of ``num_heads`` heads can start from the teacher's: post-LN, as many heads.

    A WavLM's layers also hold a relative position bias, which the student's
    attention has no counterpart for: its layers start from the rest.
    """
    if teacher.layer_norm_first:
        logger.info("teacher %s is pre-LN (Large style): its encoder layers are not copied", teacher.source)
        return False
    if num_heads != teacher.num_heads:
        logger.info("the student has %s heads, the teacher %d: no layer is copied", num_heads, teacher.num_heads)
        return False
    if teacher.model_type == "wavlm":
        logger.info("WavLM's relative position bias has no counterpart in the student: its layers start without it")
    return True
