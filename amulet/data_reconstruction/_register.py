"""Registry entries of the data reconstruction risk (P3): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key='data_reconstruction',
        code='P3',
        name='Data reconstruction',
        category='privacy',
        description='Reconstructing representative training inputs (model inversion).',
        headline_metrics=(
        HeadlineMetric(
            key='mse',
            name='Reconstruction MSE',
            higher_is_riskier=False,
            unit='',
            description='Mean squared error between reconstructions and class means (lower = more susceptible).',
        ),
        HeadlineMetric(
            key='ssim',
            name='Reconstruction SSIM',
            higher_is_riskier=True,
            unit='',
            description='Structural similarity to class means (images only).',
        ),
        ),
    )
)
