"""Writing report pieces: safe unique file paths in the report folder, CSV, markdown, console tables, figures."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from rich.markup import escape
from rich.table import Table

from search.console import format_value

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """A plain file name: only [A-Za-z0-9._-], never empty, hidden, '.' or '..'."""
    safe = SAFE_NAME.sub("_", name)
    return safe if safe.strip(".") and not safe.startswith(".") else "_" + safe


@dataclass
class ReportDir:
    """The report folder: hands out safe, unique paths inside it and remembers what they hold."""

    root: Path
    files: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def path(self, name: str, description: str) -> Path:
        """A new file `name` (made safe; '-2', '-3', ... added when taken) inside the folder."""
        safe = Path(safe_name(name))
        candidate, n = safe, 2
        while self.root / candidate in self.files:
            candidate, n = safe.with_name(f"{safe.stem}-{n}{safe.suffix}"), n + 1
        path = self.root / candidate
        if path.resolve().parent != self.root.resolve():
            raise ValueError(f"report file {name!r} would leave {self.root}")
        self.files[path] = description
        return path


def md_cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(map(md_cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, headers: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        writer.writerows(rows)


def console_table(title: str, headers: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=escape(title), title_justify="left")
    for header in headers:
        table.add_column(escape(header))
    for row in rows:
        table.add_row(*(escape(v if isinstance(v, str) else format_value(v)) for v in row))
    return table


def save_figure(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
