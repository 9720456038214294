"""Console output shared by the verbs: the console itself and how values are shown."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def make_console() -> Console:
    """stdout console; a plain log (no terminal) gets wide lines instead of 80-column wrapping."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def short_key(key: str) -> str:
    """`augment.brightness` -> `brightness`: table headers stay narrow."""
    return key.rsplit(".", 1)[-1]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
