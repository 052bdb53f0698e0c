"""DP-SGD's privacy accounting: the epsilon a training history spends, the noise a target epsilon needs.

Opacus' accountants (RDP, PRV, GDP) answer both questions; the answers depend only on (noise multiplier,
sample rate, steps) and delta, so they are computed once per process and reused by every model trained the
same way (the populations of LiRA and distribution inference).
"""

from __future__ import annotations

import functools
import math
import warnings

from amulet.exceptions import InvalidParameterError

__all__ = [
    "DELTA_ATTRIBUTE",
    "EPSILON_ATTRIBUTE",
    "MAX_NOISE_MULTIPLIER",
    "NOISE_ATTRIBUTE",
    "noise_for_epsilon",
    "poisson_schedule",
    "spent_epsilon",
]

#: Attribute names under which a DP-trained model carries its privacy guarantee.
EPSILON_ATTRIBUTE = "privacy_epsilon_"
DELTA_ATTRIBUTE = "privacy_delta_"
NOISE_ATTRIBUTE = "privacy_noise_multiplier_"
#: Largest noise multiplier a target epsilon may pick (DPSGDParams.noise_multiplier has the same bound).
MAX_NOISE_MULTIPLIER = 1000.0


@functools.lru_cache(maxsize=1024)
def spent_epsilon(accountant: str, history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """The epsilon that ``accountant`` reports at ``delta`` for a training ``history``, computed once per process.

    The accountant's answer depends only on the history of (noise multiplier, sample rate, steps) and on
    delta, and computing it (RDP over ~150 orders) costs about as much as training a small census model
    privately, so a population of identically trained models (LiRA shadows, distribution-inference
    models) asks for it once.

    Args:
        accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        history: Opacus' ``accountant.history``: (noise multiplier, sample rate, number of steps) entries.
        delta: Target delta.
    """
    from opacus.accountants import create_accountant

    if any(sigma == 0 and steps > 0 for sigma, _, steps in history):
        return math.inf  # no noise, no guarantee (the PRV accountant would overflow instead of saying so)
    engine_accountant = create_accountant(mechanism=accountant)
    engine_accountant.history = [tuple(entry) for entry in history]
    return float(engine_accountant.get_epsilon(delta))


def poisson_schedule(num_rows: int, batch_size: int) -> tuple[float, int]:
    """Opacus' Poisson sampling rate and steps per epoch for ``num_rows`` rows and an expected batch size.

    ``DPDataLoader.from_data_loader`` samples with rate ``1 / len(loader)`` (``len(loader) = ceil(n / B)``)
    and takes ``int(1 / rate)`` steps per epoch.
    """
    rate = 1.0 / -(-num_rows // max(1, min(batch_size, num_rows)))
    return rate, int(1 / rate)


@functools.lru_cache(maxsize=256)
def noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance) whose epsilon after ``steps`` is <= the target.

    Opacus' ``get_noise_multiplier`` (a bisection over the accountant), computed once per process for a
    given schedule, since every model of a population asks the same question.

    Raises:
        InvalidParameterError: the target cannot be reached with this schedule (budget too low).
    """
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
        # Opacus searches up to sigma 1e6, and the accountant slows down as sigma grows (minutes for an
        # unreachable target); noise beyond MAX_NOISE_MULTIPLIER leaves no utility, so check that bound first.
        floor = spent_epsilon(accountant, ((MAX_NOISE_MULTIPLIER, sample_rate, steps),), delta)
    if floor > target_epsilon:
        raise InvalidParameterError(
            f"target_epsilon={target_epsilon} cannot be reached at delta={delta} with {steps} steps at sampling "
            f"rate {sample_rate:.4g}: even noise multiplier {MAX_NOISE_MULTIPLIER:g} spends epsilon {floor:.3g} "
            f"({accountant} accountant); raise 'target_epsilon' or 'delta'."
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=accountant,
                )
            )
    except ValueError as err:
        raise InvalidParameterError(
            f"target_epsilon={target_epsilon} cannot be reached at delta={delta} with {steps} steps at sampling "
            f"rate {sample_rate:.4g} ({err}); raise 'target_epsilon' or lower 'epochs' / 'batch_size'."
        ) from err
