"""Audio and text data for the recipes, on SpeechBrain's data pipeline.

- ``audio.py``: reading any audio file as 16 kHz mono, and checking every file of a manifest before training;
- ``pipelines.py``: datasets from CSV manifests, reproducible crops, batches by total duration, DDP shares;
- ``librispeech.py``: manifests from a folder in LibriSpeech's layout;
- ``audio_folder.py``: manifests from any folder or CSV list of unlabeled audio (for distillation);
- ``text.py``: tokenizers (characters, sentencepiece) and transcript checks;
- ``espeak.py``: espeak-ng through ctypes: speech synthesis and text to phonemes;
- the probes' tasks: ``manifests.py`` (manifests written once), ``fsdd.py``, ``speech_commands.py``,
  ``speakers.py``, ``voxceleb.py`` and ``phonemes.py`` (lexicon or espeak-ng phonemes).
"""

from speechbrain_gendistill.data.audio import BadAudioError, check_manifest, load_audio
from speechbrain_gendistill.data.audio_folder import audio_folder_manifests, prepare_audio_folder
from speechbrain_gendistill.data.librispeech import librispeech_manifests, prepare_librispeech
from speechbrain_gendistill.data.pipelines import (
    AudioCrop,
    duration_batch_sampler,
    load_manifest,
    sort_dataset,
    total_hours,
    train_dataloader,
    valid_dataloader,
)

__all__ = [
    "AudioCrop",
    "BadAudioError",
    "audio_folder_manifests",
    "check_manifest",
    "duration_batch_sampler",
    "librispeech_manifests",
    "load_audio",
    "load_manifest",
    "prepare_audio_folder",
    "prepare_librispeech",
    "sort_dataset",
    "total_hours",
    "train_dataloader",
    "valid_dataloader",
]
