"""The one settings object of Amulet.

Every configurable value of the engine, the service, the worker and the dashboard lives here and is read
from environment variables with the ``AMULET_`` prefix (or a ``.env`` file). No other module reads
``os.environ``: call :func:`get_settings` instead.

Example:
    >>> from amulet.settings import Settings
    >>> Settings(device="cpu").resolve_device().type
    'cpu'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import torch

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Amulet configuration, read from ``AMULET_*`` environment variables.

    Attributes:
        home: Base directory for everything Amulet writes when no more specific path is set.
        data_dir: Local dataset cache (``<data_dir>/<name>``), looked at before any offline source.
        artifact_dir: Trained models, uploads and reports (content-addressed where possible).
        device: ``"auto"`` picks ``cuda`` when available, else ``cpu``; or an explicit torch device string.
        database_url: SQLAlchemy URL; empty means the embedded SQLite file under ``home``.
        broker_url: Celery broker URL; empty means the embedded broker over SQLite under ``home``.
        result_backend: Celery result backend URL; empty means the database.
        admin_token: Token for the first project; generated and printed once when empty.
        signing_key_path: Ed25519 private key (PEM) used to sign report manifests; created when missing.
        max_upload_bytes: Largest accepted upload, in bytes.
        max_rows: Largest accepted number of rows in an uploaded dataset.
        max_columns: Largest accepted number of columns in an uploaded tabular dataset.
        num_threads: Torch intra-op threads per process; 0 = automatic: the cores shared evenly among the
            processes that run at once (``amulet worker --concurrency``). 1 is fastest for small models on a
            busy machine (``benchmarks/bench_threads.py``).
        api_url: Where clients (dashboard, ``amulet submit``) reach the REST API.
        task_queue: Celery queue the service sends assessment tasks to (and ``amulet worker`` consumes).
        task_visibility_timeout: Seconds before a Redis broker redelivers an unacknowledged task (a killed
            worker's task); keep it above the longest task.
        task_time_limit: Time limit of one worker job (a training, a cell, the reports), in seconds. The
            worker runs each job in a child process and kills it at the limit, in every Celery pool (the
            default solo pool enforces no limit of its own); the job is recorded as an error.
        stall_after: Seconds without a heartbeat after which a running assessment shows as ``stalled`` (its
            worker died) and a worker's recovery sweep resumes it. A worker renews the heartbeat of the job
            it runs every quarter of this; keep it well above a database hiccup.
        max_uncompressed_bytes: Zip-bomb guard: largest uncompressed size of an uploaded Parquet/NPZ file.
        cell_cache: Reuse cached cell results: a cell whose inputs (models, data, attack and parameters,
            device, library versions, Amulet's code) are unchanged is read from ``<cache>/cells/`` instead of
            recomputed. ``false`` recomputes every cell (fresh results are still stored). Default ``true``.
        max_assessment_cells: Most cells (rows x risks x seeds, baseline row included) one submitted
            assessment may plan.
        max_seeds: Most seeds one submitted assessment may list.
        max_defense_rows: Most defense rows one submitted assessment may list (a swept defense parameter is
            one row per value).
        max_risk_columns: Most risk columns one submitted assessment may list (a swept attack parameter is
            one column per value).
        max_model_parameters: Largest model (parameters) an uploaded model or a submitted spec may have; an
            assessment trains several copies on one worker.
        max_model_layers: Most layers a submitted model config may list (``hidden_layer_sizes``,
            ``fc_layers``).
        max_layer_width: Widest layer a submitted model config may list.
        max_name_length: Longest assessment name (``spec.name`` and the request's ``name``), in characters.
        max_description_length: Longest ``spec.description``, in characters.
        population_mode: How populations of models (LiRA shadows, distribution-inference populations) train:
            ``auto`` stacks them into one vmapped ensemble whenever the recipe and architecture allow it;
            ``sequential`` trains them one by one (same procedure, for comparison and debugging).
    """

    model_config = SettingsConfigDict(env_prefix="AMULET_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path.home() / ".amulet")
    data_dir: Path | None = None
    artifact_dir: Path | None = None
    device: str = "auto"
    database_url: str = ""
    broker_url: str = ""
    result_backend: str = ""
    admin_token: str = ""
    signing_key_path: Path | None = None
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_rows: int = Field(default=2_000_000, gt=0)
    max_columns: int = Field(default=10_000, gt=0)
    num_threads: int = Field(default=0, ge=0)
    api_url: str = "http://127.0.0.1:8000"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, gt=0, lt=65536)
    dashboard_port: int = Field(default=8501, gt=0, lt=65536)
    task_queue: str = "amulet"
    task_visibility_timeout: int = Field(default=3600, gt=0)
    task_time_limit: int = Field(default=6 * 3600, gt=0)
    stall_after: float = Field(default=60.0, gt=0)
    max_uncompressed_bytes: int = Field(default=4 * 1024 * 1024 * 1024, gt=0)
    cell_cache: bool = True
    population_mode: Literal["auto", "sequential"] = "auto"
    max_assessment_cells: int = Field(default=5_000, gt=0)
    max_seeds: int = Field(default=20, gt=0)
    max_defense_rows: int = Field(default=64, gt=0)
    max_risk_columns: int = Field(default=64, gt=0)
    max_model_parameters: int = Field(default=500_000_000, gt=0)
    max_model_layers: int = Field(default=64, gt=0)
    max_layer_width: int = Field(default=65_536, gt=0)
    max_name_length: int = Field(default=200, gt=0)
    max_description_length: int = Field(default=20_000, gt=0)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value != "auto" and value.split(":")[0] not in {"cpu", "cuda", "mps"}:
            raise ValueError(
                f"The 'device' setting (AMULET_DEVICE) must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'. "
                f"Got {value!r} instead."
            )
        return value

    @property
    def resolved_data_dir(self) -> Path:
        """Dataset cache directory (``data_dir`` or ``home/data``)."""
        return self.data_dir if self.data_dir is not None else self.home / "data"

    @property
    def resolved_artifact_dir(self) -> Path:
        """Artifact directory (``artifact_dir`` or ``home/artifacts``)."""
        return self.artifact_dir if self.artifact_dir is not None else self.home / "artifacts"

    @property
    def resolved_database_url(self) -> str:
        """SQLAlchemy URL, defaulting to the embedded SQLite database."""
        return self.database_url or f"sqlite:///{self.home / 'amulet.db'}"

    @property
    def resolved_broker_url(self) -> str:
        """Celery broker URL, defaulting to kombu's SQLAlchemy transport over SQLite."""
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.db'}"

    @property
    def resolved_signing_key_path(self) -> Path:
        """Ed25519 key used to sign report manifests."""
        return self.signing_key_path or self.home / "keys" / "report-signing.pem"

    def resolve_device(self) -> torch.device:
        """Return the torch device this configuration asks for (``auto`` picks cuda when present)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once; tests call ``get_settings.cache_clear()``)."""
    return Settings()
