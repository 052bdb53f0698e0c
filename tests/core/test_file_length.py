"""Files with one job: no module outside tests/ grows past about 450 lines without saying why in its docstring."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Lines above which a module must explain its length in its docstring (issue 18).
LIMIT = 450
#: The phrase the explanation starts with, so that the check finds it.
REASON = "longer than most"


def _tracked_python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in out.split() if not name.startswith("tests/") and (REPO / name).is_file()]


def test_long_modules_say_why_they_are_long() -> None:
    files = _tracked_python_files()
    assert len(files) > 100, "git ls-files found too few modules: is this a checkout?"
    unexplained = []
    for path in files:
        text = path.read_text()
        if text.count("\n") <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if REASON not in docstring.lower():
            unexplained.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not unexplained, f"over {LIMIT} lines without '{REASON} ... because' in the docstring: {unexplained}"
