"""The shared core: constants, frame arithmetic, the export format, hub ids (``hub.resolve_source``).

Every other subpackage may import it; it imports nothing else of this package,
so it can never be the end of an import cycle.
"""

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.frames import (
    DEFAULT_CONV_LAYERS,
    ConvSpec,
    conv_output_lengths,
    frame_lengths,
    lengths_to_mask,
    receptive_field,
    relative_to_absolute,
)

__all__ = [
    "SAMPLE_RATE",
    "DEFAULT_CONV_LAYERS",
    "ConvSpec",
    "conv_output_lengths",
    "frame_lengths",
    "lengths_to_mask",
    "receptive_field",
    "relative_to_absolute",
]
