"""The lobes a SpeechBrain recipe builds from YAML."""

from speechbrain_gendistill.export import DistilledSSL
from speechbrain_gendistill.student import DistilHuBERTStudent, GenDistillStudent
from speechbrain_gendistill.teacher import SSLTeacher

__all__ = ["GenDistillStudent", "DistilHuBERTStudent", "SSLTeacher", "DistilledSSL"]
