"""Model stealing: defenses."""

from amulet.unauth_model_ownership.defenses._base import FingerprintDefense, WatermarkDefense
from amulet.unauth_model_ownership.defenses._dataset_inference import DatasetInference, mingd_distances
from amulet.unauth_model_ownership.defenses._watermark import (
    WatermarkNN,
    embed_watermark,
    generate_trigger_set,
    load_trigger_folder,
)

__all__ = [
    "DatasetInference",
    "FingerprintDefense",
    "WatermarkDefense",
    "WatermarkNN",
    "embed_watermark",
    "generate_trigger_set",
    "load_trigger_folder",
    "mingd_distances",
]
