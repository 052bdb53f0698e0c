"""BadNets backdoor poisoning (Gu et al., IEEE Access 2019)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from amulet._validation import Interval, Options, validate_params
from amulet.poisoning.attacks._base import PoisoningAttack
from amulet.utils import TensorData

__all__ = ["BadNets", "add_trigger"]


def add_trigger(x: torch.Tensor, dataset_type: str, *, value: float = 0.0) -> torch.Tensor:
    """Return a copy of the batch ``x`` with the BadNets trigger stamped on every row.

    * ``"image"``: x of shape (n, C, H, W) or (n, H, W); the 2x2 square at rows H-3..H-2 and columns
      W-3..W-2 is set to ``value`` in every channel.
    * ``"tabular"``: x of shape (n, d); the last ``d // 5`` features (at least one) are set to ``value``.

    Args:
        x: Inputs (not modified).
        dataset_type: ``"image"`` or ``"tabular"``.
        value: Trigger value (default 0.0, as in Gu et al. and upstream Amulet).

    Returns:
        The triggered copy.
    """
    out = x.clone()
    if len(out) == 0:
        return out
    if dataset_type == "image":
        if out.dim() < 3:
            raise ValueError(f"Image triggers need inputs of shape (n, C, H, W) or (n, H, W); got {tuple(x.shape)}.")
        h, w = out.shape[-2], out.shape[-1]
        out[..., h - 3 : h - 1, w - 3 : w - 1] = value
    else:
        flat = out.reshape(len(out), -1)
        d = flat.shape[1]
        n_trigger = max(1, d // 5)
        flat[:, d - n_trigger :] = value
        out = flat.reshape(out.shape)
    return out


def _as_tensors(dataset: Dataset | TensorData) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, TensorData):
        return dataset.x, dataset.y
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0].float(), dataset.tensors[1].long().reshape(-1)
    data = TensorData.from_dataset(dataset)
    return data.x, data.y


class BadNets(PoisoningAttack):
    """BadNets: stamp a fixed trigger on a seeded ``portion`` of the training rows and relabel them.

    As upstream Amulet, ``portion`` is a share of all N training rows: ``min(int(N * portion), n_candidates)``
    rows are poisoned, where the candidates are the rows whose label is not ``trigger_label``. They are the
    first candidates of ``numpy.random.default_rng(random_seed).permutation(N)``, so a seed poisons the same
    rows as upstream's. The whole operation is vectorised (no per-sample loop) and depends only on
    ``random_seed``.

    Reference:
        BadNets: Evaluating Backdooring Attacks on Deep Neural Networks. Tianyu Gu, Kang Liu,
        Brendan Dolan-Gavitt, Siddharth Garg. IEEE Access 2019. https://arxiv.org/abs/1708.06733

    Args:
        trigger_label: Label the backdoor maps triggered inputs to.
        portion: Share of all training rows to poison, in (0, 1] (capped by the non-``trigger_label`` rows).
        random_seed: Seed of the choice of poisoned rows.
        dataset_type: ``"image"`` (2x2 square near the bottom-right corner) or ``"tabular"`` (last fifth
            of the features).
        trigger_value: Value written into the trigger (default 0.0). Images in [0, 1] whose corner is
            already black (Fashion-MNIST, MNIST) need a visible trigger such as 1.0.

    Attributes:
        poisoned_indices_: Sorted indices of the rows :meth:`poison_train` poisoned.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            (the message names it and them).

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from amulet.poisoning.attacks import BadNets
        >>> data = TensorDataset(torch.ones(10, 1, 6, 6), torch.tensor([0, 1] * 5))
        >>> poisoned = BadNets(0, 0.4, random_seed=3).poison_train(data)
        >>> int((poisoned.tensors[1] == 0).sum())  # 5 rows had label 0; int(10 * 0.4) = 4 more are poisoned
        9
    """

    _parameter_constraints = {
        "trigger_label": [Interval(int, 0, None)],
        "portion": [Interval(float, 0, 1, closed="right")],
        "random_seed": [Interval(int, 0, None)],
        "dataset_type": [Options({"image", "tabular"})],
        "trigger_value": [Interval(float, None, None)],
    }

    def __init__(
        self,
        trigger_label: int,
        portion: float,
        random_seed: int,
        dataset_type: str = "image",
        *,
        trigger_value: float = 0.0,
    ) -> None:
        super().__init__(random_seed)
        self.trigger_label = trigger_label
        self.portion = portion
        self.dataset_type = dataset_type
        self.trigger_value = trigger_value
        validate_params(self)

    def add_trigger(self, x: torch.Tensor) -> torch.Tensor:
        """Return a triggered copy of the batch ``x`` (see :func:`add_trigger`)."""
        return add_trigger(x, self.dataset_type, value=float(self.trigger_value))

    def poison_train(self, dataset: Dataset | TensorData) -> TensorDataset:
        """Poison a seeded ``portion`` of the rows whose label is not ``trigger_label``.

        Args:
            dataset: Map-style dataset of (x, y) or (x, y, z), or a :class:`~amulet.utils.TensorData`.

        Returns:
            A ``TensorDataset`` of (x, y) of the same length and order; poisoned rows carry the trigger and
            ``trigger_label``.
        """
        validate_params(self)
        x, y = _as_tensors(dataset)
        n = len(y)
        is_candidate = (y != self.trigger_label).cpu().numpy()
        n_poison = min(int(n * float(self.portion)), int(is_candidate.sum()))
        perm = np.random.default_rng(seed=self.random_seed).permutation(n)
        chosen = torch.as_tensor(perm[is_candidate[perm]][:n_poison], dtype=torch.long).sort().values
        x_out, y_out = x.clone(), y.clone()
        x_out[chosen] = self.add_trigger(x[chosen])
        y_out[chosen] = self.trigger_label
        self.poisoned_indices_ = chosen
        return TensorDataset(x_out, y_out)

    def attack(self, dataset: Dataset | TensorData, mode: str = "train") -> TensorDataset:
        """Upstream Amulet's entry point: :meth:`poison_train` (``mode="train"``) or :meth:`poison_test` (``"test"``).

        Raises:
            ValueError: ``mode`` is neither ``"train"`` nor ``"test"``.
        """
        if mode == "train":
            return self.poison_train(dataset)
        if mode == "test":
            return self.poison_test(dataset)
        raise ValueError(f"BadNets.attack: mode must be 'train' or 'test'; got {mode!r}.")

    def poison_test(self, dataset: Dataset | TensorData) -> TensorDataset:
        """Trigger every row whose label is not ``trigger_label`` and relabel it.

        Args:
            dataset: Map-style dataset of (x, y) or (x, y, z), or a :class:`~amulet.utils.TensorData`.

        Returns:
            A ``TensorDataset`` of only the non-``trigger_label`` rows, triggered, all labelled
            ``trigger_label``: accuracy on it is the attack success rate.
        """
        validate_params(self)
        x, y = _as_tensors(dataset)
        keep = y != self.trigger_label
        x_out = self.add_trigger(x[keep])
        y_out = torch.full((len(x_out),), int(self.trigger_label), dtype=torch.long)
        return TensorDataset(x_out, y_out)
