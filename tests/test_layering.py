"""The import arrows of DESIGN.md: agent → neti_core, neti_tui → screens → neti_core; no Textual below."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_agent_runs_where_textual_cannot_be_imported(tmp_path):
    """Block Textual at import time and load every agent and core module."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'textual' or name.startswith('textual.'):\n"
        "            raise ImportError('textual is not installed on agent hosts')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for package in ("neti_core", "agent")
        for path in (REPO / package).rglob("*.py")
    )
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
