"""Which iptables flavour (nft or legacy) this host uses, decided the way Calico's Felix does.

Rules in the two flavours are evaluated independently by the kernel, and each tool only shows its
own, so a host whose Docker or operator rules live in nft must get Neti's rules in nft too (and the
other way round). Felix counts the rules each flavour holds and follows the one in use; with no
rules anywhere it follows the host's configured ``iptables`` (Debian's alternatives), which is what
tools started later will use. Counting includes Neti's own rules, so a host keeps its flavour
across agent restarts.

Everything is read in the calling thread's network namespace (``/proc/thread-self``, not
``/proc/self``, so a thread pinned into a namespace sees that namespace).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

_TIMEOUT = 10.0


@dataclass(frozen=True)
class Detection:
    """The flavour chosen and the evidence: rule counts (None: tool absent) and the system default."""

    mode: str  # "nft" or "legacy"
    reason: str
    nft_rules: int | None
    legacy_rules: int | None
    system_mode: str | None
    # Whether the native nft backend can run here (`auto` prefers it), and why or why not.
    native: bool = False
    native_reason: str = "not checked"


def decide(nft_rules: int | None, legacy_rules: int | None, system_mode: str | None) -> Detection:
    """Pure decision from the evidence (unit-tested for every combination)."""
    def result(mode: str, reason: str) -> Detection:
        return Detection(mode, reason, nft_rules, legacy_rules, system_mode)

    if nft_rules is None and legacy_rules is None:
        from neti_core.firewall.base import FirewallUnavailableError

        raise FirewallUnavailableError("neither iptables-nft-save nor iptables-legacy-save is installed")
    if legacy_rules is None:
        return result("nft", "only iptables-nft is installed")
    if nft_rules is None:
        return result("legacy", "only iptables-legacy is installed")
    if nft_rules and not legacy_rules:
        return result("nft", f"{nft_rules} rules in nft, none in legacy")
    if legacy_rules and not nft_rules:
        return result("legacy", f"{legacy_rules} rules in legacy, none in nft")
    if nft_rules and legacy_rules and nft_rules != legacy_rules:
        mode = "nft" if nft_rules > legacy_rules else "legacy"
        return result(mode, f"rules in both ({nft_rules} nft, {legacy_rules} legacy): following the larger")
    fallback = system_mode or "nft"
    what = f"iptables is {system_mode}" if system_mode else "iptables mode unknown, nft by default"
    prefix = "equal rule counts in both" if nft_rules else "no rules yet"
    return result(fallback, f"{prefix}; {what}")


def system_mode() -> str | None:
    """The flavour of the plain ``iptables`` command: ``iptables -V`` prints (nf_tables) or (legacy)."""
    if shutil.which("iptables") is None:
        return None
    try:
        out = subprocess.run(["iptables", "-V"], capture_output=True, text=True, timeout=_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if "nf_tables" in out:
        return "nft"
    if "legacy" in out:
        return "legacy"
    return None


def count_rules(save_command: str) -> int | None:
    """``-A`` lines in a flavour's save output; None when the tool is not installed."""
    if shutil.which(save_command) is None:
        return None
    try:
        result = subprocess.run([save_command], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(1 for line in result.stdout.splitlines() if line.startswith("-A "))


UNREADABLE_NAMES = ("legacy tables not counted: /proc/net/ip_tables_names is readable by root only "
                    "(the agent runs as an unprivileged user with CAP_NET_ADMIN)")


def legacy_table_names() -> set[str] | None:
    """The legacy tables that exist in this namespace, read without creating any; None when the
    list is unreadable (0440 root: the unit's unprivileged user cannot read it)."""
    try:
        return set(Path("/proc/thread-self/net/ip_tables_names").read_text().split())
    except PermissionError:
        return None
    except OSError:  # no ip_tables module at all: no legacy table
        return set()


def legacy_tables_exist() -> bool:
    """Whether any legacy table exists in this namespace, without loading a module to find out."""
    return bool(legacy_table_names())


def native_nft(nft_works: str | None, neti_in_legacy: bool) -> tuple[bool, str]:
    """Pure: whether ``auto`` takes the nft backend, given whether ``nft`` runs (None: it does,
    else why not) and whether Neti's chains are in legacy iptables (then the legacy backends keep
    the host: moving it off legacy is an operator's choice of backend, not auto's)."""
    if nft_works is not None:
        return False, nft_works
    if neti_in_legacy:
        return False, "Neti's chains are in legacy iptables"
    return True, "the kernel has nf_tables and nft is installed"


def nft_works() -> str | None:
    """None when ``nft list tables`` runs here (kernel nf_tables and the tool), else why not."""
    if shutil.which("nft") is None:
        return "nft is not installed"
    try:
        result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nft does not run: {exc}"
    return None if result.returncode == 0 else f"nft list tables: {result.stderr.strip()[:200]}"


def neti_chains_in_legacy(names: set[str] | None) -> bool:
    """Whether legacy iptables holds a NETI chain (read only where legacy tables already exist)."""
    if not names or shutil.which("iptables-legacy-save") is None:
        return False
    try:
        out = subprocess.run(["iptables-legacy-save"], capture_output=True, text=True,
                             timeout=_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return ":NETI-" in out


def detect() -> Detection:
    """Detect the flavour of the calling thread's network namespace.

    Without root the legacy rules cannot be counted (neither the table list nor
    ``iptables-legacy-save`` is readable), so they count as none and the host's configured
    ``iptables`` decides unless nft holds rules; the reason says so.
    """
    nft = count_rules("iptables-nft-save")
    names = legacy_table_names()
    if shutil.which("iptables-legacy-save") is None:
        legacy = None
    elif not names:
        legacy = 0
    else:
        legacy = count_rules("iptables-legacy-save")
    detection = decide(nft, legacy, system_mode())
    if names is None and legacy is not None:
        detection = replace(detection, reason=f"{detection.reason}; {UNREADABLE_NAMES}")
    native, why = native_nft(nft_works(), neti_chains_in_legacy(names))
    return replace(detection, native=native, native_reason=why)
