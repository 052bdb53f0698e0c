"""Regulatory crosswalk: which clauses a policy check on a risk can give evidence for.

The table maps each risk (falling back to its category for risks added later) to clauses of the EU AI Act,
the GDPR, the NIST AI RMF and ISO/IEC 42001. It indicates where a measured result may be useful evidence;
it is not legal advice and not a conformity assessment (see :data:`DISCLAIMER`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLAUSES", "DISCLAIMER", "Clause", "clauses_for"]


@dataclass(frozen=True)
class Clause:
    """One clause of a framework."""

    id: str
    framework: str
    reference: str
    title: str


CLAUSES: dict[str, Clause] = {
    c.id: c
    for c in (
        Clause(
            "EUAIA-9", "EU AI Act", "Art. 9", "Risk management system: identification, estimation and testing of risks"
        ),
        Clause("EUAIA-10", "EU AI Act", "Art. 10", "Data and data governance, incl. examination for possible biases"),
        Clause(
            "EUAIA-15",
            "EU AI Act",
            "Art. 15",
            "Accuracy, robustness and cybersecurity (incl. data poisoning, "
            "adversarial examples, confidentiality attacks)",
        ),
        Clause("GDPR-35", "GDPR", "Art. 35", "Data protection impact assessment (DPIA)"),
        Clause("NIST-MEASURE-2.6", "NIST AI RMF 1.0", "MEASURE 2.6", "Safety risks evaluated; system fails safely"),
        Clause(
            "NIST-MEASURE-2.7", "NIST AI RMF 1.0", "MEASURE 2.7", "Security and resilience evaluated and documented"
        ),
        Clause("NIST-MEASURE-2.10", "NIST AI RMF 1.0", "MEASURE 2.10", "Privacy risk examined and documented"),
        Clause(
            "NIST-MEASURE-2.11", "NIST AI RMF 1.0", "MEASURE 2.11", "Fairness and bias evaluated and results documented"
        ),
        Clause(
            "ISO42001-A.5",
            "ISO/IEC 42001:2023",
            "Annex A.5",
            "Assessing impacts of AI systems on individuals and groups",
        ),
        Clause("ISO42001-A.6.2.4", "ISO/IEC 42001:2023", "Annex A.6.2.4", "AI system verification and validation"),
        Clause(
            "ISO42001-A.7", "ISO/IEC 42001:2023", "Annex A.7", "Data for AI systems (quality, provenance, preparation)"
        ),
    )
}

_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "security": ("EUAIA-9", "EUAIA-15", "NIST-MEASURE-2.6", "NIST-MEASURE-2.7", "ISO42001-A.6.2.4"),
    "privacy": ("EUAIA-9", "EUAIA-15", "GDPR-35", "NIST-MEASURE-2.10", "ISO42001-A.5", "ISO42001-A.6.2.4"),
    "fairness": ("EUAIA-9", "EUAIA-10", "NIST-MEASURE-2.11", "ISO42001-A.5", "ISO42001-A.6.2.4", "ISO42001-A.7"),
}

_BY_RISK: dict[str, tuple[str, ...]] = {
    # Poisoning is about the training data as much as about robustness.
    "poisoning": (*_BY_CATEGORY["security"], "EUAIA-10", "ISO42001-A.7"),
    # Model stealing is a confidentiality/cybersecurity matter, not a safety one.
    "unauth_model_ownership": ("EUAIA-9", "EUAIA-15", "NIST-MEASURE-2.7", "ISO42001-A.6.2.4"),
}

DISCLAIMER = (
    "This crosswalk indicates the clauses for which a check may serve as supporting technical evidence. It is not "
    "legal advice, not a conformity assessment and not a complete demonstration of compliance with any clause: "
    "those also require organisational measures, documentation and a qualified review."
)


def clauses_for(risk: str, category: str) -> list[Clause]:
    """Clauses a check on ``risk`` (of ``category``: security, privacy or fairness) gives evidence for."""
    ids = _BY_RISK.get(risk) or _BY_CATEGORY.get(category, ("EUAIA-9", "ISO42001-A.6.2.4"))
    return [CLAUSES[i] for i in dict.fromkeys(ids)]
