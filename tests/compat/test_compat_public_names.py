"""Every public name upstream Amulet 0.6.0 documents for layer 1 imports from the same module path.

The text and LLM modules of upstream 0.6 (``TextBadNets``, ``ONION``, ``HFCausalLM``, the Hugging Face text
loaders) are out of scope (docs/upstream-compat.md) and deliberately not listed.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

UPSTREAM_NAMES: dict[str, list[str]] = {
    "amulet.utils": [
        "create_dir",
        "get_accuracy",
        "get_intermediate_features",
        "initialize_model",
        "load_data",
        "load_or_train",
        "stratified_split",
        "train_classifier",
        "DEFAULT_CAPACITY_MAP",
    ],
    "amulet.datasets": [
        "AmuletDataset",
        "CustomImageDataset",
        "load_celeba",
        "load_census",
        "load_cifar10",
        "load_cifar100",
        "load_fmnist",
        "load_lfw",
        "load_mnist",
        "load_utkface",
    ],
    "amulet.models": ["AmuletModel", "LinearNet", "ResNet", "SimpleCNN", "VGG"],
    "amulet.evasion.attacks": ["EvasionPGD"],
    "amulet.evasion.defenses": ["AdversarialTrainingPGD"],
    "amulet.poisoning.attacks": ["BadNets"],
    "amulet.poisoning.defenses": ["OutlierRemoval"],
    "amulet.unauth_model_ownership.attacks": ["ModelExtraction"],
    "amulet.unauth_model_ownership.defenses": ["DatasetInference", "WatermarkNN"],
    "amulet.unauth_model_ownership.metrics": ["evaluate_extraction"],
    "amulet.membership_inference.attacks": ["LiRA"],
    "amulet.membership_inference.defenses": ["DPSGD"],
    "amulet.membership_inference.metrics": ["compute_mi_metrics"],
    "amulet.attribute_inference.attacks": ["DudduCIKM2022"],
    "amulet.attribute_inference.metrics": ["evaluate_attribute_inference"],
    "amulet.distribution_inference.attacks": ["SuriEvans2022", "WhiteBoxPIM"],
    "amulet.distribution_inference.metrics": ["evaluate_distinguishing_accuracy"],
    # upstream's scripts import the split helper from here
    "amulet.distribution_inference.dataset_utils": ["DistributionSplits", "prepare_distribution_splits"],
    "amulet.data_reconstruction.attacks": ["FredriksonCCS2015"],
    "amulet.data_reconstruction.metrics": ["evaluate_similarity"],
    "amulet.discriminatory_behavior.defenses": ["AdversarialDebiasing"],
    "amulet.discriminatory_behavior.metrics": ["DiscriminatoryBehavior"],
}


@pytest.mark.parametrize(("module_name", "names"), sorted(UPSTREAM_NAMES.items()))
def test_upstream_names_import(module_name: str, names: list[str]) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{module_name} lacks {missing}"


RISKS = [
    "evasion",
    "poisoning",
    "unauth_model_ownership",
    "membership_inference",
    "attribute_inference",
    "distribution_inference",
    "data_reconstruction",
    "discriminatory_behavior",
]
ENTRY_POINTS = {"train_robust", "train_private", "train_fair", "watermark", "fingerprint"}


@pytest.mark.parametrize("risk", RISKS)
def test_defenses_all_lists_defenses_only(risk: str) -> None:
    """As upstream, ``<risk>.defenses.__all__`` names defense classes (and their abstract bases) only: no result
    dataclasses, helper functions or helper networks."""
    module = importlib.import_module(f"amulet.{risk}.defenses")
    offenders = []
    for name in module.__all__:
        obj = getattr(module, name)
        is_defense = (
            inspect.isclass(obj)
            and not dataclasses.is_dataclass(obj)
            and (bool(ENTRY_POINTS & set(dir(obj))) or name.endswith("Defense"))
        )
        if not is_defense:
            offenders.append(name)
    assert not offenders, f"amulet.{risk}.defenses.__all__ lists non-defenses: {offenders}"
