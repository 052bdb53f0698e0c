"""Registry entries of the discriminatory behaviour risk (F): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key='discriminatory_behavior',
        code='F',
        name='Discriminatory behaviour',
        category='fairness',
        description='Different treatment of groups defined by sensitive attributes.',
        headline_metrics=(
        HeadlineMetric(
            key='demographic_parity',
            name='Demographic parity difference',
            higher_is_riskier=True,
            unit='',
            description='Worst case over sensitive attributes of |P(yhat=1|a=1) - P(yhat=1|a=0)|.',
        ),
        HeadlineMetric(
            key='equalized_odds',
            name='Equalized odds',
            higher_is_riskier=True,
            unit='',
            description='Worst case of TPR parity + FPR parity.',
        ),
        HeadlineMetric(
            key='p_rule',
            name='p%-rule',
            higher_is_riskier=False,
            unit='%',
            description='Worst case of 100*min(r, 1/r) (lower = more discriminatory).',
        ),
        ),
    )
)
