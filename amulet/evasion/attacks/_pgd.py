"""L-inf projected gradient descent (Madry et al., ICLR 2018)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet._validation import InstanceOf, Interval, Options, check_param, validate_params
from amulet.evasion.attacks._base import EvasionAttack
from amulet.exceptions import InvalidParameterError
from amulet.progress import Progress, resolve_progress
from amulet.utils import (
    chain_input_gradient,
    chain_logits,
    input_gradient,
    layer1_threads,
    loader_batches,
    loss_gradient,
    make_generator,
)

__all__ = [
    "LABEL_SOURCES",
    "EvasionPGD",
    "check_inputs_in_clip_range",
    "pgd_linf",
    "pgd_linf_stacked",
    "predicted_labels",
]

#: Which labels PGD ascends the loss of: the model's own predictions on the clean inputs (upstream Amulet's and
#: cleverhans' default, ``y=None``) or the true labels (Madry et al.).
LABEL_SOURCES = ("predicted", "true")


@torch.no_grad()
def predicted_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's eval-mode predictions on ``x`` (restoring its train/eval mode), as cleverhans' ``y=None``.

    An MLP chain is read as in eval mode without switching it (:func:`amulet.utils.chain_logits`).
    """
    logits = chain_logits(model, as_eval=True)
    if logits is not None:
        return logits(x).argmax(1)
    was_training = model.training
    model.eval()
    try:
        return model(x).argmax(1)
    finally:
        model.train(was_training)


def _clamp(x: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
    if low is None and high is None:
        return x
    return x.clamp(min=low, max=high)


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    iterations: int,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted L-inf PGD examples for one batch.

    The examples are computed with the model in eval mode (BatchNorm's running statistics, no dropout) and
    the model is left in the mode it was in: an MLP chain is read as in eval mode without being switched,
    any other model is switched to eval mode and back. Only the input gradient is computed: the
    parameters' ``.grad`` are left untouched.

    Args:
        model: Classifier returning logits.
        x: Clean inputs, shape (n, ...).
        y: True labels, shape (n,).
        epsilon: L-inf radius of the perturbation ball (0 returns the clean inputs).
        step_size: Size of each signed-gradient ascent step.
        iterations: Number of ascent steps.
        clip_min: Lowest valid input value (None: unbounded); ``x`` must not lie below it.
        clip_max: Highest valid input value (None: unbounded); ``x`` must not lie above it.
        random_start: Start from a uniform random point of the ball (Madry et al.).
        generator: Random generator for the start point (reproducible results).

    Returns:
        Adversarial inputs, detached, same shape, dtype and device as ``x``; every element is within
        ``epsilon`` of ``x`` and inside [clip_min, clip_max].

    Raises:
        InvalidParameterError: (a ``ValueError``) ``x`` has values outside [clip_min, clip_max].
    """
    x0 = x.detach()
    check_inputs_in_clip_range("pgd_linf", x0, clip_min, clip_max)
    if epsilon == 0:
        return x0.clone()

    noise = _uniform_noise(x0, generator) if random_start else None
    ascend = functools.partial(
        _ascend, x0=x0, noise=noise, epsilon=epsilon, step_size=step_size, iterations=iterations,
        clip_min=clip_min, clip_max=clip_max,
    )  # fmt: skip
    # An MLP chain's gradient is computed as in eval mode without switching the model (two recursive mode
    # switches per batch saved); any other model is switched to eval mode and back.
    written = chain_input_gradient(model, as_eval=True)
    if written is not None:
        return ascend(lambda xx: written(xx, y))
    was_training = model.training
    model.eval()
    try:
        return ascend(input_gradient(model, y))
    finally:
        model.train(was_training)


def pgd_linf_stacked(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    iterations: int,
    generators: Sequence[torch.Generator],
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
    random_start: bool = True,
) -> torch.Tensor:
    """:func:`pgd_linf` against K models at once (a stacked ensemble), each on its own batch.

    Model ``k``'s examples are what ``pgd_linf(model_k, x[k], y[k], generator=generators[k], ...)`` returns:
    the random start of model ``k`` is drawn from ``generators[k]`` exactly as :func:`pgd_linf` draws it, and
    the loss is the sum of every model's summed cross-entropy, whose gradient with respect to ``x[k]`` is
    model ``k``'s own (the models share nothing).

    Args:
        forward: Eval-mode logits of the K models: ``(K, n, ...) -> (K, n, n_classes)``.
        x: Clean inputs, shape (K, n, ...).
        y: True labels, shape (K, n).
        epsilon: L-inf radius (0 returns the clean inputs).
        step_size: Size of each signed-gradient ascent step.
        iterations: Number of ascent steps.
        generators: One random generator per model (for its random start).
        clip_min: Lowest valid input value (None: unbounded); ``x`` must not lie below it.
        clip_max: Highest valid input value (None: unbounded); ``x`` must not lie above it.
        random_start: Start from a uniform random point of each ball.

    Returns:
        Adversarial inputs, detached, shape (K, n, ...); every element is within ``epsilon`` of ``x`` and
        inside [clip_min, clip_max].

    Raises:
        InvalidParameterError: (a ``ValueError``) ``x`` has values outside [clip_min, clip_max].
        ValueError: Not one generator per model.
    """
    x0 = x.detach()
    check_inputs_in_clip_range("pgd_linf_stacked", x0, clip_min, clip_max)
    if epsilon == 0:
        return x0.clone()
    if len(generators) != len(x0):
        raise ValueError(f"pgd_linf_stacked needs one generator per model: {len(x0)} models, {len(generators)} given.")
    noise = torch.stack([_uniform_noise(x0[k], g) for k, g in enumerate(generators)]) if random_start else None
    return _ascend(
        loss_gradient(lambda xa: F.cross_entropy(forward(xa).flatten(0, 1), y.flatten(), reduction="sum")),
        x0,
        noise,
        epsilon=epsilon,
        step_size=step_size,
        iterations=iterations,
        clip_min=clip_min,
        clip_max=clip_max,
    )


def _uniform_noise(x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) noise shaped like ``x0``, drawn on the generator's device (reproducible across devices)."""
    device = generator.device if generator is not None else x0.device
    return torch.rand(x0.shape, generator=generator, device=device, dtype=x0.dtype).to(x0.device)


def _ascend(
    gradient: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    noise: torch.Tensor | None,
    *,
    epsilon: float,
    step_size: float,
    iterations: int,
    clip_min: float | None,
    clip_max: float | None,
) -> torch.Tensor:
    """PGD's loop: start (randomly) in the ball, step along the loss gradient's sign, project, clip.

    Every iterate is first projected onto the epsilon-ball around ``x0`` and then clamped into
    [clip_min, clip_max]. As ``x0`` itself lies in [clip_min, clip_max] (the callers check it), the ball and
    the clip range intersect and the clamp keeps the point in the ball: ``|x_adv - x0| <= epsilon`` holds
    element-wise after every step.
    """
    low, high = x0 - epsilon, x0 + epsilon
    x_adv = x0 + (2 * noise - 1) * epsilon if noise is not None else x0.clone()
    x_adv = _clamp(torch.max(torch.min(x_adv, high), low), clip_min, clip_max)
    for _ in range(iterations):
        x_adv = x_adv.detach() + step_size * gradient(x_adv).sign()
        x_adv = torch.max(torch.min(x_adv, high), low)
        x_adv = _clamp(x_adv, clip_min, clip_max)
    return x_adv.detach()


def check_inputs_in_clip_range(
    owner: str,
    x: torch.Tensor,
    clip_min: float | None,
    clip_max: float | None,
    *,
    value_range: tuple[float, float] | None = None,
) -> None:
    """Raise when clean inputs lie outside the clip range PGD keeps its examples in.

    PGD clamps every example into [clip_min, clip_max]; an input outside that range would be moved into it,
    further than the attack's epsilon, and the result would no longer be an epsilon-bounded attack. So such
    inputs are refused instead of silently moved.

    Args:
        owner: Name of the attack or function, for the message.
        x: The clean inputs (ignored when ``value_range`` is given).
        clip_min: Lowest valid input value (None: unbounded below).
        clip_max: Highest valid input value (None: unbounded above).
        value_range: The inputs' (min, max), when already known (e.g. over a whole loader).

    Raises:
        InvalidParameterError: (a ``ValueError``) naming both bounds, the data's range and the fix.
    """
    if (clip_min is None and clip_max is None) or (value_range is None and x.numel() == 0):
        return
    low, high = value_range if value_range is not None else (float(x.min()), float(x.max()))
    below = clip_min is not None and low < clip_min
    above = clip_max is not None and high > clip_max
    if not (below or above):
        return
    cover_min = "None" if clip_min is None else f"{min(low, clip_min):.6g}"
    cover_max = "None" if clip_max is None else f"{max(high, clip_max):.6g}"
    raise InvalidParameterError(
        f"{owner}: the inputs lie in [{low:.6g}, {high:.6g}], outside the clip range "
        f"[clip_min={clip_min}, clip_max={clip_max}]. PGD keeps its examples inside [clip_min, clip_max], so "
        "it would move these inputs further than epsilon. Fix: scale the data into [clip_min, clip_max] "
        "(the built-in datasets lie in [0, 1]), or pass a clip range that covers the data "
        f"(clip_min={cover_min}, clip_max={cover_max}), or clip_min=None, clip_max=None for unbounded features."
    )


class EvasionPGD(EvasionAttack):
    """Untargeted L-inf PGD with a uniform random start (Madry et al. 2018).

    By default, as upstream Amulet (cleverhans with ``y=None``), PGD raises the loss of the model's own
    predictions on the clean inputs; ``label_source="true"`` raises the loss of the true labels instead (Madry et
    al.'s formulation, used by the assessment engine). The two differ only on inputs the model misclassifies.
    Either way the returned loader pairs each example with its true label.

    Reference:
        Towards Deep Learning Models Resistant to Adversarial Attacks. Aleksander Madry, Aleksandar Makelov,
        Ludwig Schmidt, Dimitris Tsipras, Adrian Vladu. ICLR 2018. https://arxiv.org/abs/1706.06083

    Args:
        model: Target classifier (returns logits). It is attacked in eval mode.
        test_loader: Loader of (x, y) or (x, y, z) batches to attack.
        device: Torch device on which the attack runs.
        batch_size: Batch size of the returned loader of adversarial examples.
        epsilon: L-inf radius (default 0.1); 0 gives back the clean inputs.
        iterations: Number of PGD steps (default 40).
        step_size: Step size of each signed-gradient step (default 0.01).
        clip_min: Lowest valid input value (default 0.0, the lower end of every built-in dataset's range; None:
            unbounded). The inputs must not lie below it.
        clip_max: Highest valid input value (default 1.0, the upper end of every built-in dataset's range; None:
            unbounded). The inputs must not lie above it.
        seed: Seed of the random start (default 0); the same seed gives the same examples.
        progress: Progress reporter (task ``"pgd"``, one unit per batch); silent when None.
        label_source: ``"predicted"`` (default, upstream's: the model's predictions on the clean inputs) or
            ``"true"`` (the loader's labels), the labels whose loss PGD raises.

    Every adversarial example lies within ``epsilon`` of its clean input (L-inf) and inside
    [clip_min, clip_max]. Inputs outside [clip_min, clip_max] are refused (:meth:`attack` raises): clamping
    them into the range would move them further than ``epsilon``.

    Attributes:
        adversarial_examples_: Tensor of all adversarial inputs after :meth:`attack`.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            (the message names it and them).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from amulet.evasion.attacks import EvasionPGD
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> loader = DataLoader(TensorDataset(torch.rand(8, 4), torch.zeros(8, dtype=torch.long)), batch_size=4)
        >>> adv = EvasionPGD(model, loader, "cpu", 4, epsilon=0.05, iterations=3).attack()
        >>> x_adv, _ = next(iter(adv))
        >>> bool(((x_adv >= 0) & (x_adv <= 1)).all())
        True
    """

    _parameter_constraints = {
        "model": [InstanceOf(nn.Module)],
        "test_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
        "batch_size": [Interval(int, 1, None)],
        "epsilon": [Interval(float, 0, None)],
        "iterations": [Interval(int, 0, None)],
        "step_size": [Interval(float, 0, None)],
        "clip_min": [Interval(float, None, None), None],
        "clip_max": [Interval(float, None, None), None],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
        "label_source": [Options(set(LABEL_SOURCES))],
    }

    def __init__(
        self,
        model: nn.Module,
        test_loader: DataLoader,
        device: str | torch.device,
        batch_size: int,
        epsilon: float = 0.1,
        iterations: int = 40,
        step_size: float = 0.01,
        clip_min: float | None = 0.0,
        clip_max: float | None = 1.0,
        *,
        seed: int = 0,
        progress: Progress | None = None,
        label_source: str = "predicted",
    ) -> None:
        self.model = model
        self.test_loader = test_loader
        self.device = device
        self.batch_size = batch_size
        self.epsilon = epsilon
        self.iterations = iterations
        self.step_size = step_size
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.seed = seed
        self.progress = progress
        self.label_source = label_source
        validate_params(self)
        _check_clip_range(type(self).__name__, self.clip_min, self.clip_max)

    def attack(self) -> DataLoader:
        """Compute PGD examples for every test input.

        Returns:
            An unshuffled loader of (x_adv, y_true) with ``batch_size``, aligned with ``test_loader`` (the true
            labels, whichever ``label_source`` the examples were made against).

        Raises:
            InvalidParameterError: (a ``ValueError``) a bad parameter, or inputs outside [clip_min, clip_max];
                the message names both bounds, the inputs' range and the fix.
        """
        validate_params(self)
        _check_clip_range(type(self).__name__, self.clip_min, self.clip_max)
        with layer1_threads(self.model):
            return self._attack()

    def _attack(self) -> DataLoader:
        device = torch.device(self.device)
        progress = resolve_progress(self.progress)
        generator = make_generator(self.seed, device if device.type == "cuda" else "cpu")
        self.model.to(device)
        # The whole loader's range is checked before any work, so the error names the data's actual range.
        batches = [(batch[0].float(), batch[1].long()) for batch in loader_batches(self.test_loader)]
        filled = [x for x, _ in batches if x.numel()]
        if filled:
            value_range = (min(float(x.min()) for x in filled), max(float(x.max()) for x in filled))
            check_inputs_in_clip_range(
                type(self).__name__, filled[0], self.clip_min, self.clip_max, value_range=value_range
            )
        # The model is attacked in eval mode, where every row's examples depend on that row alone: the loader's
        # batches are attacked together in chunks of about CHUNK_ELEMENTS input values, one forward and backward
        # pass per PGD step for the whole chunk instead of one per batch. The random starts are drawn batch by
        # batch, as attacking each batch in turn draws them, so the examples are the same up to float rounding.
        xs, ys = [], []
        chunks = _chunks(batches, CHUNK_ELEMENTS)
        progress.start("pgd", len(batches), "PGD attack")
        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in chunks:
                x = torch.cat([b[0] for b in chunk]).to(device)
                y = torch.cat([b[1] for b in chunk]).to(device)
                target = predicted_labels(self.model, x) if self.label_source == "predicted" else y
                x_adv = x.detach().clone()
                if self.epsilon != 0 and len(x):
                    noise = torch.cat([_uniform_noise(b[0].to(device), generator) for b in chunk])
                    x_adv = _ascend(
                        input_gradient(self.model, target),
                        x.detach(),
                        noise,
                        epsilon=float(self.epsilon),
                        step_size=float(self.step_size),
                        iterations=int(self.iterations),
                        clip_min=self.clip_min,
                        clip_max=self.clip_max,
                    )
                xs.append(x_adv.cpu())
                ys.append(y.cpu())
                for _ in chunk:
                    progress.advance("pgd")
        finally:
            self.model.train(was_training)
        progress.finish("pgd")
        x_all = torch.cat(xs) if xs else torch.empty(0)
        y_all = torch.cat(ys) if ys else torch.empty(0, dtype=torch.long)
        self.adversarial_examples_ = x_all
        return DataLoader(TensorDataset(x_all, y_all), batch_size=self.batch_size, shuffle=False)


#: Input values PGD attacks at once in :meth:`EvasionPGD.attack` (16 MiB of float32 per copy of the inputs).
CHUNK_ELEMENTS = 1 << 22


def _chunks(
    batches: list[tuple[torch.Tensor, torch.Tensor]], elements: int
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Consecutive batches grouped so that each group holds about ``elements`` input values (at least one batch)."""
    groups: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    size = 0
    for batch in batches:
        if not groups or size + batch[0].numel() > elements:
            groups.append([])
            size = 0
        groups[-1].append(batch)
        size += batch[0].numel()
    return groups


def _check_clip_range(owner: str, clip_min: float | None, clip_max: float | None) -> None:
    if clip_min is not None and clip_max is not None and clip_min >= clip_max:
        check_param(owner, "clip_max", clip_max, [Interval(float, clip_min, None, closed="neither")])
