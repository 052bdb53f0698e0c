"""Registry entries of the poisoning risk (S2): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key="poisoning",
        code="S2",
        name="Poisoning",
        category="security",
        description="Backdoors planted by manipulating part of the training data.",
        headline_metrics=(
            HeadlineMetric(
                key="attack_success_rate",
                name="Backdoor success rate",
                higher_is_riskier=True,
                unit="%",
                description="Triggered test inputs classified as the attacker's label.",
            ),
            HeadlineMetric(
                key="clean_accuracy",
                name="Clean accuracy of the poisoned model",
                higher_is_riskier=False,
                unit="%",
                description="Accuracy of the poisoned model on clean test data.",
            ),
        ),
    )
)
