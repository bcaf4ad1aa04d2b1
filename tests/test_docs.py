"""The docs cannot drift: every ``cvtool ...`` line in README.md and docs/ names a real command and
only options it takes, every ``--set KEY=`` key exists, every relative link and anchor resolves,
every section of measured figures says when and on what, and the blocks marked runnable run.
And they stay findable: a short README that links each command's page, pages that say what they
cover in their first lines."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import typer

import docs_lines
from cvtool import config as cfglib
from cvtool.cli import main, make_app
from cvtool.tasks import registry

FIGURES = re.compile(r"speed|benchmark|start-?up|timing|how fast", re.I)
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
MACHINE = re.compile(r"Xeon|EPYC|Ryzen|Core i\d|Apple M\d|H100|H200|A100|L4\b|T4\b|RTX|GPU|CPU", re.I)
SET = ("--set", "-s")
README = docs_lines.ROOT / "README.md"
README_MAX_LINES = 250
PROSE = re.compile(r"^(?!```|~~~|\||#|[-*] |!\[|<|\d+\. )\S")
SENTENCE_END = re.compile(r"[.:](\s|$)")


@pytest.fixture(scope="module")
def app():
    return typer.main.get_command(make_app())


def all_lines() -> list[docs_lines.Line]:
    return [line for path in docs_lines.documents() for line in docs_lines.commands(path)[0]]


def placeholder(word: str) -> bool:
    return word.startswith("<") or word.isupper() or word in ("...", "|")


def resolve(app, words: tuple[str, ...]) -> tuple[object | None, list[str], str]:
    """The (click) command the words name (None for a placeholder such as ``<command>``), the
    words left for its options, and its full name; AssertionError for a command that does not exist."""
    command, rest, name = app, list(words[1:]), "cvtool"
    while getattr(command, "commands", None) is not None and rest and not rest[0].startswith("-"):
        if placeholder(rest[0]):
            return None, [], name
        sub = command.get_command(typer.Context(command), rest[0])  # click's way: a group may build it now
        assert sub is not None, f"no command {name} {rest[0]}"
        command, rest, name = sub, rest[1:], f"{name} {rest[0]}"
    return command, rest, name


def option_names(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts + param.secondary_opts)
    return names


def config_keys(name: str) -> set[str]:
    """The keys ``--set`` takes: the command's task's, or any task's for eval/predict/export."""
    specs = [s for s in registry.specs() if name == f"cvtool {s.command}"] or registry.specs()
    return {key for spec in specs for key in cfglib.dotted_keys(spec.config)}


def problems(app, line: docs_lines.Line) -> list[str]:
    try:
        command, rest, name = resolve(app, line.words)
    except AssertionError as exc:
        return [str(exc)]
    if command is None:
        return []
    known, out = option_names(command), []
    for i, word in enumerate(rest):
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d.*", word):
            continue
        option = word.split("=", 1)[0]
        if option not in known:
            out.append(f"{name} has no option {option}")
        elif option in SET and i + 1 < len(rest) and "=" in rest[i + 1] and not placeholder(rest[i + 1].split("=")[0]):
            key = rest[i + 1].split("=", 1)[0]
            if not fnmatch.filter(config_keys(name), key):  # data.* stands for any data key
                out.append(f"{name}: --set {key}: no such config key")
    return out


def test_every_documented_command_and_option_exists(app):
    lines = all_lines()
    assert len(lines) > 100  # the collector still finds the docs' commands
    wrong = [f"{line.where}\n    {why}" for line in lines for why in problems(app, line)]
    assert not wrong, "\n".join(wrong)


def test_a_renamed_option_is_caught(app):
    """The check can fail: an option the docs use, renamed in the CLI, is reported."""
    eval_command = app.commands["eval"]
    line = next(x for x in all_lines() if x.words[:2] == ("cvtool", "eval") and "--checkpoint" in x.words)
    option = next(p for p in eval_command.params if "--checkpoint" in p.opts)
    before = list(option.opts)
    option.opts = ["--ckpt"]
    try:
        assert problems(app, line) == ["cvtool eval has no option --checkpoint"]
    finally:
        option.opts = before
    assert problems(app, line) == []


def test_an_unknown_config_key_is_caught(app):
    line = docs_lines.Line(docs_lines.ROOT / "README.md", 1, "", ("cvtool", "train-fcn", "--set", "data.rot=DIR"))
    assert problems(app, line) == ["cvtool train-fcn: --set data.rot: no such config key"]


@pytest.mark.parametrize("path", docs_lines.documents(), ids=lambda p: str(p.relative_to(docs_lines.ROOT)))
def test_relative_links_and_anchors_resolve(path):
    wrong = []
    for number, target in docs_lines.links(path):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not this test's
        file, _, anchor = target.partition("#")
        goal = (path.parent / file).resolve() if file else path
        if not goal.exists():
            wrong.append(f"{path.name}:{number}: {target}: no such file")
        elif anchor and goal.suffix == ".md" and anchor not in docs_lines.anchors(goal):
            wrong.append(f"{path.name}:{number}: {target}: no heading with that anchor in {goal.name}")
    assert not wrong, "\n".join(wrong)


def test_slugs_follow_github():
    assert docs_lines.slug("Exporting a model (ONNX, TorchScript, INT8) and benchmarking it") == \
        "exporting-a-model-onnx-torchscript-int8-and-benchmarking-it"
    assert docs_lines.slug("`make gpu-check`") == "make-gpu-check"


def undated_figures(path: Path) -> list[str]:
    """Sections about speed holding a table of numbers that do not say when and on what."""
    wrong = []
    for number, title, text in docs_lines.sections(path):
        table = re.search(r"^\|.*\d.*\|\s*$", text, re.M)
        if FIGURES.search(title) and table and not (DATE.search(text) and MACHINE.search(text)):
            wrong.append(f"{path.name}:{number}: {title}: figures without a date (YYYY-MM-DD) and a machine")
    return wrong


@pytest.mark.parametrize("path", docs_lines.documents(), ids=lambda p: str(p.relative_to(docs_lines.ROOT)))
def test_sections_with_figures_name_their_date_and_machine(path):
    wrong = undated_figures(path)
    assert not wrong, "\n".join(wrong)


def test_undated_figures_are_caught(tmp_path):
    page = tmp_path / "page.md"
    table = "| command | s |\n|---|---|\n| `cvtool --help` | 2.5 |\n"
    page.write_text(f"# Notes\n\n## Start-up speed\n\n{table}\n## Other\n\ntext\n")
    assert undated_figures(page) == ["page.md:3: Start-up speed: figures without a date (YYYY-MM-DD) and a machine"]
    page.write_text(f"## Start-up speed\n\nXeon, 2 cores, 2026-12-04.\n\n{table}")
    assert undated_figures(page) == []


RUNNABLE = [block for path in docs_lines.documents() for block in docs_lines.commands(path)[1]]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b[0].where.split(":")[0] + f":{b[0].number}")
def test_runnable_blocks_run(block, tmp_path, monkeypatch, capsys):
    """Blocks after ``<!-- runnable -->`` run as written, in order, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    for line in block:
        code = main(list(line.words[1:]))
        assert code == 0, f"{line.where}\n{capsys.readouterr().err}"


def test_readme_stays_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move reference into docs/"


def own_commands(app) -> list[str]:
    """The top-level commands that need a page: cvtool's own, not a plugin's or an unbuilt entry point's."""
    foreign = {s.command for s in registry.specs() if not s.config.__module__.startswith("cvtool.")}
    return sorted(name for name, command in app.commands.items()
                  if name not in foreign and command.help != "(not built yet)")


def test_readme_links_each_command_page_and_the_index(app):
    """A newcomer finds each command's page in one click from the README."""
    linked = {target.partition("#")[0] for _, target in docs_lines.links(README)}
    wanted = {"docs/README.md", *(f"docs/commands/{name}.md" for name in own_commands(app))}
    assert not wanted - linked, f"README.md does not link {sorted(wanted - linked)}"


def test_every_command_page_names_a_command(app):
    pages = {path.stem for path in (docs_lines.ROOT / "docs" / "commands").glob("*.md")}
    assert pages == set(own_commands(app)), "docs/commands/ pages and commands differ"


def test_the_index_links_every_page():
    index = docs_lines.ROOT / "docs" / "README.md"
    linked = {(index.parent / target.partition("#")[0]).resolve() for _, target in docs_lines.links(index)}
    missing = [str(p.relative_to(docs_lines.ROOT)) for p in docs_lines.documents()[1:] if p != index and p not in linked]
    assert not missing, f"docs/README.md does not link {missing}"


def opening_problem(path: Path) -> str | None:
    """A page starts with its title, a blank line, then prose whose first sentence ends within three lines."""
    lines = path.read_text(encoding="utf-8").splitlines() + ["", "", ""]
    if not re.match(r"# \S", lines[0]) or lines[1].strip():
        return f"{path.name}: no '# Title' line followed by a blank line"
    paragraph = []
    for line in lines[2:]:
        if not line.strip():
            break
        paragraph.append(line)
    if not paragraph or not PROSE.match(paragraph[0]):
        return f"{path.name}: the title is not followed by a summary in prose"
    if not SENTENCE_END.search(" ".join(paragraph[:3])):
        return f"{path.name}: the summary's first sentence runs past three lines"
    return None


@pytest.mark.parametrize("path", docs_lines.documents(), ids=lambda p: str(p.relative_to(docs_lines.ROOT)))
def test_pages_start_with_a_title_and_a_summary(path):
    assert opening_problem(path) is None, opening_problem(path)


def test_a_page_without_a_summary_is_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n```bash\ncvtool runs\n```\n")
    assert opening_problem(page) == "page.md: the title is not followed by a summary in prose"
    page.write_text("# Page\n\n" + "a summary that goes on\n" * 4 + "and ends.\n")
    assert opening_problem(page) == "page.md: the summary's first sentence runs past three lines"
    page.write_text("# Page\n\nWhat this page covers, in a line or two.\n\n## More\n")
    assert opening_problem(page) is None
