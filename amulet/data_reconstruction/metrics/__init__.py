"""Data reconstruction: metrics."""

from amulet.data_reconstruction.metrics._similarity import SimilarityResults, evaluate_similarity, ssim_defined

__all__ = ["SimilarityResults", "evaluate_similarity", "ssim_defined"]
