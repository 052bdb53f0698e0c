"""Watermarking by backdooring (Adi et al., USENIX Security 2018)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet._validation import InstanceOf, Interval, validate_params
from amulet.progress import Progress, resolve_progress
from amulet.unauth_model_ownership.defenses._base import WatermarkDefense
from amulet.utils import (
    TensorData,
    TrainingStep,
    flat_adam,
    get_accuracy,
    layer1_threads,
    loader_batches,
    make_generator,
)

__all__ = ["WatermarkNN", "embed_watermark", "generate_trigger_set", "load_trigger_folder"]


def generate_trigger_set(
    shape: Sequence[int],
    num_classes: int,
    *,
    n_samples: int = 100,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> TensorData:
    """A secret trigger set: random inputs with uniform random labels.

    Images (``shape`` of length 3) are abstract patterns of random 4x4-pixel blocks; other inputs are
    uniform noise. Values are uniform in ``value_range``.

    It depends only on its arguments, so the owner can regenerate it from ``(seed, shape, num_classes)``
    to verify a suspect model.

    Args:
        shape: Shape of one input, e.g. (1, 28, 28) or (n_features,).
        num_classes: Labels are drawn from 0..num_classes-1 (valid for any model with that many outputs).
        n_samples: Number of trigger inputs (default 100).
        seed: The owner's secret seed.
        value_range: (low, high) of the input values (default (0, 1): built-in images and tabular features,
            one-hot blocks and min-max scaled numeric columns, all lie in [0, 1]).

    Returns:
        ``TensorData`` with x of shape (n_samples, *shape) (float32) and y of shape (n_samples,).

    Example:
        >>> from amulet.unauth_model_ownership.defenses import generate_trigger_set
        >>> t = generate_trigger_set((1, 4, 4), 2, n_samples=5, seed=1)
        >>> tuple(t.x.shape), int(t.y.max()) < 2, bool((t.x >= 0).all() and (t.x <= 1).all())
        ((5, 1, 4, 4), True, True)
    """
    if num_classes < 2:
        raise ValueError(f"generate_trigger_set needs num_classes >= 2; got {num_classes}.")
    low, high = float(value_range[0]), float(value_range[1])
    shape = tuple(int(s) for s in shape)
    generator = make_generator(seed)
    if len(shape) == 3:
        # Abstract images: random blocks of 4x4 pixels, far more distinct for convolutions than pixel noise.
        channels, height, width = shape
        coarse = torch.rand((n_samples, channels, -(-height // 4), -(-width // 4)), generator=generator)
        x = low + (high - low) * coarse.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)[..., :height, :width]
    else:
        x = low + (high - low) * torch.rand((n_samples, *shape), generator=generator)
    y = torch.randint(0, num_classes, (n_samples,), generator=generator)
    return TensorData(x, y)


def _read_labels(path: Path) -> list[tuple[str, int]]:
    """Rows of (file name, label) of a labels CSV, with or without a header row (the first row is kept)."""
    with open(path, newline="") as handle:
        rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
    out = []
    for i, row in enumerate(rows):
        if len(row) < 2:
            raise ValueError(f"{path}: line {i + 1} must have a file name and a label; got {row!r}.")
        name, label = row[0].strip(), row[1].strip()
        try:
            out.append((name, int(float(label))))
        except ValueError:
            if i == 0:
                continue  # a header row
            raise ValueError(f"{path}: line {i + 1} has the non-integer label {label!r}.") from None
    return out


def load_trigger_folder(wm_path: str | Path, shape: Sequence[int]) -> TensorData:
    """Read a user-supplied trigger set: ``wm_path/labels.csv`` (file name, label) and ``wm_path/images/``.

    Images are converted to ``shape``'s channel count (1: grayscale, 3: RGB), resized to its height and
    width and scaled to [0, 1]. The CSV may or may not have a header row; every data row is read.

    Args:
        wm_path: Folder with ``labels.csv`` and ``images/``.
        shape: (channels, height, width) of the model's inputs.

    Returns:
        The trigger set as ``TensorData``.
    """
    from PIL import Image

    folder = Path(wm_path)
    labels_file = folder / "labels.csv"
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    if not labels_file.is_file():
        raise FileNotFoundError(f"No labels.csv in the watermark folder {folder}.")
    channels, height, width = (int(s) for s in shape)
    mode = "L" if channels == 1 else "RGB"
    xs, ys = [], []
    for name, label in _read_labels(labels_file):
        with Image.open(image_dir / name) as raw:
            arr = np.asarray(raw.convert(mode).resize((width, height)), dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        xs.append(torch.from_numpy(np.ascontiguousarray(arr)))
        ys.append(label)
    if not xs:
        raise ValueError(f"The watermark folder {folder} lists no images in labels.csv.")
    return TensorData(torch.stack(xs), torch.tensor(ys, dtype=torch.long))


def embed_watermark(
    model: nn.Module,
    data: DataLoader,
    triggers: TensorData,
    *,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str,
    progress: Progress | None = None,
) -> nn.Module:
    """Fine-tune ``model`` on ``data`` with a chunk of the trigger set appended to every batch.

    The trigger set is cycled through in chunks of up to one batch, so every trigger is seen several
    times per epoch while the model keeps training on the task.

    Returns:
        The watermarked model, in eval mode.
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    model.to(device)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    tx, ty = triggers.x.to(device), triggers.y.to(device)
    cursor = 0
    progress.start("watermark", epochs, "watermark embedding")
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        with flat_adam(optimizer) as steps:
            step = TrainingStep(model, criterion, steps)
            for batch in loader_batches(data):
                x, y = batch[0].to(device).float(), batch[1].to(device).long()
                m = min(len(tx), max(len(x), 1))
                idx = (torch.arange(cursor, cursor + m, device=device)) % len(tx)
                cursor = (cursor + m) % len(tx)
                xb, yb = torch.cat([x, tx[idx]]), torch.cat([y, ty[idx]])
                if len(xb) < 2 and has_bn:
                    continue
                steps.zero_grad()
                loss = step(xb, yb)  # criterion(model(xb), yb) and its backward
                steps.step()
                total += loss.item() * len(xb)
                count += len(xb)
        progress.advance("watermark", loss=round(total / max(count, 1), 5), epoch=epoch + 1)
    progress.finish("watermark")
    return model.eval()


class WatermarkNN(WatermarkDefense):
    """Watermark a model by training it to answer a secret trigger set (Adi et al. 2018).

    By default the trigger set is generated by :func:`generate_trigger_set` from ``seed``, the shape of
    the training inputs and ``num_classes``: random inputs in ``value_range`` (the data's value range, not
    0-255) with random labels valid for the model. With ``wm_path`` a user-supplied trigger set is read
    instead (``labels.csv`` + ``images/``; see :func:`load_trigger_folder`). :meth:`watermark` fine-tunes
    the model on the training data with trigger chunks appended to every batch; :meth:`verify` checks that
    a model's trigger accuracy exceeds a threshold.

    Reference:
        Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by Backdooring.
        Yossi Adi, Carsten Baum, Moustapha Cisse, Benny Pinkas, Joseph Keshet. USENIX Security 2018.

    Args:
        target_model: Model to watermark (usually already trained; fine-tuned in place).
        criterion: Training loss.
        optimizer: Optimizer over ``target_model``'s parameters.
        train_loader: Training data.
        device: Torch device.
        wm_path: Folder of a user-supplied trigger set, or None to generate one.
        gray: Image trigger folder only: read images as one channel (otherwise the training data's channel
            count decides).
        tabular: The data is tabular (generated triggers of shape (n_features,)).
        epochs: Fine-tuning epochs (default 10).
        batch_size: Batch size of the trigger loader (default 256).
        num_classes: Number of classes of the model (trigger labels are in 0..num_classes-1), default 2
            (keyword-only: upstream's positional arguments end with ``epochs, batch_size``).
        n_trigger: Size of a generated trigger set (default 100).
        seed: Secret seed of the generated trigger set (default 0).
        value_range: Value range of generated trigger inputs (default (0.0, 1.0)).
        progress: Progress reporter (task ``"watermark"``).

    Attributes:
        wm_loader: Loader of the trigger set, built at construction (and again by :meth:`get_wm_loader`).
        watermark_accuracy_: Trigger accuracy (percent) of the last model :meth:`verify` checked.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            (the message names it and them).
    """

    _parameter_constraints = {
        "target_model": [InstanceOf(nn.Module)],
        "criterion": [InstanceOf(nn.Module)],
        "optimizer": [InstanceOf(torch.optim.Optimizer)],
        "train_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
        "wm_path": [InstanceOf((str, Path)), None],
        "gray": [InstanceOf(bool)],
        "tabular": [InstanceOf(bool)],
        "num_classes": [Interval(int, 2, None)],
        "epochs": [Interval(int, 0, None)],
        "batch_size": [Interval(int, 1, None)],
        "n_trigger": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "value_range": [InstanceOf(tuple)],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        target_model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        device: str | torch.device,
        wm_path: str | Path | None = None,
        gray: bool = False,
        tabular: bool = False,
        epochs: int = 10,
        batch_size: int = 256,
        *,
        num_classes: int = 2,
        n_trigger: int = 100,
        seed: int = 0,
        value_range: tuple[float, float] = (0.0, 1.0),
        progress: Progress | None = None,
    ) -> None:
        self.target_model = target_model
        self.criterion = criterion
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.device = device
        self.wm_path = wm_path
        self.gray = gray
        self.tabular = tabular
        self.num_classes = num_classes
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_trigger = n_trigger
        self.seed = seed
        self.value_range = value_range
        self.progress = progress
        validate_params(self)
        # As upstream, the trigger set is ready (and a bad trigger folder is reported) once the object exists.
        self.get_wm_loader()

    def _input_shape(self) -> tuple[int, ...]:
        batch = next(iter(self.train_loader))
        return tuple(int(s) for s in batch[0].shape[1:])

    def get_wm_loader(
        self,
        shape: int | Sequence[int] | None = None,
        wm_path: str | Path | None = None,
        gray: bool | None = None,
        tabular: bool | None = None,
    ) -> DataLoader:
        """The trigger set as an unshuffled loader of (x, label).

        Args:
            shape: Input shape (a tuple), or the image width/feature count (an int, upstream style); None
                reads it from ``train_loader``.
            wm_path: Trigger folder (default: the object's ``wm_path``); None generates the trigger set.
            gray: Read folder images as grayscale (default: the object's ``gray``).
            tabular: Tabular data (default: the object's ``tabular``).

        Returns:
            A ``DataLoader`` with ``batch_size``.
        """
        wm_path = self.wm_path if wm_path is None else wm_path
        gray = self.gray if gray is None else gray
        tabular = self.tabular if tabular is None else tabular
        if shape is None:
            full_shape = self._input_shape()
        elif isinstance(shape, int):
            full_shape = (shape,) if tabular else (1 if gray else self._input_shape()[0], shape, shape)
        else:
            full_shape = tuple(int(s) for s in shape)
        if wm_path is not None and not tabular:
            if gray:
                full_shape = (1, *full_shape[-2:])
            triggers = load_trigger_folder(wm_path, full_shape)
        else:
            triggers = generate_trigger_set(
                full_shape,
                self.num_classes,
                n_samples=self.n_trigger,
                seed=self.seed,
                value_range=(float(self.value_range[0]), float(self.value_range[1])),
            )
        self.wm_loader = DataLoader(TensorDataset(triggers.x, triggers.y), batch_size=self.batch_size, shuffle=False)
        return self.wm_loader

    def watermark(self) -> nn.Module:
        """Embed the watermark by fine-tuning on the training data plus the trigger set.

        Returns:
            The watermarked model, in eval mode.
        """
        validate_params(self)
        loader = self.get_wm_loader()
        triggers = TensorData(*loader.dataset.tensors)  # type: ignore[attr-defined]
        if int(triggers.y.max()) >= self.num_classes:
            raise ValueError(
                f"The trigger set has labels up to {int(triggers.y.max())} but num_classes is {self.num_classes}."
            )
        with layer1_threads(self.target_model):
            return embed_watermark(
                self.target_model,
                self.train_loader,
                triggers,
                criterion=self.criterion,
                optimizer=self.optimizer,
                epochs=self.epochs,
                device=self.device,
                progress=self.progress,
            )

    def verify(self, model: nn.Module, threshold: float = 0.9) -> bool:
        """Whether ``model``'s accuracy on the trigger set exceeds ``threshold`` (a fraction, default 0.9)."""
        validate_params(self)
        loader = getattr(self, "wm_loader", None) or self.get_wm_loader()
        self.watermark_accuracy_ = get_accuracy(model, loader, self.device, warn_degenerate=False)
        return self.watermark_accuracy_ > 100.0 * threshold
