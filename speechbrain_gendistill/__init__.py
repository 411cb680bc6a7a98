"""speechbrain-gendistill: GenDistiller distillation of SSL speech encoders for SpeechBrain.

Subpackages, each importing only those above it in this list:

- ``core``: constants, frame arithmetic, the export format, hub ids, YAML checks (imports nothing else of ours);
- ``lobes``: the students, the teacher, exported students and upstreams as SpeechBrain lobes;
- ``loss``, ``data``: the distillation loss; audio, manifests, batches and text;
- ``training``: the recipes' scaffolding, checkpoints and the distillation Brain;
- ``tasks``: downstream tasks (ASR) on a frozen or fine-tuned upstream;
- ``export``: shareable students (safetensors, transformers HuBERT, SpeechBrain inference folders, ONNX; upload);
- ``inference``: ``DistilledEncoder``, a student as a SpeechBrain inference interface (beside ``export``);
- ``demo``: the whole job in miniature (nothing else imports it); ``measure``: sizes and timings.
"""

from __future__ import annotations

import importlib
import types

__version__ = "0.2.0"

# Names that YAML files of earlier versions, and the hyperparams.yaml of models they exported, use for
# objects that have moved: old module -> {name: "new.module:name"}. HyperPyYAML resolves a tag such as
# `!new:speechbrain_gendistill.asr.SSLEncoder` attribute by attribute, through __getattr__ below.
MOVED = {
    "asr": {
        "SSLEncoder": "speechbrain_gendistill.lobes.upstream:FrameLengthsSequential",
        "LayerMixer": "speechbrain_gendistill.lobes.upstream:LayerMixer",
        "ssl_lobe": "speechbrain_gendistill.lobes.upstream:build_upstream",
        "ssl_num_layers": "speechbrain_gendistill.lobes.upstream:upstream_num_layers",
        "ssl_feature_dim": "speechbrain_gendistill.lobes.upstream:upstream_feature_dim",
    },
    "checkpoints": {"IntegrityCheckpointer": "speechbrain_gendistill.training.checkpoints:IntegrityCheckpointer"},
    "teacher_training": {"save_random_teacher": "speechbrain_gendistill.lobes.teacher:save_random_model"},
}


def __getattr__(name: str) -> types.ModuleType:
    """The old module ``name`` of :data:`MOVED`, as a namespace of the moved objects."""
    if name not in MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    namespace = types.ModuleType(f"{__name__}.{name}", f"Names that earlier versions kept in {name}.py.")
    for attribute, target in MOVED[name].items():
        module, _, member = target.partition(":")
        setattr(namespace, attribute, getattr(importlib.import_module(module), member))
    return namespace
