"""The whole job in miniature, in one command: corpus, teacher, two distillations, four probes, report.

    python -m speechbrain_gendistill.demo --output_folder DIR [--quick] [--seeds N] [--jobs N] [--ablations [NAME ...]]

1. builds the synthetic mini-LibriSpeech (``corpus/``);
2. unpacks the repository's small trained teacher, or trains it here (``teacher_ctc.py``);
3. distils the teacher twice with the distillation recipe
   (``recipes/LibriSpeech/distill/train.py``): the DistilHuBERT baseline and
   GenDistiller, on the same data for the same number of updates;
4. puts the teacher, its untrained initial weights (a control) and both
   students through the SUPERB-style probe recipes (ASR and PR on the
   corpus, KS on FSDD's real digits, SID on real LibriSpeech excerpts), each
   on a frozen upstream whose layers are cached once;
5. measures parameters, forward time (interleaved, median) and each layer's L1
   and cosine on the dev split, compares the students with seeds and paired
   bootstrap intervals (``measurements.py``), and writes ``report.md`` and two
   plots (``report.py``).

The recipes run through their own entry points, with the command-line
overrides printed so that each step can be rerun by hand (``stages.py``), two
at a time by default, each in a worker process (``runner.py``). Every
finished step is recorded in ``DIR/stages.json``; a rerun reuses it (and says
so), and an interrupted recipe resumes from its last checkpoint. What each
step runs is set in ``hparams/demo/demo.yaml`` (``config.py``); ``study.py``
runs the claim study through the same stages. Beside it, ``teacher_hubert/``
trains a self-supervised demo teacher (HuBERT-style pretraining on any folder
of audio; not a step of the demo). Nothing else in the package imports this
subpackage.
"""
