"""Printing a dry run: the sampled configs, the timings and estimates, memory, data placement and
what the task says about its data."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from search.check.result import CheckResult, check_space_file
from search.console import format_value


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:.0f} min"


def size(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def samples_table(result: CheckResult) -> Table:
    baselines = len(result.plan.baseline)
    table = Table(title=f"{len(result.samples)} sampled trial configs (seed {result.plan.spec.search.seed})")
    table.add_column("key")
    for i in range(len(result.samples)):
        table.add_column(f"#{i + 1}" + (" baseline" if i < baselines else ""), justify="right")
    for key in result.plan.space:
        table.add_row(key, *(format_value(sample[key]) for sample in result.samples))
    return table


def print_times(result: CheckResult, console: Console) -> None:
    m, search = result.measurement, result.plan.spec.search
    how = "after a warm-up call" if m.warm else "cold: first call, no warm-up"
    console.print(f"images: {m.train_images} train, {m.val_images} val")
    console.print(f"batches per epoch: {m.train_batches} train, {m.val_batches} val")
    console.print(f"one training step {m.train_step_s:.3f} s, one validation batch {m.val_batch_s:.3f} s ({how})")
    console.print(f"time per epoch: ~{duration(m.epoch_s)}")
    console.print(f"time per trial: ~{duration(result.trial_s)} ({result.plan.epochs} epochs)")
    console.print(
        f"whole search: at most ~{duration(result.search_s)} ({result.plan.planned_trials} trials with the noise and "
        f"confirmation seeds, {search.max_concurrent} at once; without ASHA's early stops)"
    )


def print_memory(result: CheckResult, console: Console) -> None:
    m, requested = result.measurement, result.plan.spec.resources.gpu
    if m.gpu_total_bytes is None:
        console.print(f"peak memory per trial: ~{size(m.peak_memory_bytes)} (RSS increase on CPU)")
        return
    needed, suggested = m.gpu_fraction_needed, m.gpu_fraction_suggested
    console.print(
        f"peak GPU memory per trial: {size(m.peak_memory_bytes)} of {size(m.gpu_total_bytes)};"
        f" suggested resources.gpu: {suggested:g}" + ("" if suggested <= 1 else " (more than one GPU: lower the batch size)")
    )
    if requested < needed:
        console.print(
            f"[yellow]warning:[/] resources.gpu {requested:g} is less than the ~{needed:.2f} needed:"
            f" raise it, or try data.batch_size {m.batch_size_for(requested)}"
        )


def print_curve(result: CheckResult, console: Console) -> None:
    curve = result.curve
    if curve is None:
        return
    values = " ".join(format_value(v) for v in curve.values)
    chance = f" (chance {format_value(curve.chance)})" if curve.chance is not None else ""
    console.print(f"learning curve of the first config, {curve.metric} by epoch{chance}: {values}")


def run_check(path: Path, console: Console, curve: bool = True) -> int:
    if curve:
        console.print("training the first config for its full budget (its learning curve; --no-curve skips it) ...")
    result = check_space_file(path, curve)
    m = result.measurement
    console.print(f"{path}: valid")
    console.print(samples_table(result))
    threads = f"{m.cpu_threads} CPU thread" + ("s" if m.cpu_threads > 1 else "")
    console.print(f"first config on {m.device} ({threads}):")
    if result.plan.spec.resources.gpu > 0 and m.device == "cpu":
        console.print("[yellow]note:[/] resources.gpu > 0 but no CUDA GPU here: measured on CPU")
    print_times(result, console)
    print_memory(result, console)
    for line in [*result.placement, *result.data]:
        console.print(line)
    print_curve(result, console)
    for line in result.advice:
        console.print(f"[yellow]advice:[/] {line}")
    return 0
