"""The headless host agent (``neti-agent``). Imports only ``neti_core``: no Textual on hosts."""
