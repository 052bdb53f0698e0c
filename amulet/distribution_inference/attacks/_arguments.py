"""Construction-time checks of a distribution inference attack's arguments (every bad one raises before any work)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from amulet._validation import validate_params
from amulet.distribution_inference.attacks._splits import _check_splits_args
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models import ALIASES, BUILTIN_CAPACITIES, architectures

__all__ = ["check_attack_arguments", "known_architectures", "known_capacities"]


def known_architectures() -> list[str]:
    """The architecture names :func:`amulet.utils.initialize_model` builds (registry names and their aliases)."""
    return sorted(set(ALIASES) | set(architectures()))


def known_capacities() -> list[str]:
    """The capacities (``"m1"`` ... ``"m4"``) of the built-in architectures."""
    return sorted({capacity for table in BUILTIN_CAPACITIES.values() for capacity in table})


def check_attack_arguments(attack: Any) -> None:
    """Validate ``attack``'s arguments: their constraints first, then what constraints cannot say.

    That is: the data arrays' shapes against the column names, the device's name and the architecture's names.

    Raises:
        InvalidParameterError: (a ``ValueError``) naming the first bad parameter and its allowed values.
    """
    owner = type(attack).__name__
    validate_params(attack)  # first: every argument's type and range, so the checks below may rely on them
    arrays = {}
    for name in ("x_train", "y_train", "z_train", "x_test", "y_test", "z_test"):
        arr = np.asarray(getattr(attack, name))
        if name.startswith("y"):
            arr = arr.reshape(-1)
        elif name.startswith("z") and arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        arrays[name] = arr
    _check_splits_args(owner, arrays, attack.sensitive_columns, attack.filter_column, attack.drop_values)
    try:
        torch.device(attack.device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidParameterError(
            PARAM_MESSAGE.format(
                name="device", owner=owner, expected="a torch device such as 'cpu' or 'cuda:0'", value=attack.device
            )
        ) from exc
    if attack.model_factory is None:
        for name, allowed in (("model_arch", known_architectures()), ("model_capacity", known_capacities())):
            value = getattr(attack, name)
            if value not in allowed:
                raise InvalidParameterError(
                    PARAM_MESSAGE.format(name=name, owner=owner, expected=f"one of {allowed}", value=value)
                )
