"""Operator subcommands of ``neti``: one module per command, each with an ``add_parser``.

Every module keeps its calculations (joins, plans, sorting) pure and apart from the I/O that feeds
them, so the plans can be tested exhaustively and the I/O against the real services.
"""
