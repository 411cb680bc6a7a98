"""A DistilHuBERT student as a native ``transformers`` HuBERT folder, which any HF or SpeechBrain tool reads.

The baseline student is wav2vec 2.0 Base's architecture at another depth: the
same CNN (first-layer GroupNorm, or a LayerNorm after every layer), LayerNorm
and projection, weight-normed positional convolution, encoder LayerNorm and
post-LN transformer layers. :func:`export_huggingface` maps its weights onto
``transformers.HubertModel`` (packed attention projections split into q, k and
v) and writes ``config.json``, ``model.safetensors``,
``preprocessor_config.json`` and a model card, so that
``AutoModel.from_pretrained`` and SpeechBrain's ``HuBERT`` lobe load it with
no code of this package. A student with a piece HuBERT lacks (GenDistiller's
layer generator, the baseline's training heads) is refused.

One difference remains on padded batches: HF's group-norm CNN takes its
statistics over the padding too, where the student's excludes it; unpadded
input (one utterance at a time) gives the same features. A layer-norm CNN
(``extractor_norm="layer_norm"``) normalises each frame alone, and padded
batches agree too when the attention mask is passed.

Usage::

    python -m speechbrain_gendistill.export.huggingface --student STUDENT_FOLDER_OR_HUB_ID --out HF_FOLDER
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import HubertConfig, HubertModel

from speechbrain_gendistill.core.export_format import CARD_FILE, check_out_folder, write_atomically
from speechbrain_gendistill.export.card import card_metadata, model_card
from speechbrain_gendistill.export.student import load_export
from speechbrain_gendistill.lobes.components import MaskedGroupNorm
from speechbrain_gendistill.lobes.students import DistilHuBERTStudent, DistillationStudent
from speechbrain_gendistill.lobes.teacher import MODEL_FILES, save_hf_model

HF_EXPORT_FILES = (*MODEL_FILES, CARD_FILE)
# The student's weights (after "frontend." or the layer index) -> HubertModel's.
_RENAMES = [
    (r"frontend\.feature_extractor\.(conv_layers\.\d+)\.norm\.", r"feature_extractor.\1.layer_norm."),
    (r"frontend\.feature_extractor\.", "feature_extractor."),
    (r"frontend\.layer_norm\.", "feature_projection.layer_norm."),
    (r"frontend\.projection\.", "feature_projection.projection."),
    (r"frontend\.positional\.conv\.", "encoder.pos_conv_embed.conv."),
    (r"encoder_norm\.", "encoder.layer_norm."),
    (r"layers\.(\d+)\.attention\.out_proj\.", r"encoder.layers.\1.attention.out_proj."),
    (r"layers\.(\d+)\.attention_norm\.", r"encoder.layers.\1.layer_norm."),
    (r"layers\.(\d+)\.feed_forward\.0\.", r"encoder.layers.\1.feed_forward.intermediate_dense."),
    (r"layers\.(\d+)\.feed_forward\.3\.", r"encoder.layers.\1.feed_forward.output_dense."),
    (r"layers\.(\d+)\.feed_forward_norm\.", r"encoder.layers.\1.final_layer_norm."),
]
_IN_PROJ = re.compile(r"layers\.(\d+)\.attention\.in_proj\.(weight|bias)")
HF_USAGE = """Load it with `transformers` (no code of speechbrain-gendistill needed), from this folder or its hub id:

```python
from transformers import AutoModel

model = AutoModel.from_pretrained("<this folder or hub id>")  # a HubertModel
layers = model(wavs, output_hidden_states=True).hidden_states  # 16 kHz [B, S] -> (encoder input, layer 1, ...)
```

or in SpeechBrain, wherever a HuggingFace SSL lobe stands (e.g. `WeightedSSLModel` recipes):

```python
from speechbrain.integrations.huggingface.hubert import HuBERT

encoder = HuBERT(source="<this folder or hub id>", save_path="pretrained", freeze=True, output_all_hiddens=True)
```
"""
PADDING_NOTES = {
    "group": "Padded batches: HF's group-norm CNN takes its statistics over the padding too, where the student's "
    "excluded it, so a padded item's features differ from the same audio alone; an unpadded utterance (or a batch "
    "of equal lengths) gives exactly the student's features.",
    "layer": "Padded batches give the student's features on every valid frame when the attention mask is passed "
    "(SpeechBrain's lobe passes it): this CNN normalises each frame on its own.",
}


def _refuse_unless_hubert(student: DistillationStudent) -> None:
    """Every reason ``student`` is not exactly a HubertModel, in one error."""
    if not isinstance(student, DistilHuBERTStudent):
        raise ValueError(
            f"a {type(student).__name__} has no transformers class: its layer generator is no HuBERT encoder. "
            "Export it for SpeechBrain with `python -m speechbrain_gendistill.export.inference`"
        )
    problems = []
    if student.prediction_heads is not None:
        problems.append("it still has its prediction heads, which HuBERT lacks (export_student drops them)")
    norms = [module for module in student.modules() if isinstance(module, (nn.LayerNorm, MaskedGroupNorm))]
    if any(norm.eps != 1e-5 for norm in norms):
        problems.append("a LayerNorm or GroupNorm eps is not 1e-5, HuBERT's in its CNN")
    if problems:
        raise ValueError(f"cannot export this DistilHuBERTStudent as HuBERT: {'; '.join(problems)}")


def hubert_config(student: DistilHuBERTStudent) -> HubertConfig:
    """The ``HubertConfig`` that describes the architecture of ``student``, dropout included.

    Example
    -------
    >>> student = DistilHuBERTStudent(target_dim=24, d_model=16, num_layers=2, num_heads=4, d_ffn=32,
    ...     conv_layers=[(32, 10, 5), (32, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> config = hubert_config(student)
    >>> config.hidden_size, config.num_hidden_layers, config.conv_dim, config.feat_extract_norm
    (16, 2, [32, 32], 'group')
    """
    arguments = student.config
    conv_layers = student.frontend.conv_layers
    dropout = float(arguments["dropout"])
    return HubertConfig(
        hidden_size=arguments["d_model"],
        num_hidden_layers=arguments["num_layers"],
        num_attention_heads=arguments["num_heads"],
        intermediate_size=arguments["d_ffn"],
        hidden_act="gelu",
        feat_extract_activation="gelu",
        feat_extract_norm="group" if arguments["extractor_norm"] == "group_norm" else "layer",
        conv_dim=[layer[0] for layer in conv_layers],
        conv_kernel=[layer[1] for layer in conv_layers],
        conv_stride=[layer[2] for layer in conv_layers],
        conv_bias=False,
        num_conv_pos_embeddings=arguments["pos_conv_kernel"],
        num_conv_pos_embedding_groups=arguments["pos_conv_groups"],
        do_stable_layer_norm=False,  # post-LN layers
        feat_proj_layer_norm=True,
        layer_norm_eps=1e-5,
        hidden_dropout=dropout,
        activation_dropout=dropout,
        attention_dropout=dropout,
        feat_proj_dropout=dropout,
        final_dropout=dropout,
        layerdrop=0.0,  # the student has none
        mask_time_prob=0.0,  # nor SpecAugment's learned mask vector
        mask_feature_prob=0.0,
        apply_spec_augment=False,
        architectures=["HubertModel"],
    )


def hubert_state_dict(student: DistilHuBERTStudent) -> dict[str, torch.Tensor]:
    """The student's weights under HubertModel's names; an identity projection becomes an explicit one."""
    weights = {}
    for name, tensor in student.state_dict().items():
        tensor = tensor.detach().cpu()
        match = _IN_PROJ.fullmatch(name)
        if match:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                weights[f"encoder.layers.{match[1]}.attention.{part}.{match[2]}"] = chunk.clone()
            continue
        for pattern, replacement in _RENAMES:
            renamed, found = re.subn(f"^{pattern}", replacement, name)
            if found:
                weights[renamed] = tensor
                break
        else:
            raise ValueError(f"the student's weight {name} has no place in HubertModel")
    if isinstance(student.frontend.projection, nn.Identity):  # CNN width == d_model: HuBERT still projects
        width = student.config["d_model"]
        weights["feature_projection.projection.weight"] = torch.eye(width)
        weights["feature_projection.projection.bias"] = torch.zeros(width)
    return weights


def export_huggingface(
    student: DistillationStudent,
    folder: str | Path,
    card: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    license: str | None = None,
) -> Path:
    """Writes a DistilHuBERT student as a ``transformers`` HuBERT folder with a model card.

    Arguments
    ---------
    student : DistillationStudent
        A DistilHuBERTStudent without its prediction heads (as
        :func:`~speechbrain_gendistill.lobes.distilled.load_student` gives it);
        anything else is refused with the reason.
    folder : str or Path
        New, or holding an earlier export only: it is replaced.
    card, results, license
        The model card's facts, measured results and license (see :func:`export_student`).

    Returns
    -------
    Path
        The folder: config.json, model.safetensors, preprocessor_config.json, README.md.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoModel
    >>> student = DistilHuBERTStudent(target_dim=24, d_model=16, num_layers=2, num_heads=4, d_ffn=32,
    ...     conv_layers=[(32, 10, 5), (32, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> student.drop_prediction_heads()
    >>> folder = export_huggingface(student, Path(tempfile.mkdtemp()) / "hf")
    >>> type(AutoModel.from_pretrained(folder)).__name__
    'HubertModel'
    """
    _refuse_unless_hubert(student)
    folder = Path(folder)
    check_out_folder(folder, HF_EXPORT_FILES)
    model = HubertModel(hubert_config(student))
    model.load_state_dict(hubert_state_dict(student), strict=True)
    save_hf_model(model.eval(), folder)
    facts = card or {}
    metadata = card_metadata(type(student).__name__, "transformers", facts, results, license, extra_tags=("hubert",))
    parameters = sum(parameter.numel() for parameter in model.parameters())
    usage = HF_USAGE + "\n" + PADDING_NOTES[model.config.feat_extract_norm]
    text = model_card("Distilled HuBERT-style student (DistilHuBERT)", metadata, usage, parameters, facts, results)
    write_atomically(folder / CARD_FILE, lambda path: Path(path).write_text(text, encoding="utf-8"))
    return folder


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Export a DistilHuBERT student as a transformers HuBERT folder.")
    parser.add_argument("--student", required=True, help="exported student: a folder (export_student) or a hub id")
    parser.add_argument("--out", required=True, help="the HuBERT folder to write (new, or an earlier export)")
    args = parser.parse_args(argv)
    student, facts, results, license = load_export(args.student)
    folder = export_huggingface(student, args.out, facts, results, license)
    print(f"wrote {folder}: load it with transformers.AutoModel.from_pretrained({str(folder)!r})")
    return folder


if __name__ == "__main__":
    main()
