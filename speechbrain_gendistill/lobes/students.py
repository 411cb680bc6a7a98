"""The students: GenDistiller and the DistilHuBERT baseline.

Both share the front-end (waveform CNN, LayerNorm, Linear to the model width,
convolutional positional embedding) and the contract of SpeechBrain's HF SSL
lobes: ``forward(wavs, wav_lens)`` gives [B, T, D], or [N, B, T, D] with
``output_all_hiddens=True`` (the first ``max_layers`` only, when set: an early
exit). ``predict_targets`` gives the K predicted teacher layers [K, B, T, D_t]
that distillation trains on. :func:`parameter_counts` counts both the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_gendistill.core.frames import ConvSpec
from speechbrain_gendistill.lobes.attention import key_padding_mask
from speechbrain_gendistill.lobes.components import TransformerBlock
from speechbrain_gendistill.lobes.from_teacher import (
    Group,
    copy_groups,
    encoder_layer_group,
    layer_norm_group,
    positional_group,
)
from speechbrain_gendistill.lobes.frontend import FrontEnd
from speechbrain_gendistill.lobes.generator import LayerGenerator

__all__ = ["FrontEnd", "DistillationStudent", "GenDistillStudent", "DistilHuBERTStudent", "parameter_counts"]


class DistillationStudent(nn.Module):
    """What both students share: the front-end, the SSL lobe contract, the initialisation from a teacher."""

    # Prefixes of the parameters only distillation trains: an export leaves them out.
    DISTILLATION_ONLY: tuple[str, ...] = ()

    def __init__(self, config: dict, num_outputs: int) -> None:
        super().__init__()
        # The constructor's arguments: what an exported student needs to be rebuilt.
        self.config = {name: value for name, value in config.items() if name not in ("self", "__class__")}
        self.output_all_hiddens = config["output_all_hiddens"]
        self.max_layers = config["max_layers"]
        if self.max_layers is not None and not 1 <= self.max_layers <= num_outputs:
            raise ValueError(f"max_layers={self.max_layers}: this {type(self).__name__} has layers 1..{num_outputs}")
        self.frontend = FrontEnd(
            config["d_model"],
            config["conv_layers"],
            config["extractor_norm"],
            config["pos_conv_kernel"],
            config["pos_conv_groups"],
            config["dropout"],
            config["cnn_grad_scale"],
        )

    def predict_targets(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
        detach_history: bool = False,
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
        """Initialises the front-end's CNN, LayerNorm and projection from a HF teacher's state where shapes match."""
        return ["frontend." + name for name in self.frontend.load_teacher_cnn(teacher_state)]

    def teacher_groups(self, encoder: bool) -> list[Group]:
        """What :meth:`load_teacher` copies after the CNN: the positional convolution."""
        return [positional_group()]

    def load_teacher(self, teacher_state: dict[str, torch.Tensor], encoder: bool = True) -> list[str]:
        """Initialises every part with a same-shaped counterpart in a HF teacher's state dict; returns their names.

        The CNN, LayerNorm and projection of :meth:`load_teacher_cnn`, the
        positional convolution and, with ``encoder`` (a teacher whose layers
        are post-LN, wav2vec 2.0 Base style), what the student has of the
        teacher's encoder (DistilHuBERT: its LayerNorm and first layers).
        """
        return self.load_teacher_cnn(teacher_state) + copy_groups(self, self.teacher_groups(encoder), teacher_state)


def parameter_counts(student: DistillationStudent) -> dict[str, int]:
    """A student's parameters at inference (what an export keeps) and in distillation (all it trains).

    The two differ by the parts only distillation uses: DistilHuBERT's
    prediction heads (none once dropped); GenDistiller has no such part.

    Example
    -------
    >>> student = DistilHuBERTStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1, num_heads=4,
    ...     d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> counts = parameter_counts(student)
    >>> counts["distillation"] - counts["inference"] == sum(p.numel() for p in student.prediction_heads.parameters())
    True
    """
    counts = {"inference": 0, "distillation": 0}
    for name, parameter in student.named_parameters():
        counts["distillation"] += parameter.numel()
        if not name.startswith(student.DISTILLATION_ONLY):
            counts["inference"] += parameter.numel()
    return counts


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
    residual : str
        ``"projection"`` (y_k = out_proj(z_k) + skip(u_k)) or ``"identity"``
        (y_k = previous layer + out_proj(z_k)); see :class:`LayerGenerator`.
    per_step_output : bool
        One output projection per generated layer instead of one shared.
    cnn_grad_scale : float
        Multiplies the gradients flowing into the CNN (1.0: unchanged).
    max_layers : int, optional
        An early exit: ``forward`` generates the first ``max_layers`` layers
        only (that many steps are computed). Not part of an export's config.

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
    >>> student.hidden_states(wavs, num_steps=2).shape
    torch.Size([2, 2, 159, 24])
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
        residual: str = "projection",
        per_step_output: bool = False,
        cnn_grad_scale: float = 1.0,
        max_layers: int | None = None,
    ) -> None:
        super().__init__(locals(), num_outputs=num_target_layers)
        self.generator = LayerGenerator(
            d_model,
            target_dim,
            num_target_layers,
            num_layers,
            num_heads,
            d_ffn,
            dropout,
            residual=residual,
            per_step_output=per_step_output,
        )

    def predict_targets(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
        detach_history: bool = False,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """The K generated layers [K, B, T, D_t]: teacher forcing when ``teacher_history`` is given, else free running.

        With ``teacher_history`` and ``0 < teacher_history_prob < 1``, each
        step and utterance reads the teacher's previous layer with that
        probability and its own otherwise (scheduled sampling, computed step by
        step). ``detach_history``: no gradient flows back through the student's
        own layers read as history. ``num_steps``: the first layers only.
        """
        x0, mask = self.frontend(wavs, wav_lens)
        return self.generator(x0, mask, teacher_history, teacher_history_prob, detach_history, num_steps)

    def hidden_states(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None, num_steps: int | None = None
    ) -> torch.Tensor:
        """The generated layers, free running: the first ``num_steps`` (default ``max_layers``, else all K)."""
        return self.predict_targets(wavs, wav_lens, num_steps=self.max_layers if num_steps is None else num_steps)


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
    cnn_grad_scale : float
        Multiplies the gradients flowing into the CNN (s3prl: 0.1; 1.0: unchanged).
    max_layers : int, optional
        An early exit: ``forward`` runs the first ``max_layers`` encoder layers
        only and returns [max_layers + 1, B, T, d_model] with
        ``output_all_hiddens``. The prediction heads still read the last layer.

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
    >>> student.hidden_states(wavs, num_layers=1).shape
    torch.Size([2, 2, 159, 16])
    """

    DISTILLATION_ONLY = ("prediction_heads.",)

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
        cnn_grad_scale: float = 1.0,
        max_layers: int | None = None,
    ) -> None:
        super().__init__(locals(), num_outputs=num_layers)
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

    def hidden_states(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None, num_layers: int | None = None
    ) -> torch.Tensor:
        """The encoder input and the outputs of its first ``num_layers`` layers (default ``max_layers``, else all)."""
        x, mask = self.frontend(wavs, wav_lens)
        x = self.encoder_dropout(self.encoder_norm(x))
        attn_mask = key_padding_mask(mask)
        limit = self.max_layers if num_layers is None else num_layers
        hiddens = [x]
        for layer in self.layers[:limit]:
            hiddens.append(layer(hiddens[-1], attn_mask))
        return torch.stack(hiddens)

    def predict_targets(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        teacher_history: torch.Tensor | None = None,
        teacher_history_prob: float = 1.0,
        detach_history: bool = False,
    ) -> torch.Tensor:
        """[K, B, T, D_t] from the heads on the last layer; the teacher's layers are not used."""
        if self.prediction_heads is None:
            raise RuntimeError("the prediction heads were dropped: this student only serves as an encoder now")
        last = self.hidden_states(wavs, wav_lens, num_layers=len(self.layers))[-1]
        return self.prediction_heads(last).permute(2, 0, 1, 3)

    def drop_prediction_heads(self) -> None:
        """Removes the heads once distillation is over: they are not part of the model used after it."""
        self.prediction_heads = None

    def teacher_groups(self, encoder: bool) -> list[Group]:
        """The positional convolution; with ``encoder``, the encoder LayerNorm and the teacher's first layers."""
        groups = super().teacher_groups(encoder)
        if encoder:
            groups.append(layer_norm_group("encoder_norm", "encoder.layer_norm"))
            groups += [encoder_layer_group(f"layers.{index}.", index) for index in range(len(self.layers))]
        return groups
