"""Neti's shared core: everything the agent, the ops command and the console have in common.

Never imports Textual: the agent installs and runs on hosts that do not have it.
"""

__version__ = "0.1.0"
