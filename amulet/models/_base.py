"""The base class of Amulet's models and the checks their constructors share."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from amulet._validation import InstanceOf, Interval, check_param
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError

__all__ = ["BATCH_OF_ONE_MESSAGE", "AmuletModel"]

#: Raised (as ``ValueError``) when a model with BatchNorm trains on a batch of one sample.
BATCH_OF_ONE_MESSAGE = (
    "{model} is in training mode and uses BatchNorm, which cannot normalise a batch of one sample "
    "(got input of shape {shape}). Use a DataLoader with drop_last=True or a batch size that does not "
    "leave a last batch of one, build the model with batch_norm=False, or call model.eval() for inference."
)

_TORCH_BATCH_OF_ONE = "Expected more than 1 value per channel when training"

#: Raised (as ``RuntimeError``, torch's type) when an image model gets images with other channels than it was built for.
CHANNELS_MESSAGE = (
    "{model} was built for {expected}-channel images and got input of shape {shape}. Build it for the data's "
    "channels: initialize_model(..., input_shape={example}) or {model}(..., input_channels={got})."
)

_TORCH_CHANNELS = "channels, but got"

F = TypeVar("F", bound=Callable[..., torch.Tensor])


def explain_batch_of_one(method: F) -> F:
    """Wrap ``forward``/``get_hidden`` so that BatchNorm's batch-of-one error and a channel mismatch say what to do."""

    @functools.wraps(method)
    def wrapper(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        try:
            return method(self, x, *args, **kwargs)
        except ValueError as exc:
            if _TORCH_BATCH_OF_ONE in str(exc):
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else "?"
                raise ValueError(BATCH_OF_ONE_MESSAGE.format(model=type(self).__name__, shape=shape)) from exc
            raise
        except RuntimeError as exc:
            expected = getattr(self, "input_channels", None)
            if _TORCH_CHANNELS in str(exc) and expected is not None and isinstance(x, torch.Tensor) and x.dim() >= 3:
                got, size = int(x.shape[-3]), tuple(int(d) for d in x.shape[-2:])
                message = CHANNELS_MESSAGE.format(
                    model=type(self).__name__, expected=expected, shape=tuple(x.shape), example=(got, *size), got=got
                )
                raise RuntimeError(message) from exc
            raise

    return wrapper  # type: ignore[return-value]


class AmuletModel(nn.Module):
    """Base class of the models in :mod:`amulet.models`.

    Besides ``forward`` (logits), every Amulet model has :meth:`get_hidden`, the penultimate features (the
    input of the last linear layer), which outlier removal and feature-space attacks use, and
    :meth:`architecture_config`, the JSON-serialisable configuration that rebuilds the same architecture
    through :func:`amulet.models.create_model` (what :func:`amulet.io.save_model` writes to a spec).

    Attributes:
        architecture: Name of the architecture in the model registry (``"linearnet"``, ``"vgg"`` ...).
    """

    architecture: str = ""
    #: Subclasses set the trunk (input -> penultimate features) and the head (features -> logits).
    features: nn.Module
    classifier: nn.Module

    @explain_batch_of_one
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)``: the ``classifier`` head applied to :meth:`get_hidden`."""
        return self.classifier(self.get_hidden(x))

    @explain_batch_of_one
    def get_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of ``x``: the ``features`` trunk (subclasses with another layout override this).

        Raises:
            NotImplementedError: when the model has no ``features`` module and does not override this.
        """
        if "features" not in self._modules:
            raise NotImplementedError(f"{type(self).__name__} must implement `get_hidden` or define `features`.")
        return self.features(x)

    def architecture_config(self) -> dict[str, Any]:
        """The registry configuration (without ``num_classes``/``input_shape``) that rebuilds this model."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its architecture configuration.")

    def default_input_shape(self) -> tuple[int, ...] | None:
        """The input shape (without the batch axis) the model was built for, when it determines one."""
        return None


def check_int(owner: str, name: str, value: Any, low: int = 1) -> int:
    """Check that ``value`` is an int >= ``low`` (bools rejected) and return it."""
    check_param(owner, name, value, [Interval(int, low, None, closed="left")])
    return int(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Check that ``value`` is a bool and return it."""
    check_param(owner, name, value, [InstanceOf(bool, "a bool")])
    return bool(value)


def _bad(owner: str, name: str, expected: str, value: Any) -> InvalidParameterError:
    return InvalidParameterError(PARAM_MESSAGE.format(name=name, owner=owner, expected=expected, value=value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int_list(owner: str, name: str, value: Any, *, allow_empty: bool = False) -> list[int]:
    """Check that ``value`` is a list/tuple of positive ints and return it as a list."""
    expected = "a list of positive ints" + ("" if allow_empty else " (at least one)")
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise _bad(owner, name, expected, value)
    if (not value and not allow_empty) or not all(_is_int(v) and v > 0 for v in value):
        raise _bad(owner, name, expected, value)
    return [int(v) for v in value]


def check_pair_list(owner: str, name: str, value: Any) -> list[tuple[int, int]]:
    """Check that ``value`` is a non-empty list of ``(channels, kernel_size)`` pairs of positive ints."""
    expected = "a non-empty list of (channels, kernel_size) pairs of positive ints"
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        raise _bad(owner, name, expected, value)
    pairs = []
    for item in value:
        if (
            not isinstance(item, Sequence)
            or isinstance(item, (str, bytes))
            or len(item) != 2
            or not all(_is_int(v) and v > 0 for v in item)
        ):
            raise _bad(owner, name, expected, value)
        pairs.append((int(item[0]), int(item[1])))
    return pairs


def check_size(owner: str, name: str, value: Any) -> tuple[int, int]:
    """Check an image size: an int ``s`` (``s x s``) or an ``(height, width)`` pair of positive ints."""
    if _is_int(value) and value > 0:
        return int(value), int(value)
    if (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and len(value) == 2
        and all(_is_int(v) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise _bad(owner, name, "a positive int or a (height, width) pair of positive ints", value)
