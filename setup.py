"""Installs speechbrain-gendistill and its runtime dependencies.

The exact versions tested together are pinned in ``constraints.txt``. The
folders the code reads beside itself (recipes, YAML, the demo's teacher, the
speech data) are copied into the package as ``speechbrain_gendistill/_resources/``
by the build step, so that an installed copy finds them
(``speechbrain_gendistill.core.resources``); a checkout reads its own.
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
# The same list and place as speechbrain_gendistill/core/resources.py (setup.py cannot import the package).
SHIPPED_FOLDERS = ("hparams", "recipes", "pretrained", "data")
RESOURCES = Path("speechbrain_gendistill") / "_resources"


class BuildWithResources(build_py):
    """The usual build, plus a copy of the shipped folders under the package's ``_resources/``."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's own folders
            return
        for folder in SHIPPED_FOLDERS:
            shutil.copytree(
                ROOT / folder,
                Path(self.build_lib) / RESOURCES / folder,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                dirs_exist_ok=True,
            )


setup(
    name="speechbrain-gendistill",
    version="0.2.0",
    description="GenDistiller: distil SSL speech encoders into small generative students, for SpeechBrain",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # The code's license, as an SPDX expression (setuptools deprecates license classifiers); the shipped data
    # and weights state their own (data/README.md, the model cards).
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["speechbrain_gendistill", "speechbrain_gendistill.*"]),
    cmdclass={"build_py": BuildWithResources},
    python_requires=">=3.10",
    install_requires=[
        "speechbrain>=1.1,<1.2",
        "torch>=2.4",
        "torchaudio>=2.4",
        "hyperpyyaml>=1.2",
        "sentencepiece",
        "jiwer",
        "transformers>=4.40",
        "huggingface_hub",
        "soundfile",
        "safetensors",
        "numpy",
        "scipy",
        "matplotlib",
        "pyyaml",
        "espeakng-loader",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime"],
        "test": ["pytest", "ruff", "import-linter", "onnx", "onnxruntime", "tensorboard"],
    },
)
