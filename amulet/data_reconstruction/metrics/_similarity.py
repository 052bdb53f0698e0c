"""Similarity between model-inversion reconstructions and the class means of the original data.

``evaluate_similarity`` compares each class's reconstruction with the mean of that class's original inputs:

* MSE (always defined): mean over input elements of ``(class_mean - reconstruction)^2``;
* SSIM (scikit-image's ``structural_similarity``), only where it is defined: inputs that are images, i.e. one
  sample has shape ``(H, W)`` or ``(C, H, W)`` with ``H, W >= 3`` (channel axis first). For 1-D inputs (tabular
  rows, flattened images) SSIM is not defined: ``mean_ssim`` and every ``class_ssim`` value are NaN, which the
  assessment engine treats as "not measured". The SSIM window is 7 (scikit-image's default) or the largest odd
  size that fits smaller images, and ``data_range`` is the value range of the original data unless given.

A class without any sample in the loader has NaN for both metrics and is left out of the means.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import DataLoader

from amulet.exceptions import InvalidParameterError

__all__ = ["SimilarityResults", "evaluate_similarity", "ssim_defined"]


class SimilarityResults(TypedDict):
    """Output of :func:`evaluate_similarity`."""

    mean_mse: float
    class_mse: dict[int, float]
    mean_ssim: float
    class_ssim: dict[int, float]


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


def evaluate_similarity(
    original_dataset: DataLoader,
    reverse_data: list[torch.Tensor],
    input_size: tuple[int, ...] | int,
    output_size: int,
    device: str | torch.device,
    *,
    data_range: float | None = None,
) -> SimilarityResults:
    """Per-class MSE and SSIM between reconstructions and the class means of ``original_dataset``.

    Args:
        original_dataset: Yields ``(x, y, ...)`` batches of the original (training) data; any batch size.
        reverse_data: One reconstruction per class (e.g. :meth:`FredriksonCCS2015.attack`'s output), each with
            as many elements as one input.
        input_size: Shape of one input (a leading batch dimension of 1 is accepted); used to check shapes.
        output_size: Number of classes.
        device: Torch device for the accumulation.
        data_range: Value range for SSIM (keyword-only); default: max - min of the original data.

    Returns:
        ``{"mean_mse", "class_mse": {class: float}, "mean_ssim", "class_ssim": {class: float}}``. SSIM values are
        NaN where SSIM is not defined (see the module docstring); empty classes are NaN and excluded from means.

    Raises:
        InvalidParameterError: when ``reverse_data`` has fewer than ``output_size`` tensors or shapes disagree.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 4.0]]); y = torch.tensor([0, 0, 1])
        >>> res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=2),
        ...                           [torch.tensor([1.0, 2.0]), torch.tensor([4.0, 5.0])], (2,), 2, "cpu")
        >>> res["class_mse"], res["mean_mse"], res["mean_ssim"]
        ({0: 0.0, 1: 0.5}, 0.25, nan)
    """
    if len(reverse_data) < output_size:
        raise InvalidParameterError(
            f"The 'reverse_data' parameter of evaluate_similarity must hold one reconstruction per class "
            f"({output_size}). Got {len(reverse_data)} instead."
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
    n_elements = sums.shape[1]
    expected = int(np.prod((input_size,) if isinstance(input_size, int) else tuple(input_size)))
    if expected != n_elements:
        raise InvalidParameterError(
            f"The 'input_size' parameter of evaluate_similarity must describe one input of the loader "
            f"({n_elements} elements, shape {sample_shape}). Got {input_size!r} instead."
        )
    if data_range is None:
        data_range = (hi - lo) if hi > lo else 1.0
    with_ssim = ssim_defined(sample_shape)
    class_mse: dict[int, float] = {}
    class_ssim: dict[int, float] = {}
    for c in range(output_size):
        rec = torch.as_tensor(reverse_data[c]).detach().to(device).double().reshape(-1)
        if rec.numel() != n_elements:
            raise InvalidParameterError(
                f"The 'reverse_data' parameter of evaluate_similarity must hold tensors with one input's "
                f"{n_elements} elements. Got {rec.numel()} for class {c} instead."
            )
        if counts[c] == 0:
            class_mse[c], class_ssim[c] = float("nan"), float("nan")
            continue
        mean = sums[c] / counts[c]
        class_mse[c] = float(((mean - rec) ** 2).mean())
        if with_ssim:
            class_ssim[c] = _ssim(
                mean.reshape(sample_shape).cpu().numpy(), rec.reshape(sample_shape).cpu().numpy(), float(data_range)
            )
        else:
            class_ssim[c] = float("nan")
    return {
        "mean_mse": _mean(list(class_mse.values())),
        "class_mse": class_mse,
        "mean_ssim": _mean(list(class_ssim.values())),
        "class_ssim": class_ssim,
    }
