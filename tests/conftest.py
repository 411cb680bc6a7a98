"""Shared fixtures: small local HF teachers, saved exactly as a hub model is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

SMALL_CONV = dict(
    conv_dim=(32,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
)
SMALL_ENCODER = dict(
    hidden_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=96,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def save_small_teacher(folder: Path, kind: str, seed: int = 0) -> Path:
    """A randomly initialised WavLM or HuBERT with a small config, saved like a hub model."""
    torch.manual_seed(seed)
    if kind == "wavlm":
        model = WavLMModel(WavLMConfig(**SMALL_CONV, **SMALL_ENCODER))
    else:
        model = HubertModel(HubertConfig(**SMALL_CONV, **SMALL_ENCODER))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def wavlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_teacher(tmp_path_factory.mktemp("wavlm"), "wavlm")


@pytest.fixture(scope="session")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_teacher(tmp_path_factory.mktemp("hubert"), "hubert")
