"""What every Neti command line shares: loading neti.yml, one-line errors, exit statuses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

from neti_core.config import NetiConfig, load_config
from neti_core.errors import ConfigError

EXIT_USAGE = 2  # bad configuration or arguments, as argparse uses
DEFAULT_CONFIG = Path("/etc/neti/neti.yml")


def fail(prog: str, message: str, status: int = EXIT_USAGE) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def load_config_or_exit(prog: str, path: str | Path) -> NetiConfig:
    """Load neti.yml; a bad file is one line on stderr and exit status 2, nothing else."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(prog, str(exc))


def progress_bar(done: int, total: int, width: int = 24) -> str:
    """``[██████░░░░]``: a text bar for long waits on a terminal (empty when nothing is expected)."""
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "[" + "█" * filled + "░" * (width - filled) + "]"
