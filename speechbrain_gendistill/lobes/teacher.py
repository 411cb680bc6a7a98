"""The frozen SSL teacher, on SpeechBrain's HuggingFace lobes."""

from __future__ import annotations

import torch
from speechbrain.integrations.huggingface.hubert import HuBERT
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
from speechbrain.integrations.huggingface.wavlm import WavLM
from torch import nn
from transformers import AutoConfig

TEACHER_LOBES = {"wavlm": WavLM, "hubert": HuBERT, "wav2vec2": Wav2Vec2}


def check_target_layers(target_layers: list[int], num_layers: int, source: str = "the teacher") -> list[int]:
    """Validates an increasing list of layers in 1..num_layers.

    Example
    -------
    >>> check_target_layers([4, 8, 12], 12)
    [4, 8, 12]
    >>> check_target_layers([0, 13], 12)
    Traceback (most recent call last):
    ...
    ValueError: target_layers [0, 13]: the teacher has layers 1..12; 0 and 13 are outside that range
    """
    layers = [int(layer) for layer in target_layers]
    outside = [layer for layer in layers if not 1 <= layer <= num_layers]
    if outside:
        names = " and ".join(str(layer) for layer in outside)
        raise ValueError(
            f"target_layers {layers}: {source} has layers 1..{num_layers}; {names} "
            f"{'is' if len(outside) == 1 else 'are'} outside that range"
        )
    if not layers or any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
        raise ValueError(f"target_layers {layers} must be a non-empty, strictly increasing list")
    return layers


class SSLTeacher(nn.Module):
    """A frozen wav2vec 2.0 / HuBERT / WavLM whose chosen layers are the targets.

    Built on ``speechbrain.integrations.huggingface`` (the lobe is picked from the
    model's config), so ``source`` is a hub name or a local folder holding a
    ``save_pretrained`` model and its feature-extractor config. Always in eval
    mode and without gradients; its weights belong to no checkpoint.

    Arguments
    ---------
    source : str
        Hub name (e.g. ``microsoft/wavlm-base-plus``) or local folder.
    target_layers : list of int
        Layers to return, 1..L (``hidden_states[l]`` is the output of layer l).
    save_path : str
        Download cache of the hub model.

    Example
    -------
    >>> import tempfile
    >>> from transformers import WavLMConfig, WavLMModel, Wav2Vec2FeatureExtractor
    >>> folder = tempfile.mkdtemp()
    >>> config = WavLMConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
    ...     intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2)
    >>> WavLMModel(config).save_pretrained(folder)
    >>> _ = Wav2Vec2FeatureExtractor().save_pretrained(folder)
    >>> teacher = SSLTeacher(folder, target_layers=[1, 3], save_path=folder)
    >>> teacher.hidden_size, teacher.num_layers
    (32, 3)
    >>> teacher(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 2, 49, 32])
    """

    def __init__(self, source: str, target_layers: list[int], save_path: str) -> None:
        super().__init__()
        config = AutoConfig.from_pretrained(source, cache_dir=save_path)
        lobe = TEACHER_LOBES.get(config.model_type)
        if lobe is None:
            raise ValueError(f"teacher {source!r} is a {config.model_type!r} model; supported: {sorted(TEACHER_LOBES)}")
        self.source = source
        self.model_type = config.model_type
        self.hidden_size = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers)
        self.conv_layers = list(zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=False))
        self.extractor_norm = "group_norm" if config.feat_extract_norm == "group" else "layer_norm"
        self.target_layers = check_target_layers(target_layers, self.num_layers, f"teacher {source!r}")
        self.ssl = lobe(source, save_path=save_path, freeze=True, output_all_hiddens=True)
        self.ssl.eval()

    def train(self, mode: bool = True) -> SSLTeacher:
        """The teacher stays in eval mode whatever the Brain asks."""
        return super().train(False)

    def model_state(self) -> dict[str, torch.Tensor]:
        """The HF model's state dict, to initialise a student's CNN from."""
        return self.ssl.model.state_dict()

    @torch.no_grad()
    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """[B, S] waveforms -> [K, B, T, D] hidden states of the target layers."""
        hiddens = self.ssl(wavs, wav_lens)
        return hiddens[self.target_layers]
