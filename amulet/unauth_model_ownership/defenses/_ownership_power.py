"""The ownership test's statistics: effect size, the power of a one-sided Welch t-test, the samples it needs.

Dataset inference (:class:`~amulet.unauth_model_ownership.defenses.DatasetInference`) checks its positive
control with these: a target whose own held-out test has too little power makes a suspect's large p-value
inconclusive, not evidence of independence.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import nct, norm
from scipy.stats import t as student_t

__all__ = ["ALPHA", "TARGET_POWER", "effect_size", "samples_needed", "welch_power"]

ALPHA = 0.05  # significance level of the ownership test
TARGET_POWER = 0.8  # power the positive control must reach for a negative result to mean anything


def effect_size(public: np.ndarray, private: np.ndarray) -> float:
    """Cohen's d of public minus private scores (pooled standard deviation; 0 when both are constant)."""
    pooled = float(np.sqrt((public.var(ddof=1) + private.var(ddof=1)) / 2)) if len(public) > 1 else 0.0
    diff = float(public.mean() - private.mean())
    return diff / pooled if pooled > 0 else (0.0 if diff == 0 else float(np.sign(diff)) * np.inf)


def welch_power(effect_size: float, n_per_group: int, alpha: float = ALPHA) -> float:
    """Power of a one-sided two-sample t-test with ``n_per_group`` samples per group at ``alpha``.

    Uses the noncentral t distribution with ``2 n - 2`` degrees of freedom (equal group sizes and variances,
    where Welch's test and Student's agree) and noncentrality ``d * sqrt(n / 2)``.

    Args:
        effect_size: Standardised mean difference (Cohen's d) to detect; <= 0 gives power <= alpha.
        n_per_group: Samples per group (>= 2).
        alpha: One-sided significance level.

    Returns:
        Probability of rejecting the null hypothesis when the true effect is ``effect_size``.
    """
    if n_per_group < 2:
        return 0.0
    if not np.isfinite(effect_size):
        return 1.0 if effect_size > 0 else 0.0
    df = 2 * n_per_group - 2
    critical = student_t.ppf(1 - alpha, df)
    return float(nct.sf(critical, df, effect_size * np.sqrt(n_per_group / 2)))


def samples_needed(effect_size: float, alpha: float = ALPHA, power: float = TARGET_POWER) -> int | None:
    """Samples per group for ``power`` at ``effect_size`` (normal approximation); None if no effect to find."""
    if not np.isfinite(effect_size):
        return 2 if effect_size > 0 else None
    if effect_size <= 0:
        return None
    return int(np.ceil(2 * ((norm.ppf(1 - alpha) + norm.ppf(power)) / effect_size) ** 2))
