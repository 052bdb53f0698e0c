"""Exact KNN-Shapley values (Jia et al., VLDB 2019), vectorised and chunked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from amulet.exceptions import InvalidParameterError
from amulet.progress import Progress, resolve_progress

__all__ = ["knn_shapley"]

#: Bytes of working memory per (test point, training point) pair of one chunk: the distance, the packed
#: int64 sort key, the int64 order, the match indicator and two float64 buffers of the recursion.
_BYTES_PER_PAIR = 48


def _as_2d(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(a)
    if not t.is_floating_point():
        t = t.double()
    return t.reshape(len(t), -1)


def _rank(q: torch.Tensor, xt: torch.Tensor, train_sq: torch.Tensor) -> torch.Tensor:
    """Indices of the training points sorted by distance to each row of ``q`` (ties: lower index first)."""
    # ||q - t||^2 = ||q||^2 + ||t||^2 - 2 q.t, clamped at +0.0 (rounding can make it slightly negative).
    dist = torch.addmm(train_sq.unsqueeze(0), q, xt.T, beta=1.0, alpha=-2.0)
    dist = dist.add_((q * q).sum(1, keepdim=True)).clamp_min_(0.0).add_(0.0)
    n = dist.shape[1]
    if dist.dtype != torch.float32 or n >= 2**31:
        return torch.sort(dist, dim=1, stable=True).indices
    # Non-negative float32 bit patterns order like the floats: pack (distance bits, index) into one int64
    # key, so a plain sort of integers gives the distance order with ties broken by index.
    key = (dist.view(torch.int32).to(torch.int64) << 32) | torch.arange(n, device=dist.device, dtype=torch.int64)
    del dist
    if key.device.type == "cpu":
        key_np = key.numpy()
        rows = np.array_split(np.arange(len(key_np)), max(1, min(torch.get_num_threads(), len(key_np))))
        with ThreadPoolExecutor(len(rows)) as pool:  # NumPy's SIMD sort releases the GIL
            list(pool.map(lambda r: key_np.__setitem__(r, np.sort(key_np[r], axis=1)), rows))
        key = torch.from_numpy(key_np)
    else:
        key = torch.sort(key, dim=1).values
    return key & 0xFFFFFFFF


def knn_shapley(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    *,
    k: int = 5,
    chunk_size: int | None = None,
    memory_limit_mb: float = 256.0,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Exact Shapley value of every training point for a K-nearest-neighbour classifier.

    For each test point (label y) the training points are sorted by Euclidean distance, nearest first
    (ties broken by training index), alpha_1..alpha_N, and

        s_N = 1[y_{alpha_N} = y] / N
        s_i = s_{i+1} + (1[y_{alpha_i} = y] - 1[y_{alpha_{i+1}} = y]) / k * min(k, i) / i

    The value of a training point is its s averaged over the test points. Test points are processed in
    chunks: one chunk's distances come from one matrix product, the ranks from one sort, and the
    recursion is a reverse cumulative sum, so memory is bounded by the chunk (about
    ``chunk_size * N * 48`` bytes) whatever the number of test points.

    Reference:
        Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms. Ruoxi Jia et al.,
        VLDB 2019. https://arxiv.org/abs/1908.08619

    Args:
        x_train: Training features, shape (N, ...) (flattened to (N, d); images keep every channel).
        y_train: Training labels, shape (N,).
        x_test: Test features, shape (M, ...), same width as ``x_train``.
        y_test: Test labels, shape (M,).
        k: Number of neighbours (default 5).
        chunk_size: Test points per chunk; None derives it from ``memory_limit_mb``.
        memory_limit_mb: Working-memory budget of one chunk when ``chunk_size`` is None.
        device: Where to compute (default: the device of ``x_train``); use a GPU when present.
        progress: Progress reporter (task ``"knn_shapley"``, one unit per chunk).

    Returns:
        Float64 tensor of shape (N,) on the CPU: the Shapley value of each training point.

    Raises:
        InvalidParameterError: for k < 1, a non-positive chunk size, or mismatched shapes.

    Example:
        >>> import torch
        >>> from amulet.poisoning.defenses import knn_shapley
        >>> x = torch.tensor([[0.0], [1.0], [5.0]])
        >>> knn_shapley(x, torch.tensor([0, 0, 1]), torch.tensor([[0.1]]), torch.tensor([0]), k=1)
        tensor([0.5000, 0.5000, 0.0000], dtype=torch.float64)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidParameterError(f"The 'k' parameter of knn_shapley must be an int >= 1. Got {k!r} instead.")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise InvalidParameterError(
            f"The 'chunk_size' parameter of knn_shapley must be an int >= 1 or None. Got {chunk_size!r} instead."
        )
    xt, xq = _as_2d(x_train), _as_2d(x_test)
    yt = torch.as_tensor(y_train).reshape(-1).long()
    yq = torch.as_tensor(y_test).reshape(-1).long()
    if len(xt) != len(yt) or len(xq) != len(yq):
        raise InvalidParameterError("x_train/y_train and x_test/y_test must have the same number of rows each.")
    if len(xt) == 0 or len(xq) == 0:
        raise InvalidParameterError("knn_shapley needs at least one training point and one test point.")
    if xt.shape[1] != xq.shape[1]:
        raise InvalidParameterError(
            f"x_train and x_test must have the same feature width; got {xt.shape[1]} and {xq.shape[1]}."
        )
    device = torch.device(device) if device is not None else xt.device
    dtype = torch.float64 if torch.float64 in (xt.dtype, xq.dtype) else torch.float32
    xt = xt.to(device=device, dtype=dtype)
    yt = yt.to(device)
    n_train, n_test = len(xt), len(xq)
    if chunk_size is None:
        chunk_size = max(1, int(memory_limit_mb * 2**20) // (n_train * _BYTES_PER_PAIR))
    chunk_size = min(chunk_size, n_test)

    train_sq = (xt * xt).sum(1)
    ranks = torch.arange(1, n_train + 1, device=device, dtype=torch.float64)  # i = 1..N
    coef = torch.clamp(ranks, max=k) / (k * ranks)  # c_i = min(k, i) / (k i)
    # Summation by parts: s_i = s_N + sum_{l=i}^{N-1} (m_l - m_{l+1}) c_l
    #                         = m_i c_i + sum_{l=i+1}^{N-1} m_l (c_l - c_{l-1}) + m_N (1/N - c_{N-1}),
    # so one product and one cumulative sum give every s_i.
    dcoef = torch.zeros(n_train, dtype=torch.float64, device=device)
    if n_train > 2:
        dcoef[1 : n_train - 1] = coef[1 : n_train - 1] - coef[: n_train - 2]
    last = 1.0 / n_train - (float(coef[n_train - 2]) if n_train > 1 else 0.0)
    labels_train = yt.to(torch.int32)
    values = torch.zeros(n_train, dtype=torch.float64, device=device)
    progress = resolve_progress(progress)
    starts = range(0, n_test, chunk_size)
    for start in progress.track(starts, "knn_shapley", total=len(starts), description="KNN-Shapley"):
        q = xq[start : start + chunk_size].to(device=device, dtype=dtype)
        labels = yq[start : start + chunk_size].to(device=device, dtype=torch.int32)
        order = _rank(q, xt, train_sq)
        match = (labels_train[order] == labels.unsqueeze(1)).to(torch.float64)
        cum = (match * dcoef).cumsum_(1)
        s = cum[:, -1:] - cum  # sum over l > i of m_l d_l
        del cum
        s.addcmul_(match, coef).add_(match[:, -1:] * last)
        s[:, -1] = match[:, -1] / n_train
        del match
        if device.type == "cpu":
            values.index_add_(0, order.reshape(-1), s.reshape(-1))  # sequential: deterministic on the CPU
        else:
            values += torch.empty_like(s).scatter_(1, order, s).sum(0)
        del s, order
    return (values / n_test).cpu()
