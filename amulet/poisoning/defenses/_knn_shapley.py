"""Exact KNN-Shapley values (Jia et al., VLDB 2019), vectorised and chunked."""

from __future__ import annotations

import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from amulet._cores import automatic_threads
from amulet.exceptions import InvalidParameterError
from amulet.progress import Progress, resolve_progress
from amulet.settings import get_settings

__all__ = ["knn_shapley"]

#: Bytes of working memory per (test point, training point) pair of one chunk: the distance, the packed
#: int64 sort key, the order, the gathered labels, the match indicator and three float64 buffers of the recursion.
_BYTES_PER_PAIR = 64
#: Most test points in one chunk when ``chunk_size`` is None: larger chunks leave the caches and page in fresh
#: memory for every chunk (6,000 training x 4,000 test points on 2 cores: 0.5 s in chunks of 256, 0.95 s in
#: chunks of 930).
_MAX_CHUNK = 256


def _as_2d(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(a)
    if not t.is_floating_point():
        t = t.double()
    return t.reshape(len(t), -1)


def _rank(q: torch.Tensor, xt: torch.Tensor, train_sq: torch.Tensor) -> torch.Tensor:
    """Indices of the training points sorted by distance to each row of ``q`` (ties: lower index first)."""
    return torch.sort(_distances(q, xt, train_sq), dim=1, stable=True).indices


def _distances(q: torch.Tensor, xt: torch.Tensor, train_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, shape (len(q), len(xt)), never negative and never -0.0."""
    # ||q - t||^2 = ||q||^2 + ||t||^2 - 2 q.t, clamped at +0.0 (rounding can make it slightly negative).
    dist = torch.addmm(train_sq.unsqueeze(0), q, xt.T, beta=1.0, alpha=-2.0)
    return dist.add_((q * q).sum(1, keepdim=True)).clamp_min_(0.0).add_(0.0)


def _rank_float32(dist: np.ndarray) -> np.ndarray:
    """:func:`_rank` for non-negative float32 distances on the CPU, as int32 indices, in NumPy.

    Non-negative float32 bit patterns order like the floats, so each pair is packed into one int64 key (the
    distance's bits above, the training index below) and a plain integer sort gives the distance order with
    ties broken by index. The key is written through an int32 view, one strided copy per half, instead of
    being computed with shifts. NumPy's sort and copies release the GIL, so row blocks sort in parallel.
    """
    rows, n = dist.shape
    key = np.empty((rows, n), dtype=np.int64)
    halves = key.view(np.int32).reshape(rows, n, 2)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    halves[:, :, high] = dist.view(np.int32)
    halves[:, :, low] = np.arange(n, dtype=np.int32)
    key.sort(axis=1)
    return halves[:, :, low]


def _scored_block(
    dist: np.ndarray, labels: np.ndarray, labels_train: np.ndarray, coef: np.ndarray, dcoef: np.ndarray, last: float
) -> tuple[np.ndarray, np.ndarray]:
    """The sort order (int32) and ``s`` of a block of test rows from their float32 distances, in NumPy."""
    order = np.ascontiguousarray(_rank_float32(dist))
    match = (labels_train[order] == labels[:, None]).astype(np.float64)
    return order, _scores(match, coef, dcoef, last)


def _scores(match: Any, coef: Any, dcoef: Any, last: float) -> Any:
    """Every ``s_i`` of the rows of ``match`` (1.0 where the i-th nearest has the test label), NumPy or torch.

    Summation by parts: s_i = s_N + sum_{l=i}^{N-1} (m_l - m_{l+1}) c_l
                            = m_i c_i + sum_{l=i+1}^{N-1} m_l (c_l - c_{l-1}) + m_N (1/N - c_{N-1}),
    so one product and one cumulative sum give every s_i.
    """
    n = match.shape[1]
    cum = (match * dcoef).cumsum(1)
    s = cum[:, -1:] - cum  # sum over l > i of m_l d_l
    del cum
    s += match * coef
    s += match[:, -1:] * last
    s[:, -1] = match[:, -1] / n
    return s


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
    ``chunk_size * N * 64`` bytes) whatever the number of test points. On the CPU, a chunk's rows are
    sorted and scored in parallel blocks (the free cores, or ``AMULET_NUM_THREADS``) and added to the
    values in row order, so the values do not depend on the number of threads.

    Reference:
        Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms. Ruoxi Jia et al.,
        VLDB 2019. https://arxiv.org/abs/1908.08619

    Args:
        x_train: Training features, shape (N, ...) (flattened to (N, d); images keep every channel).
        y_train: Training labels, shape (N,).
        x_test: Test features, shape (M, ...), same width as ``x_train``.
        y_test: Test labels, shape (M,).
        k: Number of neighbours (default 5).
        chunk_size: Test points per chunk; None derives it from ``memory_limit_mb`` (at most 256).
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
        chunk_size = max(1, min(_MAX_CHUNK, int(memory_limit_mb * 2**20) // (n_train * _BYTES_PER_PAIR)))
    chunk_size = min(chunk_size, n_test)

    train_sq = (xt * xt).sum(1)
    ranks = torch.arange(1, n_train + 1, device=device, dtype=torch.float64)  # i = 1..N
    coef = torch.clamp(ranks, max=k) / (k * ranks)  # c_i = min(k, i) / (k i)
    dcoef = torch.zeros(n_train, dtype=torch.float64, device=device)  # d_l = c_l - c_{l-1}, 0 at both ends
    if n_train > 2:
        dcoef[1 : n_train - 1] = coef[1 : n_train - 1] - coef[: n_train - 2]
    last = 1.0 / n_train - (float(coef[n_train - 2]) if n_train > 1 else 0.0)
    labels_train = yt.to(torch.int32)
    values = torch.zeros(n_train, dtype=torch.float64, device=device)
    in_numpy = device.type == "cpu" and dtype == torch.float32 and n_train < 2**31
    workers = (get_settings().num_threads or automatic_threads()) if in_numpy else 1
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    train_np = (labels_train.numpy(), coef.numpy(), dcoef.numpy(), last) if in_numpy else ()

    def score_block(block: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return _scored_block(*block, *train_np)

    progress = resolve_progress(progress)
    starts = range(0, n_test, chunk_size)
    try:
        for start in progress.track(starts, "knn_shapley", total=len(starts), description="KNN-Shapley"):
            q = xq[start : start + chunk_size].to(device=device, dtype=dtype)
            labels = yq[start : start + chunk_size].to(device=device, dtype=torch.int32)
            if in_numpy:
                dist, labels_np = _distances(q, xt, train_sq).numpy(), labels.numpy()
                bounds = np.linspace(0, len(q), min(workers, len(q)) + 1).astype(int)
                blocks = [(dist[i:j], labels_np[i:j]) for i, j in itertools.pairwise(bounds)]
                # Row blocks run in parallel; their sums go into ``values`` in row order, as one block would
                for block_order, block_s in (pool.map if pool is not None else map)(score_block, blocks):
                    values.index_add_(
                        0, torch.from_numpy(block_order).reshape(-1), torch.from_numpy(block_s).reshape(-1)
                    )
                continue
            order = _rank(q, xt, train_sq)
            s = _scores((labels_train[order] == labels.unsqueeze(1)).to(torch.float64), coef, dcoef, last)
            if device.type == "cpu":
                values.index_add_(0, order.reshape(-1), s.reshape(-1))  # sequential: deterministic on the CPU
            else:
                values += torch.empty_like(s).scatter_(1, order, s).sum(0)
            del s, order
    finally:
        if pool is not None:
            pool.shutdown()
    return (values / n_test).cpu()
