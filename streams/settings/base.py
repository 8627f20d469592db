"""What every settings class shares: where loopline keeps its files by default, and how a class reads its variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

__all__ = ["DEFAULT_DATA_DIR", "env_prefix"]

DEFAULT_DATA_DIR = Path(".loopline")
"""The folder, relative to the working directory, of every file loopline writes unless told otherwise."""


def env_prefix(prefix: str, *, hide_input_in_errors: bool = False) -> SettingsConfigDict:
    """The configuration of a class that reads the ``<prefix>*`` variables, each field documented by its docstring.

    ``hide_input_in_errors`` keeps a refused value out of the error (a DSN may hold a password).
    """
    return SettingsConfigDict(
        env_prefix=prefix, extra="ignore", use_attribute_docstrings=True, hide_input_in_errors=hide_input_in_errors
    )
