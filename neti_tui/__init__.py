"""The Textual operations console (``neti-console``)."""
