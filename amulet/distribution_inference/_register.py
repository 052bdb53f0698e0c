"""Registry entries of the distribution inference risk (P4): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key='distribution_inference',
        code='P4',
        name='Distribution inference',
        category='privacy',
        description='Inferring properties of the training distribution (e.g. the share of one sex).',
        headline_metrics=(
        HeadlineMetric(
            key='distinguishing_accuracy',
            name='Distinguishing accuracy',
            higher_is_riskier=True,
            unit='',
            description='Accuracy of telling the two training distributions apart.',
        ),
        HeadlineMetric(
            key='auc',
            name='Distinguishing AUC',
            higher_is_riskier=True,
            unit='',
            description='AUC of the distinguisher.',
        ),
        ),
    )
)
