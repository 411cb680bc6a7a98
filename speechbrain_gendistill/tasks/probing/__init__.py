"""SUPERB-style probes of a frozen upstream (a distilled student, a teacher, an untrained teacher) on cached features.

- ``cache.py``: the upstream's layers computed once per upstream and split (fp16 safetensors, keyed by a hash
  of everything they depend on) and held in memory;
- ``pooling.py``: what the cache keeps: every frame, or means over frames (per window) for utterance tasks;
- ``heads.py``: the weighted layer sum and a linear layer (classification, phoneme CTC) or a small BiLSTM (ASR);
- ``datasets.py``, ``brains.py``: SpeechBrain datasets over the cache, and the Brains that train a head;
- ``probe.py``: one head per learning rate, the best on dev tested once, ``results.json``;
- ``stats.py``: means over seeds, paired bootstrap comparisons of two upstreams.
"""

from speechbrain_gendistill.tasks.probing.brains import ClassificationProbeBrain, CTCProbeBrain, ProbeBrain
from speechbrain_gendistill.tasks.probing.cache import AudioItem, CachedFeatures, FeatureCache, manifest_items
from speechbrain_gendistill.tasks.probing.heads import FrameCTCHead, UtteranceClassifier
from speechbrain_gendistill.tasks.probing.pooling import Pooling, WindowCrop
from speechbrain_gendistill.tasks.probing.probe import ProbeRecord, extract_features, probe_datasets, select_and_test

__all__ = [
    "AudioItem",
    "CachedFeatures",
    "ClassificationProbeBrain",
    "CTCProbeBrain",
    "FeatureCache",
    "FrameCTCHead",
    "Pooling",
    "ProbeBrain",
    "ProbeRecord",
    "UtteranceClassifier",
    "WindowCrop",
    "extract_features",
    "manifest_items",
    "probe_datasets",
    "select_and_test",
]
