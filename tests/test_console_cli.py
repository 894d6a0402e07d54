"""``neti-console``'s command line: configuration problems are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neti_tui.cli import build_parser, main

REPO = Path(__file__).resolve().parent.parent


def test_a_bad_configuration_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "neti.yml"
    config.write_text("reject_al: true\n")
    result = subprocess.run([sys.executable, "-m", "neti_tui.cli", "-c", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "reject_al" in result.stderr and "did you mean" in result.stderr


def test_the_console_needs_zookeeper_hosts(tmp_path, capsys):
    config = tmp_path / "neti.yml"
    config.write_text("zk_prefix: /neti\n")
    with pytest.raises(SystemExit) as exit_:
        main(["-c", str(config)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"neti-console: error: {config}: zk_hosts: the console needs ZooKeeper hosts")


def test_the_arguments_of_the_issue():
    args = build_parser().parse_args(["-c", "x.yml", "--readonly", "--operator", "carol"])
    assert (args.config, args.readonly, args.operator) == ("x.yml", True, "carol")


def test_without_textual_the_console_names_the_extra_and_exits_2(tmp_path):
    """An agent-only install (``pip install neti``) has no Textual: one line, not a traceback."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'textual' or name.startswith('textual.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Absent())\n")
    config = tmp_path / "neti.yml"
    config.write_text("zk_hosts: {ec2: ['127.0.0.1:2181'], vpc: ['127.0.0.1:2181']}\n")
    result = subprocess.run([sys.executable, "-m", "neti_tui.cli", "-c", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr == "neti-console: error: the console needs Textual: pip install 'neti[console]'\n"
