"""Where the files shipped beside the code are: the repository's own in a checkout, the installed copy otherwise.

The recipes and their YAML (``recipes/``), the demo's and the paper-scale
settings (``hparams/``), the demo's teacher (``pretrained/``) and the speech
data (``data/``) sit at the repository's top level. A wheel, or ``pip install
.``, carries copies of them inside the package, under
``speechbrain_gendistill/_resources/`` (setup.py's build step puts them there),
laid out as in the repository, so that the paths between them (a recipe's
``student_hparams: ../../../../hparams/models/...``) hold in both places.
"""

from __future__ import annotations

from pathlib import Path

# The top-level folders a wheel ships under RESOURCES_DIR (setup.py copies the same list).
SHIPPED_FOLDERS = ("hparams", "recipes", "pretrained", "data")
RESOURCES_DIR = "_resources"
_PACKAGE = Path(__file__).resolve().parents[1]


def shipped_root() -> Path:
    """The folder that holds :data:`SHIPPED_FOLDERS`: the repository root in a checkout, else the installed copy.

    Example
    -------
    >>> sorted(folder for folder in SHIPPED_FOLDERS if (shipped_root() / folder).is_dir())
    ['data', 'hparams', 'pretrained', 'recipes']
    """
    checkout = _PACKAGE.parent
    if (checkout / "setup.py").is_file() and all((checkout / name).is_dir() for name in SHIPPED_FOLDERS):
        return checkout
    installed = _PACKAGE / RESOURCES_DIR
    if installed.is_dir():
        return installed
    raise FileNotFoundError(
        f"neither a repository checkout ({checkout} with setup.py and {', '.join(SHIPPED_FOLDERS)}) nor an "
        f"installed copy ({installed}) holds the package's shipped files: reinstall the package"
    )


def shipped_path(relative: str | Path) -> Path:
    """A shipped file or folder, by its path from the repository root (e.g. ``"hparams/demo/demo.yaml"``).

    Example
    -------
    >>> shipped_path("hparams/demo/demo.yaml").is_file()
    True
    >>> shipped_path("hparams/nothing.yaml")
    Traceback (most recent call last):
    ...
    FileNotFoundError: hparams/nothing.yaml is not among the package's shipped files (looked in ...)
    """
    path = shipped_root() / relative
    if not path.exists():
        raise FileNotFoundError(f"{relative} is not among the package's shipped files (looked in {shipped_root()})")
    return path
