"""Searches bounded by time: `search.time_budget` / `--time-budget 8h`.

Teams say "search until 7 am", not "60 trials". The budget is a deadline in the trial journal (the
search's start plus the budget; `resume --time-budget 2h` writes a new one: now plus 2 h). Past it,
the searcher hands out no trial (search/confirm.py), each running trial stops after the epoch it is
on (search/stopping.py), and the search ends as any search does: summary, export and verdict.
Ray-free and torch-free: the CLI parses a budget before anything heavy loads.
"""

from __future__ import annotations

import re

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)([dhms]))+$")
PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
FORM = "a number of seconds or a duration such as 8h, 90m, 1h30m, 45s"


def parse_duration(value: str | int | float) -> float:
    """Seconds of `8h`, `90m`, `1h30m`, `2d`, `45s` or a plain number of seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected {FORM}, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif DURATION.fullmatch(text):
            seconds = sum(float(n) * UNITS[unit] for n, unit in PART.findall(text))
        else:
            raise ValueError(f"expected {FORM}, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def clock_text(seconds: float) -> str:
    """`1:23:45` (hours), `12:05` under an hour."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
