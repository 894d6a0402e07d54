"""One module per console screen. Imports ``neti_core`` and Textual, never ``neti_tui``."""
