"""Firewall backends: see :mod:`neti_core.firewall.base` for the interface and ``make_backend``."""
