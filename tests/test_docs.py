"""The README and docs/ as a reader follows them: every `python -m search|training` command in a bash
block parses with today's CLI, the files it names exist, and every relative link leads to a file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from search.cli import _parser as search_parser
from training.cli import _parser as training_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PARSERS = {"search": search_parser, "training": training_parser}
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) of every `python -m search|training ...` in the pages' bash blocks."""
    found = []
    for page in PAGES:
        for block in BASH_BLOCK.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;", line.split(" #")[0]):
                    part = part.strip()
                    if re.match(r"python3? -m (search|training) ", part):
                        found.append((page.relative_to(ROOT).as_posix(), part))
    return found


COMMANDS = shown_commands()


def test_the_pages_show_commands_of_both_clis():
    # the check below is meaningful: the README's quick start and the docs' verbs are found
    assert ("README.md", "python -m search run spaces/quickstart.yaml") in COMMANDS
    assert {cmd.split()[2] for _, cmd in COMMANDS} == {"search", "training"}


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}: {c}" for p, c in COMMANDS])
def test_every_shown_command_parses_and_names_files_that_exist(page, command):
    args = shlex.split(command)
    # the CLI accepts the verb and every flag as written (argparse exits on anything else)
    PARSERS[args[2]]().parse_args(args[3:])
    for arg in args[3:]:
        if arg.startswith("spaces/"):
            assert (ROOT / arg).is_file(), f"{page}: {arg} does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http", "mailto")) or "." not in Path(target).name:
            continue
        # a link a reader clicks opens something
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
