"""Sharing a distilled student: a safetensors folder (:func:`export_student`) and ONNX (:mod:`.onnx`).

The SpeechBrain ASR folder is written by the ASR task
(:func:`speechbrain_gendistill.tasks.asr.export_asr`), which owns its classes.
"""

from speechbrain_gendistill.export.student import export_student

__all__ = ["export_student"]
