"""Exceptions raised by Amulet for bad input and misuse.

The tree::

    AmuletError
    ├── InvalidParameterError (ValueError)    a constructor/run argument is out of range or of the wrong kind
    ├── NotRunError (RuntimeError)            a result was asked for before the object was run
    ├── DatasetUnavailableError (FileNotFoundError)  no source for a dataset; the message names the install command
    ├── UnsafeModelFileError (ValueError)     a model file that would need unpickling or is not safetensors
    ├── ModelSpecError (ValueError)           an architecture spec or weights that do not match the registry
    ├── SpecError (ValueError)                an assessment spec is invalid; ``errors`` lists every problem
    └── NotApplicableError (ValueError)       a risk/defense that structurally cannot apply to a model or dataset

    RunCancelledError (BaseException)         the run was cancelled (raised from a progress callback); like
                                              KeyboardInterrupt, no ``except Exception`` swallows it
"""

from __future__ import annotations

__all__ = [
    "AmuletError",
    "DatasetUnavailableError",
    "InvalidParameterError",
    "ModelSpecError",
    "NotApplicableError",
    "NotRunError",
    "RunCancelledError",
    "SpecError",
    "UnsafeModelFileError",
]

#: Message template for a bad parameter; tests import it instead of copying the text.
PARAM_MESSAGE = "The {name!r} parameter of {owner} must be {expected}. Got {value!r} instead."


class AmuletError(Exception):
    """Base class of every error Amulet raises on purpose."""


class InvalidParameterError(AmuletError, ValueError):
    """A parameter is out of its allowed range or of the wrong kind; the message names it."""


class NotRunError(AmuletError, RuntimeError):
    """A result attribute was read before the object's run method was called."""


class DatasetUnavailableError(AmuletError, FileNotFoundError):
    """No local, offline or downloadable source for a dataset; the message names how to install one."""


class UnsafeModelFileError(AmuletError, ValueError):
    """A model file that is a pickle (or otherwise not safe to load) was given."""


class ModelSpecError(AmuletError, ValueError):
    """An architecture spec or weights file does not match the registered architecture."""


class SpecError(AmuletError, ValueError):
    """An assessment spec is invalid. ``errors`` lists ``{"path", "message"}`` dicts, one per problem.

    ``str(error)`` has one line per problem, each starting with the field path.
    """

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        lines = [f"  {e['path'] or '<spec>'}: {e['message']}" for e in errors]
        super().__init__(
            f"Invalid assessment spec ({len(errors)} problem{'s' if len(errors) != 1 else ''}):\n" + "\n".join(lines)
        )


class NotApplicableError(AmuletError, ValueError):
    """A risk or defense cannot apply to this model or dataset (reported as not-run, with this reason)."""


class RunCancelledError(BaseException):
    """The run was cancelled: raised by a progress reporter (or a caller's checkpoint) to stop a training,
    a cell or a whole assessment at once.

    It derives from ``BaseException`` on purpose, as ``KeyboardInterrupt`` and ``asyncio.CancelledError`` do:
    the engine records any ``Exception`` of an attack or a defense as that cell's error and goes on, and a
    cancellation must stop the run instead of becoming one more error. :func:`amulet.assess.run_cell`,
    :func:`amulet.assess.run_training` and :func:`amulet.assess.run_assessment` let it propagate.
    """
