"""What a shared ``hyperparams.yaml`` may build, checked before anything is built: :func:`check_hyperparams`.

HyperPyYAML's tags call any Python object: ``!new:`` constructs, ``!apply:``
calls, ``!name:`` hands out a callable, ``!module:`` imports and ``!include:``
reads another file. A model folder from the hub is data, so its YAML is read
first as a bare node graph (ruamel's composer: nothing is constructed) and
every tag is checked. Allowed targets lie in this package, torch or
speechbrain, and are classes that build layers: ``torch.nn.Module`` subclasses
of ``speechbrain_gendistill.lobes``, ``torch.nn`` and ``speechbrain.nnet``, and
SpeechBrain's ``Pretrainer``. The rest of those three packages is refused too,
since it holds functions that run shell commands, load pickles, download code
or overwrite files (e.g. ``speechbrain.utils.superpowers.run_shell``,
``torch.hub.load``, ``torch.save``).
"""

from __future__ import annotations

import inspect
import pydoc
from typing import Any

import torch
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

ALLOWED_PACKAGES = ("speechbrain_gendistill", "torch", "speechbrain")
LAYER_MODULES = ("speechbrain_gendistill.lobes", "torch.nn", "speechbrain.nnet")
ALLOWED_CLASSES = ("speechbrain.utils.parameter_transfer.Pretrainer",)
OBJECT_TAGS = ("!new:", "!name:", "!apply:")
REFUSED_TAGS = {"!module:": "imports a module", "!include:": "reads another file"}
PLAIN_TAGS = {"!ref", "!copy", "!tuple", "!PLACEHOLDER"}
STANDARD_TAG = "tag:yaml.org,2002:"
STANDARD_TYPES = {"str", "int", "float", "bool", "null", "map", "seq", "merge", "timestamp", "binary"}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def target_problem(target: str) -> str | None:
    """Why ``target`` may not be built, or None when it may.

    Example
    -------
    >>> target_problem("speechbrain_gendistill.lobes.DistilledSSL") is None
    True
    >>> target_problem("os.system")
    'outside speechbrain_gendistill, torch and speechbrain'
    >>> target_problem("speechbrain.utils.superpowers.run_shell")
    'not a layer class of speechbrain_gendistill.lobes, torch.nn or speechbrain.nnet'
    """
    if not _within(target, ALLOWED_PACKAGES):
        return "outside speechbrain_gendistill, torch and speechbrain"
    if not (_within(target, LAYER_MODULES) or target in ALLOWED_CLASSES):
        return "not a layer class of speechbrain_gendistill.lobes, torch.nn or speechbrain.nnet"
    found = pydoc.locate(target)  # imports modules of the packages above only
    if found is None:
        return "no such class"
    if target in ALLOWED_CLASSES:
        return None
    # The class's own module counts: an attribute path may reach a class defined elsewhere.
    if not (inspect.isclass(found) and issubclass(found, torch.nn.Module) and _within(found.__module__, LAYER_MODULES)):
        return "not a layer class of speechbrain_gendistill.lobes, torch.nn or speechbrain.nnet"
    return None


def _tag(node: Node) -> str:
    tag = node.tag
    return str(getattr(tag, "value", tag) or "")


def _problems(node: Node, path: str, seen: set[int]) -> list[str]:
    if id(node) in seen:  # an alias of a node already checked (or a recursive one)
        return []
    seen.add(id(node))
    tag, where = _tag(node), f"line {node.start_mark.line + 1} ({path or 'top level'})"
    problems = []
    if tag.startswith(OBJECT_TAGS):
        reason = target_problem(tag.split(":", 1)[1])
        if reason:
            problems.append(f"{where}: {tag} ({reason})")
    elif tag.startswith(tuple(REFUSED_TAGS)):
        problems.append(f"{where}: {tag} ({REFUSED_TAGS[tag.split(':')[0] + ':']})")
    elif tag not in PLAIN_TAGS and not (tag.startswith(STANDARD_TAG) and tag[len(STANDARD_TAG) :] in STANDARD_TYPES):
        problems.append(f"{where}: {tag} (an unknown tag)")
    if isinstance(node, MappingNode):
        for key, value in node.value:
            name = str(key.value) if not isinstance(key.value, list) else "?"
            problems += _problems(key, path, seen)
            problems += _problems(value, f"{path}.{name}" if path else name, seen)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            problems += _problems(item, f"{path}[{index}]", seen)
    return problems


def check_hyperparams(text: str, where: str) -> None:
    """Refuses a HyperPyYAML text with any tag outside the allowlist, listing each one and its line; builds nothing.

    Example
    -------
    >>> check_hyperparams("encoder: !new:torch.nn.Linear [4, 2]\\nsize: !ref <encoder>", "ok.yaml")
    >>> check_hyperparams("a: !apply:os.system ['touch /tmp/x']\\nb:\\n- 1\\n- !name:builtins.eval", "bad.yaml")
    Traceback (most recent call last):
    ...
    ValueError: bad.yaml may not build what it asks for; nothing was built:
      line 1 (a): !apply:os.system (outside speechbrain_gendistill, torch and speechbrain)
      line 4 (b[1]): !name:builtins.eval (outside speechbrain_gendistill, torch and speechbrain)
    """
    try:
        root: Any = YAML().compose(text)
        problems = _problems(root, "", set()) if root is not None else []
    except YAMLError as error:
        raise ValueError(f"{where} is not valid YAML: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{where} is nested too deeply to be checked") from error
    if problems:
        raise ValueError(f"{where} may not build what it asks for; nothing was built:\n  " + "\n  ".join(problems))
