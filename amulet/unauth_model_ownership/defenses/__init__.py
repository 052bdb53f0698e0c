"""Model stealing: defenses.

``__all__`` lists the defenses only, as upstream Amulet; the base classes and the helpers the assessment
engine uses stay importable from here (hence the ``noqa: F401``).
"""

from amulet.unauth_model_ownership.defenses._base import FingerprintDefense, WatermarkDefense  # noqa: F401
from amulet.unauth_model_ownership.defenses._dataset_inference import DatasetInference, mingd_distances  # noqa: F401
from amulet.unauth_model_ownership.defenses._watermark import (  # noqa: F401
    WatermarkNN,
    embed_watermark,
    generate_trigger_set,
    load_trigger_folder,
)

__all__ = ["DatasetInference", "WatermarkNN"]
