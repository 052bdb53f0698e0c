"""Registry entries of the model stealing risk (S3): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key="unauth_model_ownership",
        code="S3",
        name="Model stealing",
        category="security",
        description="Unauthorized model ownership: an adversary extracts a functional copy through queries.",
        headline_metrics=(
            HeadlineMetric(
                key="fidelity",
                name="Fidelity",
                higher_is_riskier=True,
                unit="%",
                description="Test inputs on which the stolen model agrees with the target.",
            ),
            HeadlineMetric(
                key="correct_fidelity",
                name="Correct fidelity",
                higher_is_riskier=True,
                unit="%",
                description="Agreement on inputs both models classify correctly.",
            ),
            HeadlineMetric(
                key="stolen_accuracy",
                name="Stolen model accuracy",
                higher_is_riskier=True,
                unit="%",
                description="Test accuracy of the extracted model.",
            ),
        ),
    )
)
