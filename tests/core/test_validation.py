from __future__ import annotations

import pytest

from amulet._validation import (
    InstanceOf,
    Interval,
    IsCallable,
    Options,
    check_param,
    constraints_accept,
    validate_params,
)
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError


class _Thing:
    _parameter_constraints = {
        "portion": [Interval(float, 0, 1, closed="right")],
        "k": [Interval(int, 1, None)],
        "mode": [Options({"a", "b"})],
        "fn": [IsCallable(), None],
    }

    def __init__(self, portion=0.5, k=3, mode="a", fn=None):
        self.portion = portion
        self.k = k
        self.mode = mode
        self.fn = fn
        validate_params(self)  # the convention: refuse bad arguments at construction...

    def run(self):
        validate_params(self)  # ...and again when run, as an attribute may have been changed since
        return "ran"


def test_valid_parameters_pass():
    assert _Thing().run() == "ran"
    assert _Thing(portion=1.0, k=10, mode="b", fn=len).run() == "ran"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"portion": 0.0}, "portion"),
        ({"portion": float("nan")}, "portion"),
        ({"portion": True}, "portion"),
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"mode": "c"}, "mode"),
        ({"mode": ["unhashable"]}, "mode"),
        ({"fn": 3}, "fn"),
    ],
)
def test_bad_parameter_message_names_the_parameter_and_the_class(kwargs: dict, name: str):
    with pytest.raises(InvalidParameterError, match=rf"The '{name}' parameter of _Thing must be"):
        _Thing(**kwargs)
    thing = _Thing()
    for key, value in kwargs.items():
        setattr(thing, key, value)
    with pytest.raises(InvalidParameterError, match=rf"The '{name}' parameter of _Thing must be"):
        thing.run()


def test_constraints_accept_reads_none_as_accepting_none():
    assert constraints_accept([Interval(int, 0, None), None], None)
    assert not constraints_accept([Interval(int, 0, None)], None)
    assert constraints_accept([Options({"a"})], "a")


def test_message_follows_the_template():
    with pytest.raises(InvalidParameterError) as info:
        check_param("X", "p", 5, [Interval(int, 0, 1)])
    assert str(info.value) == PARAM_MESSAGE.format(name="p", owner="X", expected="an int in the range [0, 1]", value=5)


def test_invalid_parameter_error_is_a_value_error():
    with pytest.raises(ValueError):
        check_param("X", "p", "s", [InstanceOf(int)])


def test_validate_params_extra_constraints():
    with pytest.raises(InvalidParameterError, match="'k'"):
        validate_params(_Thing(), extra={"k": [Interval(int, 5, None)]})
