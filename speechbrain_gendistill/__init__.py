"""speechbrain-gendistill: GenDistiller distillation of SSL speech encoders for SpeechBrain."""

__version__ = "0.1.0"
