"""``amulet demo``: a real engine run on census — train a LinearNet, attack it with PGD, print metrics."""

from __future__ import annotations

import typer

from amulet.cli._app import app


@app.command("demo")
def demo_command(
    epochs: int = typer.Option(10, min=1, help="Training epochs."),
    epsilon: float = typer.Option(0.1, min=0.0, help="L-inf budget of the PGD attack (census features lie in [0, 1])."),
    seed: int = typer.Option(7, help="Seed of the data split, initialisation and attack."),
) -> None:
    """Train a LinearNet on UCI Adult (census), run PGD evasion, and print clean and robust accuracy."""
    from rich.console import Console
    from rich.table import Table

    from amulet.evasion.attacks import EvasionPGD
    from amulet.progress import TqdmProgress
    from amulet.recipes import Recipe
    from amulet.settings import get_settings
    from amulet.utils import TensorData, TrainConfig, configure_threads, get_accuracy, initialize_model, load_data

    settings = get_settings()
    configure_threads(settings.num_threads)
    device = settings.resolve_device()
    console = Console()
    data = load_data(str(settings.resolved_data_dir), "census", exp_id=seed)
    train = TensorData.from_numpy(data.x_train, data.y_train)
    test = TensorData.from_numpy(data.x_test, data.y_test)

    def factory():
        return initialize_model("linearnet", "m1", data.num_features, data.num_classes)

    recipe = Recipe(TrainConfig(epochs=epochs, batch_size=256, lr=1e-3))
    model = recipe.train(factory, train, seed=seed, device=device, progress=TqdmProgress())
    test_loader = test.loader(1024)
    clean = get_accuracy(model, test_loader, device)
    adv_loader = EvasionPGD(
        model,
        test_loader,
        device,
        1024,
        epsilon=epsilon,
        iterations=20,
        step_size=epsilon / 8,
        clip_min=0.0,
        clip_max=1.0,
    ).attack()
    robust = get_accuracy(model, adv_loader, device, warn_degenerate=False)
    table = Table(title=f"census (UCI Adult): {len(train)} train / {len(test)} test rows, device {device}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("clean accuracy", f"{clean:.2f}%")
    table.add_row(f"robust accuracy (PGD, L-inf eps={epsilon})", f"{robust:.2f}%")
    table.add_row(
        "majority-class rate", f"{100 * max(test.y.float().mean().item(), 1 - test.y.float().mean().item()):.2f}%"
    )
    console.print(table)
