"""The service's bounds on a submitted spec, checked before anything is loaded: sizes, seeds, risks, layer
widths and the number of cells (the ``max_*`` settings)."""

from __future__ import annotations

from typing import Any

from backend.core.config import Settings
from backend.intake import (
    IntakeError,
    check_defense_rows,
    check_finite_numbers,
    check_layer_lists,
    setting_limit,
)

__all__ = ["check_widths", "MAX_LAYER_WIDTH", "MAX_MODEL_PARAMETERS", "check_bounds", "check_cell_count"]


#: Default largest model an assessment may train (parameters; setting ``max_model_parameters``): 500 M float32
#: parameters are 2 GB per copy, and an assessment holds several copies (shadow models, defended rows).
MAX_MODEL_PARAMETERS: int = Settings.model_fields["max_model_parameters"].default

#: Default widest fully connected layer in a model config (setting ``max_layer_width``).
MAX_LAYER_WIDTH: int = Settings.model_fields["max_layer_width"].default


def check_widths(config: Any, settings: Settings) -> None:
    """Layer lists of a submitted model config (see :func:`backend.intake.check_layer_lists`)."""
    check_layer_lists(config, settings, field_prefix="spec.model.config", where="model.config")


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


def check_bounds(spec: dict[str, Any], settings: Settings) -> None:
    """Refuse a submitted spec whose work or text is past the operator's bounds, before anything is loaded.

    Checked on the raw spec (cheap, before validation and planning): the name and description lengths, the
    numbers of seeds, defense rows and risk columns, the number of cells they make ((1 + rows) x risks x
    seeds, the baseline row included) and the model config's layer lists. Each limit is a setting
    (``AMULET_MAX_*``) and the 422 names it.

    Raises:
        IntakeError: 422 naming the field, the limit and the setting.
    """
    check_finite_numbers(spec, "spec")  # NaN/Infinity: no JSON answer or PostgreSQL JSON column holds them
    name, description = spec.get("name"), spec.get("description")
    if isinstance(name, str) and len(name) > settings.max_name_length:
        raise IntakeError(
            "spec.name",
            f"spec.name has {len(name):,} characters, more than "
            f"{setting_limit(settings.max_name_length, 'max_name_length')}. "
            "Use a shorter name.",
        )
    if isinstance(description, str) and len(description) > settings.max_description_length:
        raise IntakeError(
            "spec.description",
            f"spec.description has {len(description):,} characters, more than "
            f"{setting_limit(settings.max_description_length, 'max_description_length')}. Shorten it.",
        )
    seeds, rows, risks = (
        _count(spec.get("seeds")),
        check_defense_rows(spec.get("defenses"), settings),
        _count(spec.get("risks")),
    )
    for field, count, limit, setting, what in (
        ("spec.seeds", seeds, settings.max_seeds, "max_seeds", "seeds"),
        ("spec.defenses", rows, settings.max_defense_rows, "max_defense_rows", "defense rows"),
        ("spec.risks", risks, settings.max_risk_columns, "max_risk_columns", "risk columns"),
    ):
        if count is not None and count > limit:
            raise IntakeError(
                field,
                f"{field[5:]}: {count:,} {what}, more than {setting_limit(limit, setting)}. "
                f"List fewer {what} (or split the sweep over several assessments).",
            )
    cells = (1 + (rows or 0)) * (risks or 1) * (seeds if seeds is not None else 3)
    check_cell_count(cells, settings)
    model = spec.get("model")
    if isinstance(model, dict):
        check_widths(model.get("config"), settings)


def check_cell_count(cells: int, settings: Settings) -> None:
    if cells > settings.max_assessment_cells:
        raise IntakeError(
            "spec",
            f"The assessment makes {cells:,} cells ((1 + defense rows) x risks x seeds), more than "
            f"{setting_limit(settings.max_assessment_cells, 'max_assessment_cells')}. Use fewer seeds, defense rows or "
            "risks, or split it over several assessments.",
        )
