"""Registry entries of the evasion risk (S1): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key="evasion",
        code="S1",
        name="Evasion",
        category="security",
        description="Adversarial examples: small input perturbations that change the model's prediction.",
        headline_metrics=(
            HeadlineMetric(
                key="robust_accuracy",
                name="Robust accuracy",
                higher_is_riskier=False,
                unit="%",
                description="Accuracy on adversarial examples (higher = less susceptible).",
            ),
            HeadlineMetric(
                key="attack_success_rate",
                name="Attack success rate",
                higher_is_riskier=True,
                unit="%",
                description="Share of correctly classified inputs the attack flips.",
            ),
        ),
    )
)
