"""Console output shared by the verbs: the console itself and how values are shown."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def make_console() -> Console:
    """stdout console; a plain log (no terminal) gets wide lines instead of 80-column wrapping."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def short_keys(keys: list[str]) -> list[str]:
    """Each key's shortest dotted suffix that no other key ends with: `augment.brightness` ->
    `brightness`, but `loss.rpn.focal_gamma` and `loss.roi.focal_gamma` -> `rpn.focal_gamma` and
    `roi.focal_gamma`, so table headers stay narrow and tell searched keys apart."""
    shorts = []
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        shorts.append(suffix)
    return shorts


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
