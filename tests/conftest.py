"""Shared fixtures: small local HF teachers, saved exactly as a hub model is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from speechbrain_gendistill.lobes.teacher import save_random_model

SMALL_CONV = dict(
    conv_dim=(32,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
)
SMALL_ENCODER = dict(
    hidden_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=96,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def save_small_teacher(folder: Path, kind: str, seed: int = 0) -> Path:
    """A randomly initialised WavLM or HuBERT with a small config, saved like a hub model."""
    return Path(save_random_model(folder, {**SMALL_CONV, **SMALL_ENCODER}, seed=seed, model_type=kind))


@pytest.fixture(scope="session")
def wavlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_teacher(tmp_path_factory.mktemp("wavlm"), "wavlm")


@pytest.fixture(scope="session")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_teacher(tmp_path_factory.mktemp("hubert"), "hubert")


# The synthetic mini-LibriSpeech of the tests: split -> (speakers, utterances per speaker),
# with the split names of the default corpus. It builds in a few seconds.
MINI_LIBRISPEECH_SPLITS = {"train-synth": (3, 8), "dev-synth": (1, 6), "test-synth": (2, 4)}


@pytest.fixture(scope="session")
def mini_librispeech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a small synthetic corpus in LibriSpeech layout (38 utterances, 6 speakers)."""
    from speechbrain_gendistill.demo.corpus import synthesize_corpus

    return synthesize_corpus(tmp_path_factory.mktemp("mini_librispeech"), seed=0, splits=MINI_LIBRISPEECH_SPLITS)


@pytest.fixture(scope="session")
def mini_librispeech_manifests(mini_librispeech: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SpeechBrain CSV manifests of ``mini_librispeech``: keys ``train``, ``dev`` and ``test-synth``."""
    from speechbrain_gendistill.data.librispeech import prepare_librispeech

    return prepare_librispeech(
        mini_librispeech,
        tmp_path_factory.mktemp("mini_librispeech_manifests"),
        train_splits=["train-synth"],
        dev_splits=["dev-synth"],
        test_splits=["test-synth"],
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread spares the spin-waits of a second one on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HuggingFace hub cache of this test, offline: a process started with HF_HUB_CACHE and HF_HUB_OFFLINE=1.

    huggingface_hub reads both variables at import; its constants are patched too, for SpeechBrain's fetching.
    """
    import huggingface_hub.constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def save_small_student(folder: Path, kind: str) -> Path:
    """A randomly initialised GenDistiller or DistilHuBERT student with SMALL_CONV's CNN, exported."""
    from speechbrain_gendistill.export import export_student
    from speechbrain_gendistill.lobes import DistilHuBERTStudent, GenDistillStudent

    student_class = GenDistillStudent if kind == "gendistill" else DistilHuBERTStudent
    conv_layers = list(zip(SMALL_CONV["conv_dim"], SMALL_CONV["conv_kernel"], SMALL_CONV["conv_stride"], strict=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        student = student_class(
            target_dim=48,
            num_target_layers=3,
            d_model=24,
            num_layers=2,
            num_heads=4,
            d_ffn=48,
            conv_layers=conv_layers,
            pos_conv_kernel=16,
            pos_conv_groups=4,
        )
    return export_student(student, folder)


@pytest.fixture(scope="session")
def gendistill_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_student(tmp_path_factory.mktemp("gendistill"), "gendistill")


@pytest.fixture(scope="session")
def distilhubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_student(tmp_path_factory.mktemp("distilhubert"), "distilhubert")


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "speechbrain_gendistill"
# What a build reads besides the package and its shipped folders.
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")


@dataclass(frozen=True)
class InstalledWheel:
    """The package built as a wheel and installed, without its dependencies, into a fresh virtual environment."""

    wheel: Path
    python: str  # the environment's interpreter: it sees this one's packages (torch and the rest)
    env: dict[str, str]  # the environment to run it in (no PYTHONPATH that could point at the checkout)
    elsewhere: Path  # a folder outside the repository to run it from


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """Builds the wheel from a copy of the sources (a build writes into the folder it builds) and installs it."""
    from speechbrain_gendistill.core.resources import SHIPPED_FOLDERS

    root = tmp_path_factory.mktemp("wheel")
    sources = root / "sources"
    sources.mkdir()
    for name in BUILD_FILES:
        shutil.copy(ROOT / name, sources / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in (PACKAGE, *SHIPPED_FOLDERS):
        shutil.copytree(ROOT / folder, sources / folder, ignore=ignored)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", root / "dist", sources]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True)
    python = str(venv / "bin" / "python")
    # This interpreter's pip installs into the environment that runs it; --ignore-installed: the editable
    # install that the environment sees through this interpreter's packages must not count as installed.
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet", wheel]
    subprocess.run(install, check=True, capture_output=True)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return InstalledWheel(wheel, python, env, elsewhere)


@pytest.fixture(scope="session")
def run_installed_demo(installed_wheel: InstalledWheel):
    """Runs ``python -m speechbrain_gendistill.demo --output_folder FOLDER ARGS...`` from the installed wheel."""

    def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
        command = [installed_wheel.python, "-m", f"{PACKAGE}.demo", "--output_folder", str(folder), *args]
        return subprocess.run(
            command, cwd=installed_wheel.elsewhere, env=installed_wheel.env, capture_output=True, text=True
        )

    return run


@pytest.fixture(scope="session")
def installed_quick_demo(installed_wheel: InstalledWheel, run_installed_demo) -> tuple[Path, str]:
    """The demo's quick run from the installed wheel, outside the repository: its folder and the report it printed."""
    folder = installed_wheel.elsewhere / "quick_demo"
    result = run_installed_demo(folder, "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(ROOT) not in result.stdout  # every recipe and YAML came from the installed copy
    report = (folder / "report.md").read_text()
    assert report in result.stdout
    return folder, report
