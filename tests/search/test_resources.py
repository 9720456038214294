"""The trial resources of a search, resolved once against the GPUs there are (no Ray needed)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from search.resources import resolve_resources
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources


def test_resolve_resources_without_a_gpu_falls_back_to_cpu_with_one_warning():
    out = io.StringIO()
    resolved = resolve_resources(TrialResources(cpu=2, gpu=0.25), gpus=0, console=Console(file=out, width=200))
    # no GPU: the share becomes 0 (trials train on the CPU), the CPUs stay, and one warning line says so
    assert resolved == TrialResources(cpu=2, gpu=0.0)
    assert out.getvalue().count("warning") == 1 and "resources.gpu 0.25 -> 0" in out.getvalue()


def test_resolve_resources_require_gpu_is_an_error():
    # --require-gpu turns the fallback into a user error on resources.gpu
    with pytest.raises(ConfigError) as info:
        resolve_resources(TrialResources(cpu=1, gpu=0.25), gpus=0, require_gpu=True, console=Console(file=io.StringIO()))
    assert info.value.key == "resources.gpu" and "--require-gpu" in info.value.message


@pytest.mark.parametrize(
    "requested, gpus",
    [(TrialResources(cpu=1, gpu=0.5), 1), (TrialResources(cpu=1, gpu=0.0), 0)],
    ids=["gpu-there", "no-gpu-asked"],
)
def test_resolve_resources_keeps_what_can_be_had(requested, gpus):
    out = io.StringIO()
    # a share the GPUs can give, or none asked (even with --require-gpu): granted as asked, silently
    assert resolve_resources(requested, gpus, require_gpu=True, console=Console(file=out)) == requested
    assert out.getvalue() == ""


def test_resolve_resources_without_a_console_leaves_the_note_to_the_caller(capsys):
    # `check` says it in its own words: the share still falls to 0, and nothing is printed
    assert resolve_resources(TrialResources(cpu=1, gpu=1.0), gpus=0).gpu == 0.0
    assert capsys.readouterr().out == ""
