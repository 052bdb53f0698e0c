"""Error answers show no server path (issue 16): besides the artifact store and home, the dataset and
temporary directories and the Python installation (library messages quote their own files) are cut to file
names, while a path outside all of them (such as one the client sent) stays as it was."""

from __future__ import annotations

import site
import sys
import tempfile
from pathlib import Path

from service_testing import make_settings

from backend.api.errors import scrub_server_paths, server_path_roots


def test_every_server_directory_is_scrubbed() -> None:
    # Directories apart from each other and from the temporary directory, so that each root is tested on its
    # own (nothing is created: roots are only names).
    settings = make_settings(Path("/srv/amulet-home"), data_dir=Path("/var/cache/amulet-datasets"))
    roots = server_path_roots(settings)
    library = Path(site.getsitepackages()[0]) / "torch" / "serialization.py"
    quoted = {
        str(settings.resolved_artifact_dir / "uploads" / "p" / "models" / "m" / "weights.upload"): "weights.upload",
        str(settings.resolved_data_dir / "census" / "adult.csv"): "adult.csv",
        str(Path(tempfile.gettempdir()) / "tmpa1b2c3" / "upload.bin"): "upload.bin",
        str(library): "serialization.py",
        str(Path(sys.prefix) / "bin" / "python"): "python",
    }
    for path, name in quoted.items():
        message = f"failed reading ({path}): bad header"
        assert scrub_server_paths(message, roots) == f"failed reading ({name}): bad header", path
    assert "/" not in scrub_server_paths({"detail": [f"at {library}"]}, roots)["detail"][0]
    assert scrub_server_paths("/srv/elsewhere/data.csv", roots) == "/srv/elsewhere/data.csv"
