"""verdict.md and verdict.png: the seed noise, the confirmed configs' scores over seeds, what was
exported and why, and the winner against the baseline on the test split with its interval."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from rich.console import Console

from search.console import format_value
from search.decide import confirmation_line
from search.report.inputs import Search, is_finite
from search.report.output import ReportDir, console_table, markdown_table, save_figure
from search.summary import label


def confirmation_rows(summary: dict[str, Any]) -> list[list[Any]]:
    confirmation = summary["confirmation"]
    return [
        [label(summary, g["group"]), g["n"], format_value(g["mean"]), format_value(g["sd"]) if is_finite(g["sd"]) else "-",
         " ".join(format_value(s) for s in g["scores"]), "yes" if g["group"] == confirmation["chosen"] else ""]
        for g in confirmation["groups"]
    ]  # fmt: skip


def verdict_rows(verdict: dict[str, Any]) -> list[list[Any]]:
    return [[name, format_value(d["value"]), format_value(d["lo"]), format_value(d["hi"])] for name, d in verdict["differences"].items()]


def verdict_figure(summary: dict[str, Any]) -> Figure:
    """Left: each confirmed config's scores over seeds and their mean; right: the verdict's differences."""
    confirmation, verdict = summary.get("confirmation"), summary.get("verdict")
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    if confirmation:
        for x, group in enumerate(confirmation["groups"]):
            color = "tab:orange" if group["reference"] else "tab:blue"
            left.plot([x] * len(group["scores"]), group["scores"], "o", color=color, alpha=0.6)
            left.errorbar(x + 0.15, group["mean"], yerr=group["sd"] if is_finite(group["sd"]) else 0, fmt="s", color=color, capsize=4)
        left.set_xticks(range(len(confirmation["groups"])), [label(summary, g["group"]) for g in confirmation["groups"]], fontsize=7)
        left.set_xlim(-0.5, len(confirmation["groups"]) - 0.5)
    left.set(title="confirmed configs: seeds (dots), mean ± sd", ylabel=summary["metric"])
    if verdict:
        names = list(verdict["differences"])
        for y, name in enumerate(names):
            d = verdict["differences"][name]
            right.errorbar(d["value"], y, xerr=[[d["value"] - d["lo"]], [d["hi"] - d["value"]]], fmt="o", capsize=4)
        right.axvline(0, color="grey", linestyle="--")
        right.set_yticks(range(len(names)), names)
        right.set(title=f"winner - baseline on {verdict['split']} (95 % interval)", xlabel="difference")
    return fig


def write_verdict(search: Search, out: ReportDir, console: Console) -> None:
    summary = search.summary
    if not summary.get("confirmation") and not summary.get("verdict"):
        out.notes.append("no verdict: the search had no baseline (or reference config) to compare its winner with")
        return
    lines = [f"# Is the winner better than the baseline? (search '{summary['name']}')\n"]
    noise = summary.get("noise") or {}
    if noise.get("reference"):
        lines.append(f"Seed noise of `{search.metric}`: {noise['text']} (pooled over {noise['dof']} degrees of freedom).\n")
    if summary.get("confirmation"):
        header = ["config", "seeds", "mean", "sd", "scores", "exported"]
        rows = confirmation_rows(summary)
        lines += ["## Confirmation (fresh seeds, full budget)\n", markdown_table(header, rows)]
        lines.append(confirmation_line(summary["confirmation"], search.metric, lambda g: label(summary, g)) + "\n")
        console.print(console_table("confirmed configs over seeds", header, rows))
    verdict = summary.get("verdict")
    if verdict:
        header = ["metric", "winner - baseline", "lo (95 %)", "hi (95 %)"]
        lines += [f"## Verdict on {verdict['split']}\n", markdown_table(header, verdict_rows(verdict)), verdict["text"] + "\n"]
        console.print(verdict["text"])
    out.path("verdict.md", "seed noise, confirmation and the verdict on the test split").write_text("\n".join(lines))
    save_figure(verdict_figure(summary), out.path("verdict.png", "confirmed configs over seeds, and the verdict's intervals"))
