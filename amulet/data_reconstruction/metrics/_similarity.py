"""Similarity between model-inversion reconstructions and the class means of the original data.

``evaluate_similarity`` compares each class's reconstruction with the mean of that class's original inputs.
Every number it returns is finite (a class without any sample is the one exception, see below).

On every modality:

* MSE (``class_mse``, ``mean_mse``): mean over input elements of ``(class_mean - reconstruction)^2``.
  Lower = the reconstruction is closer to the class mean.

On images (one sample has shape ``(H, W)`` or ``(C, H, W)`` with ``H, W >= 3``, channel axis first):

* SSIM (``class_ssim``, ``mean_ssim``; scikit-image's ``structural_similarity``) in [-1, 1]; higher = more
  similar. The window is 7 (scikit-image's default) or the largest odd size that fits smaller images, and
  ``data_range`` is the value range of the original data unless given (it must be positive).

On tables (any other input shape), using the column layout (:class:`~amulet.data_reconstruction.TabularLayout`:
which columns are numeric and which form the one-hot block of a categorical column):

* ``class_numeric_mse``/``mean_numeric_mse``: the MSE over the numeric columns only (on their encoded scale);
  present when the table has numeric columns.
* ``class_category_accuracy``/``mean_category_accuracy`` in [0, 1]: the share of one-hot blocks whose
  argmax in the reconstruction is the class's most frequent category (a tie among k largest entries that
  includes it counts 1/k, the chance of picking it); higher = more of the class's typical categories
  recovered. ``block_accuracy`` gives it per categorical column (averaged over classes), and
  ``category_accuracy_prior`` what a reconstruction that knows only the whole data's most frequent
  category of each column would score: recovery above it is information about the class, not just the
  population. Present when the table has one-hot blocks. A block without its first category (the built-in
  tables, as upstream encodes them) scores that category as ``1 - sum`` of the block
  (:meth:`~amulet.data_reconstruction.TabularLayout.category_scores`).

Without a layout a table's columns are all treated as numeric (logged, and ``layout`` says so). SSIM is
not defined for tables, so image-only keys are absent from a table's result, and vice versa.

A class without any sample in the loader has NaN for its per-class entries and is left out of the means.
"""

from __future__ import annotations

import logging
import math
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import DataLoader

from amulet.data_reconstruction._layout import TabularLayout
from amulet.exceptions import InvalidParameterError

__all__ = ["SimilarityResults", "evaluate_similarity", "ssim_defined"]

logger = logging.getLogger(__name__)


class _SimilarityCore(TypedDict):
    mean_mse: float
    class_mse: dict[int, float]
    modality: str


class SimilarityResults(_SimilarityCore, total=False):
    """Output of :func:`evaluate_similarity` (see the module docstring for each key).

    Always: ``mean_mse``, ``class_mse``, ``modality`` (``"image"`` or ``"tabular"``). Images: ``mean_ssim``,
    ``class_ssim``. Tables: ``layout`` (a description), and with numeric columns ``mean_numeric_mse``,
    ``class_numeric_mse``, with one-hot blocks ``mean_category_accuracy``, ``class_category_accuracy``,
    ``block_accuracy``, ``category_accuracy_prior``.
    """

    mean_ssim: float
    class_ssim: dict[int, float]
    layout: str
    mean_numeric_mse: float
    class_numeric_mse: dict[int, float]
    mean_category_accuracy: float
    class_category_accuracy: dict[int, float]
    block_accuracy: dict[str, float]
    category_accuracy_prior: float


def ssim_defined(sample_shape: tuple[int, ...]) -> bool:
    """True when inputs of shape ``sample_shape`` (one sample, no batch axis) are images SSIM applies to."""
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) == 2:
        return min(shape) >= 3
    if len(shape) == 3:
        return min(shape[1:]) >= 3
    return False


def _ssim(reference: np.ndarray, image: np.ndarray, data_range: float) -> float:
    from skimage.metrics import structural_similarity

    if reference.ndim == 3 and reference.shape[0] == 1:
        reference, image = reference[0], image[0]
    spatial = reference.shape[-2:]
    win = min(7, min(spatial))
    win = win if win % 2 == 1 else win - 1
    channel_axis = 0 if reference.ndim == 3 else None
    return float(
        structural_similarity(reference, image, data_range=data_range, win_size=win, channel_axis=channel_axis)
    )


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else float("nan")


def _recovery(block_mean: torch.Tensor, block_rec: torch.Tensor) -> float:
    """1/k when the most frequent category (argmax of the class mean) is among the k largest reconstruction
    entries of the block, else 0."""
    top = block_rec == block_rec.max()
    return float(top[int(block_mean.argmax())]) / float(top.sum())


def evaluate_similarity(
    original_dataset: DataLoader,
    reverse_data: list[torch.Tensor],
    input_size: tuple[int, ...] | int,
    output_size: int,
    device: str | torch.device,
    *,
    data_range: float | None = None,
    layout: TabularLayout | None = None,
) -> SimilarityResults:
    """Per-class similarity between reconstructions and the class means of ``original_dataset``.

    Args:
        original_dataset: Yields ``(x, y, ...)`` batches of the original (training) data; any batch size.
        reverse_data: One reconstruction per class (e.g. :meth:`FredriksonCCS2015.attack`'s output), each with
            as many elements as one input.
        input_size: Shape of one input (a leading batch dimension of 1 is accepted); used to check shapes.
        output_size: Number of classes.
        device: Torch device for the accumulation.
        data_range: Value range for SSIM on images (keyword-only); default: max - min of the original data.
        layout: Column layout of tabular inputs (keyword-only), e.g.
            ``TabularLayout.from_dataset(load_data(root, "census"))``; default: every column numeric (logged).

    Returns:
        A :class:`SimilarityResults`: MSE on every modality, SSIM on images, numeric-column MSE and category
        recovery accuracy on tables (see the module docstring). Empty classes are NaN and excluded from means.

    Raises:
        InvalidParameterError: when ``reverse_data`` has fewer than ``output_size`` tensors, shapes disagree,
            ``data_range`` is not positive, the layout does not fit the inputs, or no sample has a valid label.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from amulet.data_reconstruction import TabularLayout
        >>> x = torch.tensor([[1.0, 0.0, 0.2], [1.0, 0.0, 0.4], [0.0, 1.0, 0.9]]); y = torch.tensor([0, 0, 1])
        >>> layout = TabularLayout(3, numeric=(2,), categorical={"colour": (0, 1)})
        >>> recs = [torch.tensor([0.7, 0.3, 0.3]), torch.tensor([0.6, 0.4, 0.5])]
        >>> res = evaluate_similarity(DataLoader(TensorDataset(x, y)), recs, (3,), 2, "cpu", layout=layout)
        >>> res["class_category_accuracy"], round(res["mean_numeric_mse"], 3)
        ({0: 1.0, 1: 0.0}, 0.08)
    """
    if len(reverse_data) < output_size:
        raise InvalidParameterError(
            f"The 'reverse_data' parameter of evaluate_similarity must hold one reconstruction per class "
            f"({output_size}). Got {len(reverse_data)} instead."
        )
    if data_range is not None and not (math.isfinite(float(data_range)) and float(data_range) > 0):
        raise InvalidParameterError(
            f"The 'data_range' parameter of evaluate_similarity must be a positive number. Got {data_range!r} instead."
        )
    device = torch.device(device)
    sums: torch.Tensor | None = None
    counts = torch.zeros(output_size, dtype=torch.float64, device=device)
    sample_shape: tuple[int, ...] = ()
    lo, hi = math.inf, -math.inf
    for batch in original_dataset:
        x, y = batch[0].to(device), torch.as_tensor(batch[1]).to(device).long().reshape(-1)
        if sums is None:
            sample_shape = tuple(x.shape[1:])
            sums = torch.zeros(output_size, int(np.prod(sample_shape)), dtype=torch.float64, device=device)
        flat = x.reshape(len(x), -1).double()
        keep = (y >= 0) & (y < output_size)
        sums.index_add_(0, y[keep], flat[keep])
        counts += torch.bincount(y[keep], minlength=output_size).double()
        if len(flat):
            lo, hi = min(lo, float(flat.min())), max(hi, float(flat.max()))
    if sums is None:
        raise InvalidParameterError(
            "The 'original_dataset' parameter of evaluate_similarity must yield at least one batch. Got an empty "
            "loader instead."
        )
    if float(counts.sum()) == 0:
        raise InvalidParameterError(
            f"The 'original_dataset' parameter of evaluate_similarity must hold samples with labels in "
            f"[0, {output_size}). Got none instead."
        )
    n_elements = sums.shape[1]
    expected = int(np.prod((input_size,) if isinstance(input_size, int) else tuple(input_size)))
    if expected != n_elements:
        raise InvalidParameterError(
            f"The 'input_size' parameter of evaluate_similarity must describe one input of the loader "
            f"({n_elements} elements, shape {sample_shape}). Got {input_size!r} instead."
        )
    recs: list[torch.Tensor] = []
    for c in range(output_size):
        rec = torch.as_tensor(reverse_data[c]).detach().to(device).double().reshape(-1)
        if rec.numel() != n_elements:
            raise InvalidParameterError(
                f"The 'reverse_data' parameter of evaluate_similarity must hold tensors with one input's "
                f"{n_elements} elements. Got {rec.numel()} for class {c} instead."
            )
        if not bool(torch.isfinite(rec).all()):
            raise InvalidParameterError(
                f"The 'reverse_data' parameter of evaluate_similarity must hold finite values. The reconstruction "
                f"of class {c} has NaN or infinite entries (the inversion diverged: lower its step size)."
            )
        recs.append(rec)
    present = [c for c in range(output_size) if counts[c] > 0]
    means = {c: sums[c] / counts[c] for c in present}
    nan = float("nan")
    class_mse = {c: float(((means[c] - recs[c]) ** 2).mean()) if c in means else nan for c in range(output_size)}
    if ssim_defined(sample_shape):
        if layout is not None:
            raise InvalidParameterError(
                f"The 'layout' parameter of evaluate_similarity describes tabular columns; the inputs are images "
                f"of shape {sample_shape}. Leave it out."
            )
        rng = float(data_range) if data_range is not None else (hi - lo) if hi > lo else 1.0
        class_ssim = {
            c: _ssim(means[c].reshape(sample_shape).cpu().numpy(), recs[c].reshape(sample_shape).cpu().numpy(), rng)
            if c in means
            else nan
            for c in range(output_size)
        }
        return {
            "modality": "image",
            "mean_mse": _mean(list(class_mse.values())),
            "class_mse": class_mse,
            "mean_ssim": _mean(list(class_ssim.values())),
            "class_ssim": class_ssim,
        }
    if layout is None:
        logger.info(
            "evaluate_similarity: no column layout given, so all %d columns are treated as numeric; pass "
            "layout=TabularLayout.from_dataset(dataset) to score categorical columns.",
            n_elements,
        )
        layout = TabularLayout.all_numeric(n_elements)
    if layout.n_features != n_elements:
        raise InvalidParameterError(
            f"The 'layout' parameter of evaluate_similarity must describe the {n_elements} columns of the inputs. "
            f"Got a layout of {layout.n_features} columns instead."
        )
    result: SimilarityResults = {
        "modality": "tabular",
        "mean_mse": _mean(list(class_mse.values())),
        "class_mse": class_mse,
        "layout": layout.describe(),
    }
    if layout.numeric:
        cols = torch.as_tensor(layout.numeric, device=device)
        numeric = {
            c: float(((means[c][cols] - recs[c][cols]) ** 2).mean()) if c in means else nan for c in range(output_size)
        }
        result["mean_numeric_mse"] = _mean(list(numeric.values()))
        result["class_numeric_mse"] = numeric
    if layout.categorical:
        overall = sums.sum(0) / counts.sum()
        per_block: dict[str, dict[int, float]] = {}
        prior: dict[str, list[float]] = {}
        for name in layout.categorical:
            # Category scores include a dropped first category (1 - the block's sum) where the block has one.
            mean_scores = {c: layout.category_scores(means[c], name) for c in present}
            overall_best = int(layout.category_scores(overall, name).argmax())
            per_block[name] = {c: _recovery(mean_scores[c], layout.category_scores(recs[c], name)) for c in present}
            prior[name] = [float(overall_best == int(mean_scores[c].argmax())) for c in present]
        accuracy = {
            c: float(np.mean([per_block[b][c] for b in per_block])) if c in means else nan for c in range(output_size)
        }
        result["mean_category_accuracy"] = _mean(list(accuracy.values()))
        result["class_category_accuracy"] = accuracy
        result["block_accuracy"] = {b: float(np.mean(list(v.values()))) for b, v in per_block.items()}
        result["category_accuracy_prior"] = float(np.mean([np.mean(v) for v in prior.values()]))
    return result
