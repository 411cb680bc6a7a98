"""The frozen SSL teacher on SpeechBrain's HuggingFace lobes, and HF model folders in the hub's layout.

A teacher is any wav2vec 2.0 / HuBERT / WavLM that ``transformers`` can load:
a hub id or a local folder (:func:`resolve_hf_model` fetches a hub id through
the HuggingFace cache). :func:`hf_lobe_class` picks SpeechBrain's lobe
for its model type and :func:`hf_conv_layers` reads its CNN from its config.
:func:`save_hf_model` and :func:`save_random_model` write such folders (the
demo's teachers, the benchmarks' and the tests' random ones), laid out as a
hub model is, so that they load through exactly the code path a hub name takes.
:class:`EmbeddedHFSSL` is SpeechBrain's lobe rebuilt from a config, its weights
from a safetensors file: how an exported ASR model carries a teacher.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from speechbrain.integrations.huggingface.hubert import HuBERT
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
from speechbrain.integrations.huggingface.wavlm import WavLM
from speechbrain.utils.checkpoints import mark_as_transfer, register_checkpoint_hooks
from torch import nn
from transformers import (
    AutoConfig,
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from speechbrain_gendistill.core.frames import ConvSpec
from speechbrain_gendistill.core.hub import is_hub_id, resolve_source

# model_type -> (SpeechBrain's lobe, HF config class, HF model class)
HF_SSL_MODELS = {
    "wavlm": (WavLM, WavLMConfig, WavLMModel),
    "hubert": (HuBERT, HubertConfig, HubertModel),
    "wav2vec2": (Wav2Vec2, Wav2Vec2Config, Wav2Vec2Model),
}
# The files of a saved model, as a hub repository holds them.
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
# What is fetched of a hub model: its JSON configs and safetensors weights, or PyTorch weights when it has no
# safetensors (transformers reads those with torch.load(weights_only=True)); never code.
HUB_MODEL_FILES = ("*.json", "*.safetensors")
HUB_MODEL_FILES_TORCH = ("*.json", "*.bin")


def resolve_hf_model(source: str | Path) -> str:
    """The local folder of a HF model: ``source`` itself, or a hub id's snapshot in the HuggingFace cache.

    Offline (``HF_HUB_OFFLINE=1``) the cache alone is read; a missing id is a
    ``FileNotFoundError`` that names it and says how to get it.

    Example
    -------
    >>> folder = tempfile.mkdtemp()
    >>> resolve_hf_model(folder) == folder
    True
    """
    folder = resolve_source(source, files=HUB_MODEL_FILES, required=("config.json",))
    if not any(folder.glob("*.safetensors")):
        folder = resolve_source(source, files=HUB_MODEL_FILES_TORCH, required=("config.json",))
        if is_hub_id(str(source)) and not any(folder.glob("*.bin")):
            raise FileNotFoundError(
                f"the hub model {source} (cached in {folder}) has no weights (*.safetensors or *.bin); "
                f"download them with `hf download {source}`"
            )
    return str(folder)


def hf_lobe_class(model_type: str, source: str) -> type[nn.Module]:
    """SpeechBrain's HF lobe for a model type; an unsupported type is an error naming ``source``.

    Example
    -------
    >>> hf_lobe_class("wavlm", "microsoft/wavlm-base-plus").__name__
    'WavLM'
    >>> hf_lobe_class("bert", "bert-base-uncased")
    Traceback (most recent call last):
    ...
    ValueError: 'bert-base-uncased' is a 'bert' model; supported: ['hubert', 'wav2vec2', 'wavlm']
    """
    if model_type not in HF_SSL_MODELS:
        raise ValueError(f"{source!r} is a {model_type!r} model; supported: {sorted(HF_SSL_MODELS)}")
    return HF_SSL_MODELS[model_type][0]


def hf_conv_layers(config: PretrainedConfig) -> ConvSpec:
    """The (channels, kernel, stride) of each CNN layer of a HF wav2vec 2.0-style config.

    Example
    -------
    >>> hf_conv_layers(WavLMConfig())[:2]
    [(512, 10, 5), (512, 3, 2)]
    """
    return list(zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=True))


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
    model's config), so ``source`` is a hub id or a local folder holding a
    ``save_pretrained`` model and its feature-extractor config. A hub id is
    fetched into the HuggingFace cache (:func:`resolve_hf_model`; offline, read
    from it). Always in eval mode and without gradients; its weights belong to
    no checkpoint.

    Arguments
    ---------
    source : str
        Hub id (e.g. ``microsoft/wavlm-base-plus``) or local folder.
    target_layers : list of int
        Layers to return, 1..L (``hidden_states[l]`` is the output of layer l).
    save_path : str
        Passed to SpeechBrain's lobe as its ``save_path`` (hub downloads go to the HuggingFace cache).

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
        folder = resolve_hf_model(source)
        config = AutoConfig.from_pretrained(folder)
        lobe = hf_lobe_class(config.model_type, source)
        self.source = source
        self.model_type = config.model_type
        self.hidden_size = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers)
        self.conv_layers = hf_conv_layers(config)
        self.extractor_norm = "group_norm" if config.feat_extract_norm == "group" else "layer_norm"
        # What a student's encoder must share with the teacher's to start from its layers.
        self.num_heads = int(config.num_attention_heads)
        self.layer_norm_first = bool(getattr(config, "do_stable_layer_norm", False))
        self.target_layers = check_target_layers(target_layers, self.num_layers, f"teacher {source!r}")
        self.ssl = lobe(folder, save_path=save_path, freeze=True, output_all_hiddens=True)
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


def feature_extractor_config() -> Wav2Vec2FeatureExtractor:
    """The preprocessor config saved beside a model: 16 kHz, no normalisation (audio here is level-normalised)."""
    return Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)


def save_hf_model(model: PreTrainedModel, folder: str | Path) -> Path:
    """Saves an HF SSL model and its feature-extractor config as a hub model is laid out.

    The files are written to a temporary folder first and moved in place, so
    a folder holding ``config.json`` is always complete.

    Example
    -------
    >>> model = WavLMModel(WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2))
    >>> folder = save_hf_model(model, Path(tempfile.mkdtemp()) / "teacher")
    >>> sorted(path.name for path in folder.iterdir())
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    staging.chmod(0o755)  # a model folder like any other (mkdtemp makes it private)
    try:
        model.save_pretrained(staging)
        feature_extractor_config().save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def is_saved_model(folder: str | Path) -> bool:
    """True when ``folder`` holds a complete model written by :func:`save_hf_model`."""
    return all((Path(folder) / name).is_file() for name in MODEL_FILES)


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), to compare configs."""
    return json.loads(json.dumps(value))


def save_random_model(
    folder: str | Path, model_config: dict[str, Any], seed: int = 0, model_type: str = "wavlm"
) -> str:
    """Writes a randomly initialised HF SSL model with ``model_config`` to ``folder``; returns the folder.

    An existing folder is reused when its config agrees with ``model_config``;
    one that disagrees is an error (it would silently train another model).

    Arguments
    ---------
    folder : str or Path
        Where the model goes.
    model_config : dict
        Keyword arguments of the model type's HF config class (e.g. ``transformers.WavLMConfig``).
    seed : int
        Seed of the initialisation (the global generator is left as it was).
    model_type : str
        ``"wavlm"``, ``"hubert"`` or ``"wav2vec2"``.

    Example
    -------
    >>> config = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    ...     conv_dim=[8] * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> folder = save_random_model(Path(tempfile.mkdtemp()) / "init", config)
    >>> WavLMConfig.from_pretrained(folder).num_hidden_layers
    2
    >>> save_random_model(folder, {**config, "hidden_size": 32})
    Traceback (most recent call last):
    ...
    ValueError: .../init holds a model whose config differs from the one asked for (hidden_size: 16 != 32); ...
    """
    folder = Path(folder)
    hf_lobe_class(model_type, str(folder))
    _, config_class, model_class = HF_SSL_MODELS[model_type]
    if is_saved_model(folder):
        saved = json.loads((folder / "config.json").read_text())
        wanted = config_class(**model_config).to_dict()
        differ = [
            f"{key}: {_plain(saved.get(key))} != {_plain(value)}"
            for key, value in model_config.items()
            if _plain(saved.get(key)) != _plain(wanted[key])
        ]
        if saved.get("model_type") != model_type:
            differ.insert(0, f"model_type: {saved.get('model_type')} != {model_type}")
        if differ:
            raise ValueError(
                f"{folder} holds a model whose config differs from the one asked for ({', '.join(differ)}); "
                "remove the folder or choose another one"
            )
        return str(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config_class(**model_config))
    save_hf_model(model, folder)
    return str(folder)


def hf_model_config(model: PreTrainedModel) -> dict[str, Any]:
    """An HF model's config as JSON data, without the private fields that name the folder it was read from.

    Example
    -------
    >>> model = WavLMModel.from_pretrained(save_random_model(Path(tempfile.mkdtemp()), dict(hidden_size=16,
    ...     num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=[8] * 7,
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)))
    >>> config = hf_model_config(model)
    >>> config["model_type"], [key for key in config if key.startswith("_")]
    ('wavlm', [])
    """
    return _plain({key: value for key, value in model.config.to_dict().items() if not key.startswith("_")})


@register_checkpoint_hooks
class EmbeddedHFSSL(Wav2Vec2):
    """SpeechBrain's HF SSL lobe built from a config alone, its weights loaded by a SpeechBrain ``Pretrainer``.

    This is how an exported ASR model carries a wav2vec 2.0 / HuBERT / WavLM
    that stood in for a student: the model's config inline in its
    ``hyperparams.yaml``, its weights in a safetensors file beside it that the
    ``Pretrainer`` fetches like the folder's other files. The folder then names
    no path of the machine that wrote it: it can be moved, or uploaded to the
    hub and loaded by its id. The computation is SpeechBrain's own
    (``Wav2Vec2.extract_features``, which its HuBERT and WavLM lobes share), so
    the model encodes as it did in the recipe.

    Arguments
    ---------
    model_config : dict
        The HF model's config (:func:`hf_model_config`), ``model_type`` included.
    normalize_wav : bool
        Normalise each waveform first (the feature extractor's ``do_normalize``).
    output_norm : bool
        Layer-normalise the outputs, as SpeechBrain's lobe does.
    freeze : bool
        Frozen (eval mode, no gradients) or trainable.
    output_all_hiddens : bool
        Return every hidden state [L + 1, B, T, D] instead of the last [B, T, D].

    Example
    -------
    >>> config = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    ...     conv_dim=[8] * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> source = save_random_model(Path(tempfile.mkdtemp()) / "wavlm", config)
    >>> lobe = WavLM(source, save_path=source, freeze=True, output_all_hiddens=True)
    >>> path = Path(tempfile.mkdtemp()) / "ssl.ckpt"
    >>> save_hf_weights(lobe.model, path)
    >>> embedded = EmbeddedHFSSL(hf_model_config(lobe.model), output_all_hiddens=True)
    >>> embedded.load_weights(path)
    >>> wavs = torch.randn(2, 4000)
    >>> torch.equal(embedded(wavs, torch.tensor([1.0, 0.6])), lobe(wavs, torch.tensor([1.0, 0.6])))
    True
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        normalize_wav: bool = False,
        output_norm: bool = False,
        freeze: bool = True,
        output_all_hiddens: bool = False,
    ) -> None:
        # Not SpeechBrain's constructor: it reads the config and the weights from a source folder or hub id.
        nn.Module.__init__(self)
        model_type = model_config.get("model_type")
        hf_lobe_class(model_type, "EmbeddedHFSSL's model_config")
        _, config_class, model_class = HF_SSL_MODELS[model_type]
        self.model = model_class(config_class.from_dict(model_config))
        self.normalize_wav = normalize_wav
        self.output_norm = output_norm
        self.output_all_hiddens = output_all_hiddens
        self.freeze = freeze
        self.freeze_feature_extractor = False
        if freeze:
            self.freeze_model(self.model)

    @mark_as_transfer
    def load_weights(self, path: str | Path) -> None:
        """The ``Pretrainer``'s hook: every weight of the model from a safetensors file, never a pickle."""
        try:
            weights = load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(
                f"{path} is not a safetensors file ({error}); refusing to load it any other way"
            ) from error
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit this {type(self.model).__name__}: missing {missing}, unexpected {unexpected}"
            )


def save_hf_weights(model: PreTrainedModel, path: str | Path) -> None:
    """Writes an HF model's weights to the safetensors file that :meth:`EmbeddedHFSSL.load_weights` reads."""
    save_file({name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}, str(path))
