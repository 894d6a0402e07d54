"""Typed errors, so callers can tell bad input from a broken dependency without parsing messages."""


class NetiError(Exception):
    """Base of every error Neti raises on purpose."""


class ConfigError(NetiError):
    """An invalid neti.yml: names the key and the problem in one line."""

    def __init__(self, key: str, problem: str, source: str = "neti.yml") -> None:
        self.key = key
        self.problem = problem
        self.source = source
        super().__init__(f"{source}: {key}: {problem}")


class MalformedEntryError(NetiError, ValueError):
    """A party entry, ZooKeeper node name or value that is not in Neti's format."""


class RegistryError(NetiError):
    """Overlay-IP registry problems: exhaustion, unresolvable conflicts."""


class OverlayExhaustedError(RegistryError):
    """Every address of the overlay subnet is taken."""
