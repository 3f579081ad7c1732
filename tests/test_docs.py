"""The docs' examples: every `seqtrain …` command they show uses a subcommand and flags the CLI has (for
`fit --task T`, flags of task T), and the code blocks marked `<!-- tested -->` run, on small data."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
INLINE = re.compile(r"`(seqtrain [^`]+)`")
TESTED = re.compile(r"<!-- tested -->\s*\n```bash\n(.*?)^```", re.S | re.M)
FLAG = re.compile(r"^--?[A-Za-z][\w-]*$")
SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*$")
SHELL_END = {"&&", "||", "|", ";", ">", ">>", "2>&1", "&"}


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def command_lines(text: str) -> list[str]:
    """Lines of the page's code blocks (fenced or indented) and inline code that run `seqtrain`."""
    found = []
    for block in FENCE.finditer(text):
        joined = re.sub(r"\\\n\s*", " ", block["body"])
        found += [line for line in joined.splitlines() if re.search(r"(^|\s)seqtrain\s", line)]
    indented = [line for line in text.splitlines() if line.startswith("    ") and re.search(r"(^|\s)seqtrain\s", line)]
    output = re.compile(r"^\s*(error|warning):")  # a message the docs quote, not a command
    lines = [line for line in found + indented if not output.match(line)]
    return list(dict.fromkeys(lines + INLINE.findall(text)))


def split(line: str) -> list[str]:
    line = line.strip().removeprefix("$ ")
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # prose around an example (an apostrophe): plain words are enough to read its flags
        return line.split()


def seqtrain_args(line: str) -> list[str] | None:
    """What follows `seqtrain` (or `-m seqtrain`) on the line, up to the end of its shell command."""
    words = split(line)
    if "seqtrain" not in words:
        return None
    args = []
    for word in words[words.index("seqtrain") + 1:]:
        if word in SHELL_END:
            break
        args.append(word.strip("[]"))
    return args if args and SUBCOMMAND.match(args[0]) else None


def examples() -> list[tuple[str, str]]:
    return [(relative(page), line) for page in PAGES for line in command_lines(page.read_text()) if seqtrain_args(line)]


def task_of(args: list[str]) -> str | None:
    """The task a `fit`/`summary` line trains (`imdb` when fit names none); None: any task (--config, --resume)."""
    if any(a in ("--config", "--resume") or a.startswith(("--config=", "--resume=")) for a in args):
        return None
    for index, arg in enumerate(args):
        if arg in ("--task", "-t") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--task="):
            return arg.partition("=")[2]
    return "imdb" if args[0] == "fit" else None


def problems(line: str) -> list[str]:
    from seqtrain.tasks import REGISTRY
    from seqtrain_cli.options import TaskCommand
    from seqtrain_cli.reference import commands, flags

    args = seqtrain_args(line)
    command = commands().get(args[0])
    if command is None:
        return [f"no command 'seqtrain {args[0]}'"]
    task = task_of(args) if isinstance(command, TaskCommand) else None
    if task is not None and task not in REGISTRY:
        if task.isupper():  # a placeholder such as T
            task = None
        else:
            return [f"no task '{task}'"]
    known = flags(command, task)
    used = {arg.partition("=")[0] for arg in args[1:] if FLAG.match(arg.partition("=")[0])}
    where = f" (task {task})" if task else ""
    return [f"'seqtrain {args[0]}'{where} has no flag {flag}" for flag in sorted(used - known)]


def test_the_docs_show_commands_to_check():
    pages = {page for page, _ in examples()}
    assert "README.md" in pages and "docs/getting-started.md" in pages
    assert len(examples()) > 100


def test_every_documented_command_uses_flags_the_cli_has():
    bad = [f"{page}: {line.strip()}\n    {problem}" for page, line in examples() for problem in problems(line)]
    assert not bad, "\n".join(bad)


def test_a_wrong_flag_or_task_is_caught():
    assert problems("seqtrain fit --task sine --pooling max") == ["'seqtrain fit' (task sine) has no flag --pooling"]
    assert problems("seqtrain fit --task imdb --pooling max --no-bidirectional") == []
    assert problems("seqtrain fit --task nosuch") == ["no task 'nosuch'"]
    assert problems("seqtrain generate --temprature 0.5") == ["'seqtrain generate' has no flag --temprature"]
    assert problems("seqtrain nosuch") == ["no command 'seqtrain nosuch'"]
    assert seqtrain_args("docker build -t seqtrain .") is None
    assert seqtrain_args("torchrun --standalone -m seqtrain fit --task wikitext2 && echo done")[-1] == "wikitext2"


def marked_blocks() -> list:
    return [pytest.param(body, id=f"{relative(page)}:{index}")
            for page in PAGES for index, body in enumerate(TESTED.findall(page.read_text()))]


@pytest.mark.parametrize("block", marked_blocks())
def test_a_tested_block_runs(block, tmp_path):
    """Run the block with bash in an empty folder beside a `shared/` link, so `../shared/data/…` resolves."""
    for used in re.findall(r"\.\./shared/data/(\S+)", block):
        if not (SHARED_DATA / used).exists():
            pytest.skip(f"shared data not available: {SHARED_DATA / used}")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, f"{block}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"


def test_the_readme_links_to_pages_and_headings_that_exist():
    """The README is read outside the site (GitHub, PyPI), so `mkdocs build --strict` does not check its links."""
    toc = pytest.importorskip("markdown.extensions.toc", reason="the [docs] extra is not installed")
    for target in re.findall(r"\]\(((?!https?:)[^)\s]+)\)", (ROOT / "README.md").read_text()):
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+?)(?: \{[^}]*\})?$", (ROOT / path).read_text(), re.M)
            assert anchor in {toc.slugify(h, "-") for h in headings}, f"README.md links to {target}: no such heading"


def test_the_committed_seams_figure_is_the_one_the_script_draws():
    import importlib.util
    import xml.etree.ElementTree as ElementTree

    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts" / "screenshots.py")
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    drawn = screenshots.seams_svg()
    texts = [t.text for t in ElementTree.fromstring(drawn).iter("{http://www.w3.org/2000/svg}text")]
    assert texts == [label for seam in screenshots.SEAMS for label in seam]
    assert (ROOT / "docs" / "assets" / "seams.svg").read_text() == drawn, "run python scripts/screenshots.py --only seams"
