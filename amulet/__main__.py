"""``python -m amulet``: the ``amulet`` command line (same as the console script)."""

from amulet.cli import app

app(prog_name="amulet")
