"""Installs speechbrain-gendistill and its runtime dependencies.

The exact versions tested together are pinned in ``constraints.txt``.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="speechbrain-gendistill",
    version="0.2.0",
    description="GenDistiller: distil SSL speech encoders into small generative students, for SpeechBrain",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",  # the code; the shipped data and weights state their own (data/README.md, model cards)
    license_files=["LICENSE"],
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["speechbrain_gendistill", "speechbrain_gendistill.*"]),
    python_requires=">=3.10",
    install_requires=[
        "speechbrain>=1.1,<1.2",
        "torch>=2.4",
        "torchaudio>=2.4",
        "hyperpyyaml>=1.2",
        "sentencepiece",
        "jiwer",
        "transformers>=4.40",
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
