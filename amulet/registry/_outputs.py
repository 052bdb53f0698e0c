"""What an attack adapter may return besides its metrics: a ROC curve and the records it exposed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["AttackOutput", "RocCurve", "VulnerableRecord"]


class RocCurve(BaseModel):
    """A ROC curve, thinned for plotting: false-positive rates ascending, with their true-positive rates.

    Attributes:
        fpr: False-positive rates in [0, 1], ascending; the first is the smallest non-zero rate measured.
        tpr: True-positive rate at each ``fpr``.
        n_positive: Number of positive candidates (members) the curve was measured on.
        n_negative: Number of negative candidates (non-members); ``1 / n_negative`` is the smallest
            false-positive rate the curve can resolve.
    """

    model_config = ConfigDict(extra="forbid")

    fpr: list[float]
    tpr: list[float]
    n_positive: int
    n_negative: int


class VulnerableRecord(BaseModel):
    """A training record that an attack singled out: one of the highest-scoring members.

    Attributes:
        record: The record's row number (0-based) in the assessment's training split (the rows the
            member/adversary split is drawn from; see ``docs/reports.md``).
        label: The record's class label.
        score: The attack's membership score for it (higher = more confidently a member).
        rank: Its rank among every candidate the attack scored, members and non-members (1 = highest).
    """

    model_config = ConfigDict(extra="forbid")

    record: int
    label: int
    score: float
    rank: int


class AttackOutput(BaseModel):
    """What an attack adapter may return instead of a plain ``dict`` of metrics.

    Attributes:
        metrics: Metric key -> value, as a plain adapter returns.
        roc: The ROC curve of the attack's scores (membership-style attacks).
        vulnerable_records: The most exposed training records, highest score first.
    """

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, float]
    roc: RocCurve | None = None
    vulnerable_records: list[VulnerableRecord] = []
