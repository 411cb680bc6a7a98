"""Export of a trained ASR model to SpeechBrain's pretrained-model layout, which ``speechbrain.inference`` loads.

It lives with the ASR task because the exported ``hyperparams.yaml`` is made
of the recipe's own entries: the downstream architecture as it was trained.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ruamel.yaml
import sentencepiece as spm
import torch
from hyperpyyaml.core import recursive_update
from speechbrain.dataio.encoder import CTCTextEncoder
from torch import nn

from speechbrain_gendistill.lobes.distilled import DistilledSSL, student_config
from speechbrain_gendistill.lobes.teacher import EmbeddedHFSSL, hf_model_config, save_hf_weights
from speechbrain_gendistill.tasks.asr.brains import ASRBrain

logger = logging.getLogger(__name__)

EXPORT_REPLACED = ("ssl", "num_ssl_layers", "ssl_dim", "tokenizer")
_REFERENCE = re.compile(r"<([^<>\[\]]+)")


def _references(node: Any) -> set[str]:
    """Top-level keys named by the ``!ref`` / ``!copy`` tags anywhere in a ruamel node."""
    found = set()
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag in ("!ref", "!copy"):
        found.update(name.split(".")[0] for name in _REFERENCE.findall(str(node.value)))
    if isinstance(node, dict):
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def _model_entries(hparams_file: str | Path, overrides: str | dict, roots: Iterable[str]) -> str:
    """The recipe YAML's entries that ``roots`` need, with their tags and references, as YAML text.

    The entries replaced by the export (:data:`EXPORT_REPLACED`) are left out.
    """
    yaml = ruamel.yaml.YAML()
    with open(hparams_file, encoding="utf-8") as handle:
        tree = yaml.load(handle)
    if overrides:
        recursive_update(tree, yaml.load(overrides) if isinstance(overrides, str) else overrides, must_match=False)
    needed, todo = set(), list(roots)
    while todo:
        key = todo.pop()
        if key in needed or key in EXPORT_REPLACED:
            continue
        if key not in tree:
            raise KeyError(f"{hparams_file}: the export needs the key {key!r}")
        needed.add(key)
        todo.extend(_references(tree[key]))
    stream = io.StringIO()
    yaml.dump({key: tree[key] for key in tree if key in needed}, stream)
    return stream.getvalue()


def _export_ssl(ssl: nn.Module, folder: Path) -> tuple[str, dict[str, str]]:
    """Saves the SSL lobe's current weights in ``folder``.

    Returns the YAML entries that rebuild it, and the Pretrainer loadables
    (name -> key) that load its weights. The encoder travels inside the folder
    as its architecture in the YAML (a student's export config, or a
    HuggingFace model's config) and its weights in ``ssl.ckpt`` (safetensors),
    which the Pretrainer fetches like the other files: the folder names no
    path of this machine, so it can be moved, or uploaded to the hub and
    loaded by its id.
    """
    common = f"    output_norm: {json.dumps(bool(ssl.output_norm))}\n    freeze: True\n    output_all_hiddens: True\n"
    if isinstance(ssl, DistilledSSL):
        ssl.save_weights(folder / "ssl.ckpt")
        entry = (
            "ssl: !new:speechbrain_gendistill.lobes.DistilledSSL\n"
            f"    student_config: {json.dumps(student_config(ssl.model))}\n" + common
        )
    else:  # a HuggingFace teacher standing in for the student, in SpeechBrain's lobe
        save_hf_weights(ssl.model, folder / "ssl.ckpt")
        entry = (
            f"ssl: !new:{EmbeddedHFSSL.__module__}.{EmbeddedHFSSL.__name__}\n"
            f"    model_config: {json.dumps(hf_model_config(ssl.model))}\n"
            f"    normalize_wav: {json.dumps(bool(ssl.normalize_wav))}\n" + common
        )
    return entry, {"ssl": "ssl"}


def export_asr(
    folder: str | Path,
    brain_class: type[ASRBrain],
    hparams: dict,
    tokenizer: CTCTextEncoder | spm.SentencePieceProcessor,
    hparams_file: str | Path,
    overrides: str | dict | None = None,
) -> Path:
    """Writes the trained ASR in SpeechBrain's pretrained-model layout, loadable offline with ``speechbrain.inference``.

    ``folder`` receives ``hyperparams.yaml``, ``model.ckpt`` (the downstream
    modules' state dict), ``tokenizer.ckpt`` and the SSL encoder's current
    weights as ``ssl.ckpt`` (safetensors): a student's, loaded by
    ``DistilledSSL.load_weights``, or those of a HuggingFace teacher standing
    in for the student, loaded by ``EmbeddedHFSSL.load_weights``; the
    encoder's architecture is in the YAML. The folder names nothing outside
    itself, so it can be moved, or shared on the hub and loaded by its id.
    ``hyperparams.yaml`` holds the recipe YAML's entries that the model needs,
    so any downstream architecture set there is rebuilt as it was trained.

    Arguments
    ---------
    folder : str or Path
        Where the model goes (created if needed).
    brain_class : type
        :class:`CTCBrain` (loaded by ``EncoderASR``) or :class:`CTCAttentionBrain` (``EncoderDecoderASR``).
    hparams : dict
        The loaded recipe YAML, with the trained modules.
    tokenizer : CTCTextEncoder or sentencepiece.SentencePieceProcessor
        The recipe's tokenizer.
    hparams_file : str or Path
        The recipe's YAML file, and ``overrides`` (a YAML string or a dict) as they were applied.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, CTCTextEncoder):
        tokenizer.save(str(folder / "tokenizer.ckpt"))
        tokenizer_entry = "tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder\n"
    else:
        (folder / "tokenizer.ckpt").write_bytes(tokenizer.serialized_model_proto())
        tokenizer_entry = "tokenizer: !new:sentencepiece.SentencePieceProcessor\n"
    state = {name: tensor.detach().cpu() for name, tensor in hparams["model"].state_dict().items()}
    torch.save(state, folder / "model.ckpt")
    ssl_entries, ssl_loadables = _export_ssl(hparams["ssl"], folder)
    loadables = {"model": "model", "tokenizer": "tokenizer", **ssl_loadables}
    modules = "".join(f"    {name}: !ref <{key}>\n" for name, key in brain_class.export_modules.items())
    text = (
        f"# An ASR model exported by speechbrain-gendistill ({brain_class.__name__}).\n"
        f"#   from speechbrain.inference.ASR import {brain_class.inference_class}\n"
        f"#   asr = {brain_class.inference_class}.from_hparams(source=<this folder>, savedir=<a cache folder>)\n"
        "#   asr.transcribe_file(<audio file>)\n\n"
        + ssl_entries
        + f"num_ssl_layers: {int(hparams['num_ssl_layers'])}\n"
        + f"ssl_dim: {int(hparams['ssl_dim'])}\n"
        + tokenizer_entry
        + _model_entries(hparams_file, overrides, brain_class.export_roots)
        + f"modules:\n{modules}"
        + "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        + "    loadables:\n"
        + "".join(f"        {name}: !ref <{key}>\n" for name, key in loadables.items())
    )
    (folder / "hyperparams.yaml").write_text(text, encoding="utf-8")
    logger.info("exported the ASR model to %s", folder)
    return folder
