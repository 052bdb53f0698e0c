"""Registry entries of the membership inference risk (P1): the risk, its attacks, defenses and metrics."""

from amulet.registry import HeadlineMetric, RiskInfo, register_risk

RISK = register_risk(
    RiskInfo(
        key='membership_inference',
        code='P1',
        name='Membership inference',
        category='privacy',
        description='Inferring whether a record was in the training data.',
        headline_metrics=(
        HeadlineMetric(
            key='auc',
            name='AUC',
            higher_is_riskier=True,
            unit='',
            description='Area under the ROC curve of the membership scores.',
        ),
        HeadlineMetric(
            key='tpr_at_fpr',
            name='TPR at 1% FPR',
            higher_is_riskier=True,
            unit='',
            description='True-positive rate at a 1% false-positive rate.',
        ),
        HeadlineMetric(
            key='balanced_acc',
            name='Balanced accuracy',
            higher_is_riskier=True,
            unit='',
            description='Best balanced accuracy over thresholds.',
        ),
        ),
    )
)
