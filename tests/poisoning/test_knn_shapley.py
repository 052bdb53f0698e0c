"""Exact KNN-Shapley: the vectorised kernel equals a direct implementation of Jia et al.'s recursion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amulet.exceptions import InvalidParameterError
from amulet.poisoning.defenses import knn_shapley, lowest_value_split
from amulet.settings import get_settings


def reference_knn_shapley(x_train, y_train, x_test, y_test, k):
    """The recursion of Jia et al. (VLDB 2019, Theorem 1), one test point and one training point at a time."""
    x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    x_test = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    n = len(x_train)
    values = np.zeros(n)
    for q, label in zip(x_test, y_test):
        dist = [float(((x_train[i] - q) ** 2).sum()) for i in range(n)]
        alpha = sorted(range(n), key=lambda i: (dist[i], i))  # nearest first, ties by index
        s = [0.0] * (n + 1)  # 1-indexed ranks
        s[n] = float(y_train[alpha[n - 1]] == label) / n
        for i in range(n - 1, 0, -1):
            now = float(y_train[alpha[i - 1]] == label)
            nxt = float(y_train[alpha[i]] == label)
            s[i] = s[i + 1] + (now - nxt) / k * min(k, i) / i
        for rank, idx in enumerate(alpha, start=1):
            values[idx] += s[rank]
    return values / len(x_test)


def knn_utility(x_train, y_train, x_test, y_test, k):
    """U(all training points): mean over test points of the share of the k nearest with the right label."""
    x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    x_test = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    total = 0.0
    for q, label in zip(x_test, y_test):
        dist = ((x_train - q) ** 2).sum(1)
        nearest = sorted(range(len(x_train)), key=lambda i: (dist[i], i))[:k]
        total += sum(float(y_train[i] == label) for i in nearest) / k
    return total / len(x_test)


@pytest.mark.parametrize("k", [1, 3, 5, 50])
@pytest.mark.parametrize("chunk_size", [1, 4, None])
def test_matches_reference_on_random_features(k, chunk_size, seed):
    rng = np.random.default_rng(seed)
    x_train, y_train = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    x_test, y_test = rng.normal(size=(9, 6)), rng.integers(0, 3, 9)
    got = knn_shapley(x_train, y_train, x_test, y_test, k=k, chunk_size=chunk_size)
    want = reference_knn_shapley(x_train, y_train, x_test, y_test, k)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6, rtol=0)


def test_efficiency_values_sum_to_the_utility_of_the_full_set(seed):
    rng = np.random.default_rng(seed)
    x_train, y_train = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    x_test, y_test = rng.normal(size=(15, 3)), rng.integers(0, 2, 15)
    values = knn_shapley(x_train, y_train, x_test, y_test, k=5)
    assert float(values.sum()) == pytest.approx(knn_utility(x_train, y_train, x_test, y_test, 5), abs=1e-9)


def test_ties_in_distance_are_broken_by_training_index(seed):
    # Small integers: every distance is exact in float32, so many are exactly tied.
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 2, size=(30, 2)).astype(np.float32)
    x_train[10:15] = x_train[0]  # exact duplicates with different labels
    y_train = rng.integers(0, 3, 30)
    x_test = rng.integers(0, 2, size=(7, 2)).astype(np.float32)
    y_test = rng.integers(0, 3, 7)
    got = knn_shapley(torch.from_numpy(x_train), y_train, torch.from_numpy(x_test), y_test, k=5)
    np.testing.assert_allclose(got.numpy(), reference_knn_shapley(x_train, y_train, x_test, y_test, 5), atol=1e-6)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_float32_rows_scored_in_parallel_blocks_match_the_reference(threads, seed, monkeypatch):
    # float32 on the CPU takes the NumPy path (packed integer keys, row blocks on threads); duplicated rows
    # make exact ties, which must still be broken by training index whatever the number of blocks.
    monkeypatch.setenv("AMULET_NUM_THREADS", threads)
    get_settings.cache_clear()
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 3, size=(50, 3)).astype(np.float32)
    x_train[20:30] = x_train[0]
    y_train = rng.integers(0, 3, 50)
    x_test = rng.integers(0, 3, size=(11, 3)).astype(np.float32)
    y_test = rng.integers(0, 3, 11)
    want = reference_knn_shapley(x_train, y_train, x_test, y_test, 3)
    for chunk_size in (1, 5, None):
        got = knn_shapley(
            torch.from_numpy(x_train), y_train, torch.from_numpy(x_test), y_test, k=3, chunk_size=chunk_size
        )
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6, rtol=0)
    get_settings.cache_clear()


def test_float32_values_do_not_depend_on_the_thread_count(monkeypatch):
    rng = np.random.default_rng(0)
    x_train = torch.from_numpy(rng.normal(size=(700, 8)).astype(np.float32))
    x_test = torch.from_numpy(rng.normal(size=(300, 8)).astype(np.float32))
    y_train, y_test = rng.integers(0, 2, 700), rng.integers(0, 2, 300)
    values = []
    for threads in ("1", "2", "4"):
        monkeypatch.setenv("AMULET_NUM_THREADS", threads)
        get_settings.cache_clear()
        values.append(knn_shapley(x_train, y_train, x_test, y_test, k=5).numpy())
    get_settings.cache_clear()
    assert np.array_equal(values[0], values[1]) and np.array_equal(values[0], values[2])


def test_one_channel_images_keep_every_pixel(seed):
    rng = np.random.default_rng(seed)
    x_train = torch.from_numpy(rng.random((25, 1, 5, 5)))
    x_test = torch.from_numpy(rng.random((6, 1, 5, 5)))
    y_train, y_test = rng.integers(0, 2, 25), rng.integers(0, 2, 6)
    got = knn_shapley(x_train, y_train, x_test, y_test, k=3)
    np.testing.assert_allclose(got.numpy(), reference_knn_shapley(x_train, y_train, x_test, y_test, 3), atol=1e-6)


def test_last_chunk_of_one_test_point_and_a_single_training_point(seed):
    rng = np.random.default_rng(seed)
    x_train, y_train = rng.normal(size=(12, 4)), rng.integers(0, 2, 12)
    x_test, y_test = rng.normal(size=(5, 4)), rng.integers(0, 2, 5)
    got = knn_shapley(x_train, y_train, x_test, y_test, k=2, chunk_size=4)  # chunks of 4 and 1
    np.testing.assert_allclose(got.numpy(), reference_knn_shapley(x_train, y_train, x_test, y_test, 2), atol=1e-6)
    single = knn_shapley(x_train[:1], y_train[:1], x_test, y_test, k=5)
    assert single.shape == (1,)
    assert float(single[0]) == pytest.approx(float(np.mean(y_test == y_train[0])))


def test_ties_are_split_deterministically_and_all_equal_values_remove_nothing():
    removed, kept = lowest_value_split(torch.zeros(10, dtype=torch.float64), 30)
    assert removed.tolist() == [] and kept.tolist() == list(range(10))
    removed, kept = lowest_value_split(torch.tensor([0.0] * 9 + [1.0], dtype=torch.float64), 30)
    assert removed.tolist() == [0, 1, 2]
    assert kept.tolist() == list(range(3, 10))
    removed, kept = lowest_value_split(torch.tensor([0.3, -0.2, 0.1, -0.5]), 50)
    assert removed.tolist() == [1, 3]
    assert lowest_value_split(torch.ones(5), 0)[0].numel() == 0


def test_mislabelled_points_get_the_lowest_values(seed):
    rng = np.random.default_rng(seed)
    centers = np.array([[-3.0, 0.0], [3.0, 0.0]])
    y_train = rng.integers(0, 2, 200)
    x_train = centers[y_train] + rng.normal(size=(200, 2))
    flipped = np.arange(10)
    y_noisy = y_train.copy()
    y_noisy[flipped] = 1 - y_noisy[flipped]
    y_test = rng.integers(0, 2, 100)
    x_test = centers[y_test] + rng.normal(size=(100, 2))
    values = knn_shapley(x_train, y_noisy, x_test, y_test, k=5)
    removed, _ = lowest_value_split(values, 5)
    assert len(set(removed.tolist()) & set(flipped.tolist())) >= 8  # of the 10 lowest-valued points


@pytest.mark.parametrize(("kwargs", "name"), [({"k": 0}, "k"), ({"chunk_size": 0}, "chunk_size")])
def test_bad_arguments_name_the_parameter(kwargs, name):
    x = torch.zeros(3, 2)
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        knn_shapley(x, torch.zeros(3), x, torch.zeros(3), **kwargs)
