"""Registry entries of the attribute inference risk (P2): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key='attribute_inference',
        code='P2',
        name='Attribute inference',
        category='privacy',
        description="Inferring sensitive attributes of records from the model's outputs.",
        headline_metrics=(
        HeadlineMetric(
            key='balanced_accuracy',
            name='Balanced attack accuracy',
            higher_is_riskier=True,
            unit='',
            description="Worst case over sensitive attributes of the attack's balanced accuracy.",
        ),
        HeadlineMetric(
            key='auc',
            name='Attack AUC',
            higher_is_riskier=True,
            unit='',
            description="Worst case over sensitive attributes of the attack's AUC.",
        ),
        ),
    )
)
