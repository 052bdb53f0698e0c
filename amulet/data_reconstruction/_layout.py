"""The column layout of encoded tabular inputs: which columns are numeric and which form one-hot blocks.

Model inversion and its metrics need the layout to treat a table as a table: a one-hot block encodes one
categorical value (its valid values are the corners of a simplex and the argmax names the category), while
a numeric column is a number on its encoded scale. A block may have dropped its first category (upstream
Amulet's ``pandas.get_dummies(drop_first=True)``, used by the built-in tables): that category is the block's
all-zero pattern, so the block's valid values are the corners of {x >= 0, sum(x) <= 1} and its category
scores are ``[1 - sum(x), x...]``. The built-in tabular datasets and uploaded CSV tables
record their fitted encoding (``AmuletDataset.feature_names`` and ``AmuletDataset.preprocessing``), from which
:meth:`TabularLayout.from_dataset` reads the layout. Data without that record (for example an ``.npz`` table)
gets :meth:`TabularLayout.all_numeric`: every column is treated as numeric, and the layout says so
(``known`` is False).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from amulet.exceptions import InvalidParameterError

__all__ = ["TabularLayout", "project_to_capped_simplex", "project_to_simplex"]

logger = logging.getLogger(__name__)


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of every row of ``v`` (``(..., k)``) onto the probability simplex.

    The closest point (in L2) with non-negative entries summing to 1 (Duchi et al., ICML 2008, Fig. 1):
    ``max(v - theta, 0)`` with the threshold ``theta`` found from the sorted entries.
    """
    k = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    cssv = u.cumsum(dim=-1) - 1.0
    ind = torch.arange(1, k + 1, device=v.device, dtype=v.dtype)
    cond = (u - cssv / ind) > 0
    # rho: the last index where the condition holds (it always holds at index 0)
    rho = cond.to(v.dtype).mul(ind).argmax(dim=-1, keepdim=True)
    theta = cssv.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


def project_to_capped_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of every row of ``v`` (``(..., k)``) onto {x >= 0, sum(x) <= 1}.

    The set of valid one-hot blocks without their first category (the all-zero row is that category) and
    their mixtures. Where clamping at 0 already gives a sum <= 1 that is the projection; elsewhere the sum
    constraint is active and the projection is the one onto the probability simplex.
    """
    clamped = v.clamp_min(0.0)
    inside = clamped.sum(dim=-1, keepdim=True) <= 1.0
    return torch.where(inside, clamped, project_to_simplex(v))


@dataclass(frozen=True)
class TabularLayout:
    """Which encoded columns are numeric and which form the one-hot block of each categorical column.

    Attributes:
        n_features: Number of encoded columns.
        numeric: Positions of the numeric columns.
        categorical: Categorical column name -> positions of its one-hot columns (in category order).
        categories: Categorical column name -> the labels of those columns (same order as the positions).
        known: False when the layout was not recorded with the data and every column is assumed numeric.
        dropped: Categorical column name -> the label of its dropped first category, for blocks encoded
            without it (that category is the block's all-zero pattern); blocks not named keep every category.
    """

    n_features: int
    numeric: tuple[int, ...]
    categorical: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    known: bool = True
    dropped: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: list[int] = list(self.numeric) + [i for block in self.categorical.values() for i in block]
        if sorted(seen) != list(range(self.n_features)):
            raise InvalidParameterError(
                "The 'layout' of a table must name every one of its "
                f"{self.n_features} columns exactly once (numeric columns plus one-hot blocks). Got positions "
                f"{sorted(seen)[:10]}{'...' if len(seen) > 10 else ''} ({len(seen)} in all) instead."
            )
        for name, block in self.categorical.items():
            if len(block) < 1:
                raise InvalidParameterError(f"The one-hot block of categorical column {name!r} has no column.")
        unknown = sorted(set(self.dropped) - set(self.categorical))
        if unknown:
            raise InvalidParameterError(
                f"The 'dropped' categories of a layout must belong to its one-hot blocks; {unknown} are not blocks."
            )

    @classmethod
    def all_numeric(cls, n_features: int) -> TabularLayout:
        """Every column numeric (``known=False``): the layout of a table whose encoding is not recorded."""
        return cls(int(n_features), tuple(range(int(n_features))), {}, {}, known=False)

    @classmethod
    def from_encoding(
        cls,
        feature_names: Sequence[str],
        categorical: Mapping[str, Sequence[Any]],
        numeric: Sequence[str],
        *,
        dropped: Mapping[str, Any] | None = None,
    ) -> TabularLayout:
        """The layout of columns named ``feature_names`` (``"column=category"`` for one-hot columns).

        Args:
            feature_names: Name of every encoded column, in order.
            categorical: Categorical column name -> its categories, in encoding order (including a dropped one).
            numeric: Names of the numeric columns.
            dropped: Categorical column name -> its category encoded as the all-zero pattern (no column of
                its own), for blocks encoded without their first category.

        Raises:
            InvalidParameterError: when a named column is missing from ``feature_names``.
        """
        index = {str(n): i for i, n in enumerate(feature_names)}
        gone = {str(c): str(v) for c, v in (dropped or {}).items()}
        encoded = {str(c): [str(v) for v in cats if gone.get(str(c)) != str(v)] for c, cats in categorical.items()}
        try:
            blocks = {c: tuple(index[f"{c}={v}"] for v in cats) for c, cats in encoded.items()}
            nums = tuple(index[str(n)] for n in numeric)
        except KeyError as exc:
            raise InvalidParameterError(
                f"The encoding names the column {exc.args[0]!r}, which is not among the 'feature_names' "
                f"({len(index)} columns)."
            ) from None
        labels = {c: tuple(cats) for c, cats in encoded.items()}
        return cls(len(index), nums, blocks, labels, known=True, dropped={c: v for c, v in gone.items() if c in blocks})

    @classmethod
    def from_dataset(cls, dataset: Any, n_features: int | None = None) -> TabularLayout:
        """The layout recorded with a loaded dataset (:class:`~amulet.datasets.AmuletDataset`).

        Reads ``dataset.feature_names`` and ``dataset.preprocessing["categorical"]`` / ``["numeric"]`` (the
        record of the fitted tabular encoding). When either is missing or does not describe ``n_features``
        columns, logs a warning and returns :meth:`all_numeric`.

        Args:
            dataset: The dataset object (anything with those attributes).
            n_features: Number of encoded columns (default: ``len(dataset.feature_names)`` or
                ``dataset.num_features``).
        """
        names = getattr(dataset, "feature_names", None)
        prep = getattr(dataset, "preprocessing", None) or {}
        width = n_features if n_features is not None else len(names) if names else getattr(dataset, "num_features", 0)
        width = int(width or 0)
        cats, nums = prep.get("categorical"), prep.get("numeric")
        if names and isinstance(cats, Mapping) and isinstance(nums, (Mapping, Sequence)) and len(names) == width:
            try:
                categories = {c: list(info["categories"]) for c, info in cats.items()}
                dropped = {c: info["dropped"] for c, info in cats.items() if info.get("dropped") is not None}
                return cls.from_encoding(names, categories, list(nums), dropped=dropped)
            except (InvalidParameterError, KeyError, TypeError) as exc:
                reason = f"its recorded encoding does not match its columns ({exc})"
        else:
            reason = "it records no encoding (feature names and categorical/numeric columns)"
        name = getattr(dataset, "name", None) or type(dataset).__name__
        logger.warning(
            "Dataset %s: every one of its %d columns is treated as numeric, because %s.", name, width, reason
        )
        return cls.all_numeric(width)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Project each one-hot block of ``x`` (``(..., n_features)``) onto its valid set.

        Numeric columns are returned unchanged. A block with every category is projected onto the probability
        simplex, one without its first category onto {x >= 0, sum(x) <= 1} (the remaining mass belongs to the
        dropped category): either way a distribution over the block's categories, the continuous counterpart
        of a one-hot vector.
        """
        if not self.categorical:
            return x
        out = x.clone()
        for name, block in self.categorical.items():
            cols = torch.as_tensor(block, device=x.device)
            project = project_to_capped_simplex if name in self.dropped else project_to_simplex
            out[..., cols] = project(x[..., cols])
        return out

    def category_scores(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The scores of every category of block ``name`` in ``x`` (``(..., n_features)``), in category order.

        The block's columns, preceded (for a block without its first category) by ``1 - sum`` of them, the
        score of the dropped category: its argmax names the category the block encodes.
        """
        block = x[..., torch.as_tensor(self.categorical[name], device=x.device)]
        if name not in self.dropped:
            return block
        return torch.cat([1.0 - block.sum(dim=-1, keepdim=True), block], dim=-1)

    def describe(self) -> str:
        """One line: how many numeric columns and one-hot blocks, and whether the layout was recorded."""
        if not self.known:
            return f"{self.n_features} columns, all treated as numeric (no encoding recorded with the data)"
        text = f"{len(self.numeric)} numeric columns and {len(self.categorical)} one-hot blocks"
        if self.dropped:
            text += f" ({len(self.dropped)} without their first category, encoded as all zeros)"
        return text
