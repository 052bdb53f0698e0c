"""SpecError is in the AmuletError tree and still a ValueError, so old and new catch sites both work."""

from __future__ import annotations

import pytest

from amulet.assess import SpecError as AssessSpecError
from amulet.assess import load_spec
from amulet.exceptions import AmuletError, SpecError


def test_spec_error_is_one_class_under_amulet_error_and_value_error():
    assert AssessSpecError is SpecError
    assert issubclass(SpecError, AmuletError) and issubclass(SpecError, ValueError)


@pytest.mark.parametrize("catch", [AmuletError, ValueError, SpecError])
def test_every_catch_site_sees_every_problem(catch: type[Exception]):
    with pytest.raises(catch) as info:
        load_spec({"dataset": {"name": "nope"}, "risks": [{"risk": "nope"}]})
    assert isinstance(info.value, SpecError)
    paths = [e["path"] for e in info.value.errors]
    assert "dataset" in paths and str(info.value).startswith("Invalid assessment spec (")
