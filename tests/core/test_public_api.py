"""Meta-tests on the public surface: lazy import, complete sorted __all__, upstream entry points, docstrings."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys

import pytest

from amulet.registry import BUILTIN_RISK_PACKAGES

ENTRY_POINTS = {
    "attacks": {"attack", "poison_train", "poison_test"},
    "defenses": {"train_robust", "train_private", "train_fair", "watermark", "fingerprint"},
}


def test_import_amulet_does_not_import_torch():
    code = "import sys, amulet; assert 'torch' not in sys.modules, 'torch imported'; print(amulet.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip()


def _public_modules() -> list[str]:
    names = ["amulet.utils"]
    for package in BUILTIN_RISK_PACKAGES:
        names += [package, f"{package}.attacks", f"{package}.defenses", f"{package}.metrics"]
    for optional in ("amulet.datasets", "amulet.models", "amulet.io", "amulet.assess"):
        try:
            importlib.import_module(optional)
        except ModuleNotFoundError:
            continue
        names.append(optional)
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_all_is_sorted_and_every_name_exists(module_name: str):
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{module_name}.__all__ is not sorted"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"


def _is_attack_or_defense(cls: type) -> bool:
    """Subclasses of a risk's abstract base (``EvasionAttack``, ``MembershipInferenceDefense``...).

    Helper types a sub-package also exports (result dataclasses, adversary networks) are not held to
    the entry-point contract.
    """
    return any(base.__name__.endswith(("Attack", "Defense")) for base in cls.__mro__[1:] if base is not object)


def _concrete_classes(kind: str) -> list[tuple[str, type]]:
    found = []
    for package in BUILTIN_RISK_PACKAGES:
        module = importlib.import_module(f"{package}.{kind}")
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and not inspect.isabstract(obj)
                and obj.__module__.startswith("amulet.")
                and _is_attack_or_defense(obj)
            ):
                found.append((f"{package}.{kind}.{name}", obj))
    return found


_CLASSES = _concrete_classes("attacks") + _concrete_classes("defenses")


@pytest.mark.parametrize(("name", "cls"), _CLASSES, ids=[n for n, _ in _CLASSES])
def test_every_concrete_attack_and_defense_has_its_entry_point(name: str, cls: type):
    kind = "attacks" if ".attacks." in name else "defenses"
    assert ENTRY_POINTS[kind] & set(dir(cls)), f"{name} has none of {sorted(ENTRY_POINTS[kind])}"


def _documented_args(doc: str) -> set[str]:
    match = re.search(r"\n\s*Args:\n(.*?)(\n\s*\n\s*[A-Z][a-z]+:|\Z)", doc, re.S)
    if not match:
        return set()
    names: set[str] = set()
    # "name (type): text" or a group "a, b, c (type): text" documenting several arguments at once
    for group in re.findall(r"^\s{4,12}(\w+(?:, \w+)*)(?: \([^)]*\))?:", match.group(1), re.M):
        names.update(part.strip() for part in group.split(","))
    return names


@pytest.mark.parametrize(("name", "cls"), _CLASSES, ids=[n for n, _ in _CLASSES])
def test_docstring_arguments_match_the_signature(name: str, cls: type):
    doc = inspect.getdoc(cls) or ""
    assert doc, f"{name} has no docstring"
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in {"self", "args", "kwargs"}]
    documented: set[str] = set()
    for klass in cls.__mro__:  # arguments shared with the risk's base class may be documented there
        if klass.__module__.startswith("amulet."):
            documented |= _documented_args(inspect.getdoc(klass) or "")
            documented |= _documented_args(inspect.getdoc(klass.__init__) or "")
    missing = [p for p in params if p not in documented]
    assert not missing, f"{name}: parameters without a docstring entry: {missing}"
    extra = _documented_args(doc) - set(params)
    assert not extra, f"{name}: docstring documents parameters the signature lacks: {sorted(extra)}"
