"""Registry entries of the evasion risk (S1): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.defenses import AdversarialTrainingPGD, pgd_batch_transform, pgd_stacked_batch_transform
from amulet.evasion.metrics import attack_success_rate, robust_accuracy
from amulet.exceptions import AmuletError, NotApplicableError
from amulet.recipes import BatchStage
from amulet.registry import (
    AttackInfo,
    DefenseInfo,
    HeadlineMetric,
    MetricInfo,
    RiskInfo,
    ThreatModel,
    derived_from,
    register_attack,
    register_defense,
    register_metric,
    register_risk,
)
from amulet.utils import derive_seed, get_accuracy, make_generator

if TYPE_CHECKING:
    import torch

    from amulet.registry import CellContext

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


@derived_from(
    EvasionPGD,
    overrides={
        "iterations": "The engine's budget: 10 steps of Madry et al.'s step size (2.5 * epsilon / iterations) reach "
        "any point of the epsilon-ball, at a quarter of the cost of layer 1's 40 steps (upstream's default), in "
        "every cell of the matrix.",
        "step_size": "None: Madry et al.'s 2.5 * epsilon / iterations, which follows epsilon and the number of "
        "steps; layer 1's fixed 0.01 (upstream's) suits only its own epsilon and step count.",
    },
    adapted={"step_size": "None becomes madry_step_size(epsilon, iterations, None) before EvasionPGD gets it."},
    engine_only={"max_samples": "The adapter attacks a seeded subset of the test rows when there are more."},
)
class PGDParams(BaseModel):
    """Parameters of the ``pgd`` attack in an assessment."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(default=0.1, ge=0, le=100, description="L-inf radius of the perturbation.")
    iterations: int = Field(default=10, ge=0, le=10_000, description="PGD steps.")
    step_size: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Size of each signed-gradient step; None: 2.5 * epsilon / iterations (Madry et al.).",
    )
    max_samples: int = Field(
        default=2000, ge=1, le=10_000_000, description="Test rows attacked (a seeded subset when there are more)."
    )
    batch_size: int = Field(default=512, ge=1, le=1_000_000, description="Rows attacked together.")


def madry_step_size(epsilon: float, iterations: int, step_size: float | None) -> float:
    """``step_size`` when given, else 2.5 * epsilon / iterations, which lets PGD reach any point of the ball."""
    if step_size is not None:
        return step_size
    return 2.5 * epsilon / max(iterations, 1)


#: Float tolerance of the L-inf budget check (float32 rounding of ``x0 +- epsilon``).
BUDGET_TOLERANCE = 1e-6


class AttackBudgetError(AmuletError, RuntimeError):
    """An attack's examples left its perturbation budget: its numbers would not measure the stated threat."""


def linf_perturbation(x_adv: torch.Tensor, x: torch.Tensor) -> float:
    """The largest ``||x_adv - x||_inf`` over all rows (0 for no rows)."""
    if x.numel() == 0:
        return 0.0
    return float((x_adv.reshape(len(x), -1) - x.reshape(len(x), -1)).abs().max())


def check_linf_budget(owner: str, measured: float, epsilon: float) -> None:
    """Raise :class:`AttackBudgetError` when ``measured`` exceeds ``epsilon`` (+ :data:`BUDGET_TOLERANCE`)."""
    if not measured <= epsilon + BUDGET_TOLERANCE:
        raise AttackBudgetError(
            f"{owner}: the adversarial examples moved inputs by up to {measured:.6g} in L-inf, more than "
            f"epsilon={epsilon:g}; the attack did not respect its budget and its numbers are not reported. "
            "Check that the dataset lies inside the clip range the attack uses (the assessment derives it from "
            "the data) and report this as a bug if it does."
        )


def run_pgd(ctx: CellContext, params: PGDParams) -> dict[str, float]:
    """Layer-2 adapter: PGD on (a seeded subset of) the test rows, within the data's clip range.

    Returns ``robust_accuracy``, ``attack_success_rate``, ``clean_accuracy`` (percent) and
    ``linf_perturbation``, the largest ``||x_adv - x||_inf`` measured over the attacked rows, so a report can
    show that the budget held.

    Raises:
        AttackBudgetError: ``linf_perturbation`` exceeds ``epsilon`` (+1e-6): no number is reported then.
    """
    import torch

    if ctx.dataset.modality == "text":
        raise NotApplicableError("PGD perturbs continuous inputs; it does not apply to text.")
    test = ctx.test
    if len(test) > params.max_samples:
        gen = make_generator(derive_seed(ctx.seed, "pgd", "subset"))
        test = test.subset(torch.randperm(len(test), generator=gen)[: params.max_samples].sort().values)
    clip_min, clip_max = ctx.clip_range if ctx.clip_range is not None else (None, None)
    clean_loader = test.loader(params.batch_size)
    attack = EvasionPGD(
        ctx.target,
        clean_loader,
        ctx.device,
        params.batch_size,
        epsilon=params.epsilon,
        iterations=params.iterations,
        step_size=madry_step_size(params.epsilon, params.iterations, params.step_size),
        clip_min=clip_min,
        clip_max=clip_max,
        seed=derive_seed(ctx.seed, "pgd") % (2**62),
        progress=ctx.progress,
        # The cell measures robustness to attacks on the true labels (its threat model); layer 1's default
        # (upstream's) attacks the model's own predictions, which differs on misclassified inputs.
        label_source="true",
    )
    adversarial = attack.attack()
    # The clean loader is unshuffled, so the examples are aligned with test.x row by row.
    measured = linf_perturbation(attack.adversarial_examples_, test.x)
    check_linf_budget("pgd", measured, params.epsilon)

    return {
        "robust_accuracy": robust_accuracy(ctx.target, adversarial, ctx.device),
        "attack_success_rate": attack_success_rate(ctx.target, clean_loader, adversarial, ctx.device),
        "clean_accuracy": get_accuracy(ctx.target, clean_loader, ctx.device),
        "linf_perturbation": measured,
    }


register_attack(
    AttackInfo(
        key="pgd",
        code="S1",
        name="Projected gradient descent (L-inf)",
        risk="evasion",
        cls=EvasionPGD,
        params=PGDParams,
        threat_model=ThreatModel(
            knowledge="white-box: weights and gradients of the target",
            data="the test inputs to perturb, with their true labels",
            budget="L-inf epsilon per input, a fixed number of PGD steps, inputs kept in the data's value range",
            goal="untargeted misclassification",
        ),
        run=run_pgd,
        summary="Madry et al.'s PGD: random start in the epsilon-ball, signed-gradient ascent on the loss, projection.",
        reference="A. Madry et al. Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR 2018.",
    )
)


@derived_from(
    AdversarialTrainingPGD,
    overrides={
        "iterations": "PGD runs on every training batch of every epoch (and of every shadow model trained with "
        "the recipe): 5 steps of Madry et al.'s step size still reach the ball's edge, at an eighth of the cost "
        "of layer 1's 40 (upstream's default).",
        "step_size": "None: Madry et al.'s 2.5 * epsilon / iterations (see the pgd attack).",
    },
    adapted={"step_size": "None becomes madry_step_size(epsilon, iterations, None) before the stage gets it."},
)
class AdversarialTrainingParams(BaseModel):
    """Parameters of the ``adversarial_training`` defense."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(default=0.1, ge=0, le=100, description="L-inf radius of the training examples.")
    iterations: int = Field(default=5, ge=0, le=1000, description="PGD steps per training batch.")
    step_size: float | None = Field(
        default=None, ge=0, le=100, description="PGD step size; None: 2.5 * epsilon / iterations (Madry et al.)."
    )
    mix_clean: float = Field(default=0.0, ge=0, le=1, description="Fraction of every batch left clean.")
    # Every built-in dataset and every uploaded table lies in [0, 1], so the training examples stay valid
    # inputs by default; data outside the range gets a ValueError that names it (set the bounds, or None).
    clip_min: float | None = Field(
        default=0.0, description="Lowest valid input value (built-in data lies in [0, 1]); None: unbounded."
    )
    clip_max: float | None = Field(
        default=1.0, description="Highest valid input value (built-in data lies in [0, 1]); None: unbounded."
    )


def make_adversarial_training_stage(params: AdversarialTrainingParams) -> BatchStage:
    """A batch stage replacing every training batch by PGD examples against the current model."""
    pgd: dict[str, Any] = {
        "epsilon": params.epsilon,
        "step_size": madry_step_size(params.epsilon, params.iterations, params.step_size),
        "iterations": params.iterations,
        "clip_min": params.clip_min,
        "clip_max": params.clip_max,
        "mix_clean": params.mix_clean,
        # The engine's meaning of adversarial training: one step per batch on PGD examples of the true labels.
        # Upstream's clean step before it (layer 1's default) is not taken: under a stacked DP-SGD loop it
        # would double the noisy steps, and so the privacy spent, per epoch.
        "label_source": "true",
    }
    return BatchStage(
        defense="adversarial_training",
        params=params.model_dump(),
        transform=pgd_batch_transform(**pgd),
        stacked_transform=pgd_stacked_batch_transform(**pgd),
    )


register_defense(
    DefenseInfo(
        key="adversarial_training",
        code="SD1",
        name="PGD adversarial training",
        targets=("evasion",),
        cls=AdversarialTrainingPGD,
        params=AdversarialTrainingParams,
        make_stage=make_adversarial_training_stage,
        summary="Every training batch is replaced by PGD examples made against the current model (eval mode).",
        reference="A. Madry et al. Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR 2018.",
    )
)

register_metric(
    MetricInfo(
        key="robust_accuracy",
        name="Robust accuracy",
        risk="evasion",
        func=robust_accuracy,
        summary="Accuracy (percent) on adversarial examples paired with their true labels.",
    )
)
register_metric(
    MetricInfo(
        key="evasion_attack_success_rate",
        name="Evasion attack success rate",
        risk="evasion",
        func=attack_success_rate,
        summary="Percent of correctly classified inputs that the attack makes the model misclassify.",
    )
)
