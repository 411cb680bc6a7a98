"""Training: the scaffolding every recipe shares, checkpoints that survive crashes, and the distillation Brain.

- ``recipe.py``: command line and YAML, DDP, loaders with dynamic batches, the per-update schedule, fitting;
- ``checkpoints.py``: SpeechBrain's Checkpointer with a seal per checkpoint;
- ``distillation.py``: the distillation Brain; ``distillation_recipe.py``: what a distillation recipe builds it from.
"""

from speechbrain_gendistill.training.checkpoints import IntegrityCheckpointer
from speechbrain_gendistill.training.recipe import fit, load_recipe, make_loaders, schedule_per_update

__all__ = ["IntegrityCheckpointer", "fit", "load_recipe", "make_loaders", "schedule_per_update"]
