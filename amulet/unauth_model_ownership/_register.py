"""Registry entries of the model stealing risk (S3): the risk, its attacks, defenses and metrics."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from amulet.exceptions import NotApplicableError
from amulet.recipes import PostStage
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
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import (
    DatasetInference,
    WatermarkNN,
    embed_watermark,
    generate_trigger_set,
)
from amulet.unauth_model_ownership.metrics import evaluate_extraction
from amulet.utils import derive_seed, get_accuracy, make_optimizer, seeded_init

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from amulet.registry import CellContext
    from amulet.utils import TensorData

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


# --------------------------------------------------------------------------------------------- defenses


@derived_from(
    WatermarkNN,
    overrides={
        "epochs": "5 epochs embed the trigger set on the built-in data; the stage trains longer (up to "
        "twice 'epochs') when the owner's model is not yet above 'threshold'."
    },
    renamed={"trigger_seed": "seed"},
    engine_only={
        "value_low": "With value_high, WatermarkNN's value_range=(value_low, value_high) (a tuple has no form field).",
        "value_high": "With value_low, WatermarkNN's value_range=(value_low, value_high).",
        "threshold": "The trigger accuracy above which the verification says 'watermarked' (WatermarkNN reports "
        "the accuracy; the decision is the engine's).",
    },
)
class WatermarkParams(BaseModel):
    """Parameters of the ``watermark`` defense."""

    model_config = ConfigDict(extra="forbid")

    trigger_seed: int = Field(default=0, ge=0, le=2**62, description="The owner's secret seed of the trigger set.")
    n_trigger: int = Field(default=100, ge=1, le=100_000, description="Number of trigger inputs.")
    epochs: int = Field(default=5, ge=1, le=1000, description="Fine-tuning epochs that embed the watermark.")
    value_low: float = Field(default=0.0, description="Lowest value of the generated trigger inputs.")
    value_high: float = Field(default=1.0, description="Highest value of the generated trigger inputs.")
    threshold: float = Field(
        default=0.9, ge=0, le=1, description="A model is verified as watermarked above this trigger accuracy."
    )


def _num_outputs(model: nn.Module, example: torch.Tensor, device: torch.device | str) -> int:
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        n = int(model(example[:2].to(device)).shape[1])
    model.train(was_training)
    return n


def watermark_trigger_set(params: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> TensorData:
    """The trigger set a ``watermark`` stage with ``params`` embeds (regenerated for verification)."""
    return generate_trigger_set(
        input_shape,
        num_classes,
        n_samples=int(params["n_trigger"]),
        seed=int(params["trigger_seed"]),
        value_range=(float(params["value_low"]), float(params["value_high"])),
    )


def make_watermark_stage(params: WatermarkParams) -> PostStage:
    """A post stage: fine-tune the trained model on its data plus the generated trigger set."""
    stage_params = params.model_dump()

    def apply(model: Any, data: Any, *, config: Any, seed: int, device: Any, progress: Any) -> Any:
        from torch import nn

        shape = tuple(int(s) for s in data.x.shape[1:])
        triggers = watermark_trigger_set(stage_params, shape, _num_outputs(model, data.x, device))
        optimizer = make_optimizer(model, config)
        loader = data.loader(config.batch_size, shuffle=True, seed=seed)
        threshold = 100.0 * params.threshold

        def embed(epochs: int) -> float:
            embed_watermark(
                model,
                loader,
                triggers,
                criterion=nn.CrossEntropyLoss(),
                optimizer=optimizer,
                epochs=epochs,
                device=device,
                progress=progress,
            )
            return get_accuracy(model, triggers.loader(1024), device, warn_degenerate=False)

        # A watermark the owner's own model does not pass verifies nothing: keep embedding, one epoch at a
        # time, up to twice the configured epochs, until the owner's model is above the threshold.
        accuracy, extra = embed(params.epochs), 0
        while accuracy <= threshold and extra < params.epochs:
            accuracy, extra = embed(1), extra + 1
        if accuracy <= threshold:
            logger.warning(
                "watermark: after %d epochs the owner's model answers %.1f%% of its trigger set, not above the "
                "verification threshold %.0f%%; raise 'epochs' or lower 'n_trigger'",
                params.epochs + extra,
                accuracy,
                threshold,
            )
        model.watermark_accuracy_ = accuracy
        return model.eval()

    return PostStage(defense="watermark", params=stage_params, apply=apply)


@derived_from(
    DatasetInference,
    overrides={
        "num_iter": "100 MinGD steps per input instead of layer 1's 500 (upstream's): the verification runs in "
        "every row's model-stealing cell.",
        "alpha_l2": "Five times layer 1's 0.01, as num_iter is a fifth of layer 1's 500.",
        "alpha_linf": "Five times layer 1's 0.001, as num_iter is a fifth of its 500.",
    },
)
class FingerprintParams(BaseModel):
    """Parameters of the ``fingerprint`` defense (dataset inference, verified in the model-stealing cell)."""

    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(
        default=1000,
        ge=8,
        le=100_000,
        description="Private and public inputs used (each; at most the rows available). Half are tested: 500 per "
        "group detect an effect of about 0.16 standard deviations with 80% power, 50 per group only about 0.5.",
    )
    num_iter: int = Field(default=100, ge=1, le=10_000, description="Maximum MinGD steps.")
    alpha_l1: float = Field(default=1.0, gt=0, le=100, description="MinGD L1 step size.")
    alpha_l2: float = Field(default=0.05, gt=0, le=100, description="MinGD L2 step size.")
    alpha_linf: float = Field(default=0.005, gt=0, le=100, description="MinGD L-inf step size.")
    k: int = Field(default=1, ge=1, le=10_000, description="Coordinates moved per MinGD L1 step.")
    regressor_epochs: int = Field(default=500, ge=1, le=100_000, description="Training steps of the regressor.")


def make_fingerprint_stage(params: FingerprintParams) -> PostStage:
    """A post stage that leaves the model unchanged: verification happens in the model-stealing cell."""

    def apply(model: Any, data: Any, *, config: Any, seed: int, device: Any, progress: Any) -> Any:
        return model

    return PostStage(defense="fingerprint", params=params.model_dump(), apply=apply)


register_defense(
    DefenseInfo(
        key="fingerprint",
        code="SD3",
        name="Fingerprinting by dataset inference",
        targets=("unauth_model_ownership",),
        cls=DatasetInference,
        params=FingerprintParams,
        make_stage=make_fingerprint_stage,
        summary=(
            "No change to training; a suspect model is tested for knowledge of the private training set "
            "(MinGD margins, regressor, one-sided Welch t-test)."
        ),
        reference="P. Maini, M. Yaghini, N. Papernot. Dataset Inference: Ownership Resolution in ML. ICLR 2021.",
    )
)

register_defense(
    DefenseInfo(
        key="watermark",
        code="SD4",
        name="Watermarking by backdooring",
        targets=("unauth_model_ownership",),
        cls=WatermarkNN,
        params=WatermarkParams,
        make_stage=make_watermark_stage,
        summary="The trained model is fine-tuned on its data plus a secret, seeded trigger set with random labels.",
        reference="Y. Adi et al. Turning Your Weakness Into a Strength: Watermarking DNNs by Backdooring. USENIX 2018.",
    )
)


# --------------------------------------------------------------------------------------------- attack


@derived_from(
    ModelExtraction,
    overrides={
        "epochs": "20 surrogate epochs instead of layer 1's 50 (upstream's): the surrogate trains in "
        "every row of the matrix."
    },
    engine_only={
        "lr": "Learning rate of the Adam optimizer the adapter builds for the surrogate (ModelExtraction takes "
        "the optimizer).",
        "batch_size": "Batch size of the adversary's loader the adapter builds (ModelExtraction takes the loader).",
    },
)
class ModelExtractionParams(BaseModel):
    """Parameters of the ``model_extraction`` attack in an assessment."""

    model_config = ConfigDict(extra="forbid")

    loss_type: Literal["mse", "kl", "ce"] = Field(
        default="mse", description="mse: target logits; kl: target probabilities; ce: target labels only."
    )
    epochs: int = Field(default=20, ge=1, le=10_000, description="Training epochs of the surrogate.")
    lr: float = Field(default=1e-3, gt=0, le=10, description="Adam learning rate of the surrogate.")
    batch_size: int = Field(default=256, ge=1, le=1_000_000, description="Surrogate training batch size.")
    query_budget: int | None = Field(
        default=None, ge=1, description="Maximum queries to the target (None: all of the adversary's rows)."
    )


def run_model_extraction(ctx: CellContext, params: ModelExtractionParams) -> dict[str, float]:
    """Layer-2 adapter: extract the target with the adversary's rows, compare on the test rows.

    Returns ``fidelity``, ``correct_fidelity``, ``stolen_accuracy``, ``target_accuracy`` (percent) and
    ``n_queries``; with a ``watermark`` defense also ``watermark_accuracy_target``,
    ``watermark_accuracy_stolen`` (percent), ``watermark_verified_target`` and ``watermark_verified_stolen``
    (0/1; NaN when the owner's own model fails verification, since then nothing was measured); with a ``fingerprint``
    defense also ``fingerprint_p_value_stolen`` (and ``fingerprint_p_value_target``), the effect sizes
    ``fingerprint_effect_size_stolen`` / ``_target``, ``fingerprint_power`` (of the test at the target's own
    effect) and ``fingerprint_underpowered`` (1 when the target's own test is not significant or has under
    80 % power: a large p-value for the stolen model is then inconclusive; the reason is logged).
    """
    import torch

    if ctx.dataset.modality == "text":
        raise NotApplicableError("Model extraction here trains a surrogate of the target's architecture on tensors.")
    device = torch.device(ctx.device)
    seed = derive_seed(ctx.seed, "model_extraction")
    surrogate = seeded_init(ctx.model_factory, seed).to(device)
    attack = ModelExtraction(
        ctx.target,
        surrogate,
        torch.optim.Adam(surrogate.parameters(), lr=params.lr),
        ctx.adversary.loader(params.batch_size),
        device,
        epochs=params.epochs,
        loss_type=params.loss_type,
        query_budget=params.query_budget,
        seed=seed % (2**62),
        progress=ctx.progress,
    )
    stolen = attack.attack()
    test_loader = ctx.test.loader(1024)
    scores = evaluate_extraction(ctx.target, stolen, test_loader, device)
    out: dict[str, float] = {**scores, "n_queries": float(attack.n_queries_)}

    wm_stage = ctx.recipe.stage("watermark")
    if "watermark" in ctx.defense_keys and wm_stage is not None:
        shape = tuple(ctx.input_shape) or tuple(int(s) for s in ctx.member.x.shape[1:])
        triggers = watermark_trigger_set(wm_stage.params, shape, _num_outputs(ctx.target, ctx.member.x, device))
        loader = triggers.loader(1024)
        out["watermark_accuracy_target"] = get_accuracy(ctx.target, loader, device, warn_degenerate=False)
        out["watermark_accuracy_stolen"] = get_accuracy(stolen, loader, device, warn_degenerate=False)
        threshold = 100.0 * float(wm_stage.params.get("threshold", 0.9))
        out["watermark_verified_target"] = float(out["watermark_accuracy_target"] > threshold)
        # When the owner's own model fails verification, "the copy is not verified" would be read as "the
        # watermark did not survive extraction": nothing was measured, so report it as not measured.
        verified = float(out["watermark_accuracy_stolen"] > threshold)
        out["watermark_verified_stolen"] = verified if out["watermark_verified_target"] else math.nan

    fp_stage = ctx.recipe.stage("fingerprint")
    if "fingerprint" in ctx.defense_keys and fp_stage is not None:
        p = fp_stage.params
        inference = DatasetInference(
            ctx.target,
            stolen,
            ctx.member.loader(256),
            ctx.test.loader(256),
            _num_outputs(ctx.target, ctx.member.x, device),
            device,
            "2D" if ctx.dataset.modality == "image" else "1D",
            alpha_l1=float(p["alpha_l1"]),
            alpha_l2=float(p["alpha_l2"]),
            alpha_linf=float(p["alpha_linf"]),
            k=float(p["k"]),
            num_iter=int(p["num_iter"]),
            num_samples=int(p["num_samples"]),
            regressor_epochs=int(p["regressor_epochs"]),
            seed=derive_seed(ctx.seed, "fingerprint") % (2**62),
            progress=ctx.progress,
        )
        result = inference.fingerprint()
        out["fingerprint_p_value_stolen"] = float(result["suspect"]["p-value"])
        out["fingerprint_p_value_target"] = float(result["target"]["p-value"])
        for who, key in (("suspect", "stolen"), ("target", "target")):
            # +-inf (two constant, different score sets) is not a number a report can average: not measured
            effect = float(result[who]["effect_size"])
            out[f"fingerprint_effect_size_{key}"] = effect if math.isfinite(effect) else math.nan
        out["fingerprint_power"] = float(result["power"]["target_power"])
        out["fingerprint_underpowered"] = float(result["power"]["underpowered"])
    return out


register_attack(
    AttackInfo(
        key="model_extraction",
        code="S3",
        name="Model extraction",
        risk="unauth_model_ownership",
        cls=ModelExtraction,
        params=ModelExtractionParams,
        threat_model=ThreatModel(
            knowledge="black-box: the target's outputs (logits, probabilities or labels, by loss type)",
            data="the adversary's own rows, disjoint from the training set, as queries",
            budget="one query per adversary row (or the query budget); the target's architecture is known",
            goal="a surrogate that agrees with the target",
        ),
        run=run_model_extraction,
        summary="Query the target on the adversary's rows, train a surrogate of the same architecture on the answers.",
        reference="F. Tramer et al. Stealing Machine Learning Models via Prediction APIs. USENIX Security 2016.",
    )
)

register_metric(
    MetricInfo(
        key="evaluate_extraction",
        name="Extraction accuracy and fidelity",
        risk="unauth_model_ownership",
        func=evaluate_extraction,
        summary="Target and stolen accuracy, fidelity and correct fidelity (percent).",
    )
)
