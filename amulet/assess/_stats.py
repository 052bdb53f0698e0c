"""Statistics over seeds: mean, standard error, t-based 95% intervals and the paired test against the baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "clip_interval", "paired_difference", "summarize"]

#: Two-sided significance level of the direction test and (1 - coverage) of every interval.
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    """Mean, standard error and 95% interval of values over seeds (``None`` where undefined)."""

    n: int
    mean: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None = None


def _t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - ALPHA / 2, df))


def summarize(values: Sequence[float]) -> Summary:
    """Summarise finite ``values``: mean, SE and the t-interval (n >= 2); identical values give a zero-width interval.

    Example:
        >>> s = summarize([1.0, 2.0, 3.0])
        >>> round(s.mean, 3), round(s.se, 3), round(s.ci_low, 3), round(s.ci_high, 3)
        (2.0, 0.577, -0.484, 4.484)
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return Summary(0, None, None, None, None)
    if max(vals) == min(vals):
        # Exactly equal values: the interval is the value itself (no rounding from summing).
        v = vals[0]
        return Summary(n, v, 0.0 if n > 1 else None, v if n > 1 else None, v if n > 1 else None)
    mean = math.fsum(vals) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    se = sd / math.sqrt(n)
    half = _t_quantile(n - 1) * se
    return Summary(n, mean, se, mean - half, mean + half)


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> Summary:
    """Summary of per-seed differences ``values - baseline`` with a two-sided one-sample t-test p-value.

    Pairs where either value is missing or not finite are dropped. With no spread the p-value is 0 when
    the (constant) difference is non-zero and 1 when it is zero; with fewer than two pairs it is None.

    Example:
        >>> d = paired_difference([0.9, 0.8, 0.85], [0.5, 0.45, 0.5])
        >>> round(d.mean, 3), d.p_value < 0.05
        (0.367, True)
    """
    diffs = [
        float(v) - float(b)
        for v, b in zip(values, baseline)
        if v is not None and b is not None and math.isfinite(v) and math.isfinite(b)
    ]
    s = summarize(diffs)
    if s.n < 2:
        return s
    if s.se == 0:
        p = 0.0 if s.mean != 0 else 1.0
    else:
        from scipy import stats

        t = (s.mean or 0.0) / (s.se or 1.0)
        p = float(2 * stats.t.sf(abs(t), s.n - 1))
    return Summary(s.n, s.mean, s.se, s.ci_low, s.ci_high, p)


def clip_interval(
    low: float | None, high: float | None, bounds: tuple[float, float] | None
) -> tuple[float | None, float | None]:
    """The interval ``[low, high]`` intersected with a metric's range ``bounds`` (unchanged when ``None``).

    Every value of a bounded metric (and so its true mean) lies inside its range, so removing the part of
    a t-interval that lies outside keeps exactly the same coverage: the clipped interval contains the true
    mean whenever the t-interval does.

    Example:
        >>> clip_interval(-86.0, 206.0, (0.0, 100.0))
        (0.0, 100.0)
        >>> clip_interval(0.4, 0.6, None)
        (0.4, 0.6)
    """
    if bounds is None or low is None or high is None:
        return low, high
    lo, hi = bounds
    return min(max(low, lo), hi), max(min(high, hi), lo)
