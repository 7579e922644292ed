"""The docs tell the truth: every workflow snippet validates, every command shown parses.

Also: every relative link (and its #anchor) resolves, every example validates, and the
reference pages name every CLI option, HTTP route, setting, event type and workflow field.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from typer._click.core import Context
from typer._click.exceptions import ClickException
from typer.exceptions import Exit

from podium import check
from podium.cli.app import app
from podium.control.config import ControlConfig, load_control
from podium.errors import WorkflowInvalid
from podium.model import workflow as model
from podium.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

# A code block after this comment (or with `fragment` in its info string) is a piece of a
# workflow or a deliberately partial command, not checked; `invalid` must fail validation.
FRAGMENT, INVALID = "<!-- fragment -->", "<!-- invalid -->"
_FENCE = re.compile(r"^(\s*)```+\s*([^`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    info: str
    marker: str  # the HTML comment on the last non-blank line before the fence, or ""
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def fragment(self) -> bool:
        return self.marker == FRAGMENT or "fragment" in self.info.split()


def blocks(page: Path) -> Iterator[Block]:
    """The fenced code blocks of a Markdown page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        info = match.group(2).strip()
        previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        marker = previous if previous.startswith("<!--") else ""
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith("```"):
            end += 1
        body = "\n".join(line.removeprefix(match.group(1)) for line in lines[i + 1 : end])
        lang = info.split()[0] if info else ""
        yield Block(page, i + 1, lang, info, marker, body)
        i = end + 1


def all_blocks(*langs: str) -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.lang in langs]


def block_id(block: Block) -> str:
    return block.where


# -- workflow snippets ----------------------------------------------------------------------------


def looks_like_workflow(block: Block) -> bool:
    return re.search(r"^steps:", block.text, re.MULTILINE) is not None


WORKFLOW_BLOCKS = [b for b in all_blocks("yaml", "yml") if looks_like_workflow(b)]


@pytest.fixture(autouse=True, scope="module")
def _example_calls_importable() -> Iterator[None]:
    """Snippets call the example step bodies (`etl_tasks:...`), as `podium run` finds them."""
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def validate_snippet(block: Block) -> Any:
    data = yaml.safe_load(block.text)
    return check.parse_workflow(data, block.where, base_dir=EXAMPLES)


@pytest.mark.parametrize("block", WORKFLOW_BLOCKS, ids=block_id)
def test_every_workflow_snippet_validates(block: Block) -> None:
    if block.fragment:
        pytest.skip("marked as a fragment")
    if block.marker == INVALID:
        with pytest.raises(WorkflowInvalid):
            validate_snippet(block)
        return
    try:
        validate_snippet(block)
    except WorkflowInvalid as exc:
        pytest.fail(f"{block.where}: the snippet is not a valid workflow:\n{exc}")


def test_the_docs_hold_workflow_snippets_and_fragments_are_few() -> None:
    checked = [b for b in WORKFLOW_BLOCKS if not b.fragment]
    assert len(checked) >= 20, "the workflow reference shows whole, checked workflows"
    assert len(WORKFLOW_BLOCKS) - len(checked) <= len(checked) // 2


@pytest.mark.parametrize(
    "block", [b for b in all_blocks("toml") if not b.fragment], ids=block_id
)
def test_every_toml_snippet_is_a_valid_control_config(block: Block) -> None:
    ControlConfig(**tomllib.loads(block.text))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_workflow_validates(path: Path) -> None:
    check.load_workflow(path)


def test_the_example_control_config_loads() -> None:
    load_control(EXAMPLES / "podium.toml")


# -- commands -------------------------------------------------------------------------------------

_SPLIT = {";", "&&", "||", "|", "&"}


def commands(text: str) -> Iterator[list[str]]:
    """Each simple command of a shell snippet (continuations joined, comments dropped)."""
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token in _SPLIT:
                if current:
                    yield current
                current = []
            else:
                current.append(token)
        if current:
            yield current


def podium_args(words: list[str]) -> list[str] | None:
    """The arguments of a `podium ...` command (after VAR=value prefixes), or None."""
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words = words[1:]
    if words and (words[0] == "podium" or words[0].endswith("/podium")):
        return words[1:]
    return None


def parse_podium(args: list[str]) -> None:
    """Parses `podium ARGS` as the app would, without running anything."""
    command = typer.main.get_command(app)
    ctx: Context = command.make_context("podium", list(args))
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            runs_alone = getattr(command, "invoke_without_command", False)
            assert runs_alone, f"`{' '.join(args)}` names no subcommand"
            return
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub


SHELL_COMMANDS = [
    (block, args)
    for block in all_blocks("sh", "bash", "shell", "console")
    if not block.fragment
    for words in commands(block.text)
    if (args := podium_args(words)) is not None
]


@pytest.mark.parametrize(
    ("block", "args"), SHELL_COMMANDS, ids=[f"{b.where} {' '.join(a)}" for b, a in SHELL_COMMANDS]
)
def test_every_podium_command_shown_parses(block: Block, args: list[str]) -> None:
    try:
        parse_podium(args)
    except Exit as exc:  # --help
        assert exc.exit_code == 0
    except ClickException as exc:
        command = " ".join(args)
        pytest.fail(f"{block.where}: `podium {command}` does not parse: {exc.format_message()}")


def test_commands_are_checked() -> None:
    assert len(SHELL_COMMANDS) >= 60


def test_a_broken_command_is_caught() -> None:
    with pytest.raises(ClickException):
        parse_podium(["run", "x.yaml", "--no-such-option"])
    with pytest.raises(ClickException):
        parse_podium(["dlq", "replya", "RUN"])


# -- links ----------------------------------------------------------------------------------------

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCED = re.compile(r"^\s*```.*?^\s*```", re.DOTALL | re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCED.sub("", page.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.*)$", text, re.MULTILINE):
        base = slug(heading)
        name, n = base, 1
        while name in found:
            name, n = f"{base}-{n}", n + 1
        found.add(name)
    return found


def links(page: Path) -> Iterator[str]:
    prose = _FENCED.sub("", page.read_text(encoding="utf-8"))
    prose = re.sub(r"`[^`\n]*`", "", prose)
    yield from _LINK.findall(prose)


LINKS = [
    (page, target)
    for page in PAGES
    for target in links(page)
    if not re.match(r"^[a-z]+:", target)
]


@pytest.mark.parametrize(
    ("page", "target"), LINKS, ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in LINKS]
)
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    assert resolved.exists(), f"{page.relative_to(ROOT)}: link to {target} names no file"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), (
            f"{page.relative_to(ROOT)}: link to {target}: no heading has the anchor #{anchor}"
        )


# -- the reference pages name everything ----------------------------------------------------------


def page_text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def cli_commands() -> Iterator[tuple[str, Any]]:
    def walk(command: Any, path: str, parent: Context | None) -> Iterator[tuple[str, Any]]:
        ctx = Context(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
        yield path, command
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), f"{path} {name}", ctx)

    yield from walk(typer.main.get_command(app), "podium", None)


def cli_section(text: str, path: str) -> str:
    """The part of cli.md under the heading that names `path` exactly."""
    parts = re.split(r"^(#{2,4} .*)$", text, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if f"`{path}`" in heading or re.search(rf"`{re.escape(path)}[ `]", heading):
            return body
    return ""


def test_cli_reference_names_every_command_and_option() -> None:
    text = page_text("cli.md")
    missing = []
    for path, command in cli_commands():
        section = cli_section(text, path) if path != "podium" else text
        if not section:
            missing.append(f"no section for `{path}`")
            continue
        for param in command.params:
            if param.param_type_name == "option":
                name = max(param.opts, key=len)
                if name not in section:
                    missing.append(f"`{path}`: option {name}")
            elif (param.metavar or param.name).strip("[]").upper() not in section.upper():
                missing.append(f"`{path}`: argument {param.name}")
    assert missing == []


def api_routes() -> list[tuple[str, str, str]]:
    """(method, path, permission) of every route; `public` for the probes."""
    from types import SimpleNamespace

    from podium.api.app import create_app
    from podium.api.auth import declared_checks

    api = create_app(SimpleNamespace(settings=Settings(), store=None))  # type: ignore[arg-type]
    found = []
    for context in iter_route_contexts(api.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            path = re.sub(r"\{(\w+):path\}", r"{\1}", context.path)  # as a client writes it
            checks = declared_checks(route)
            permission = checks[0].permission.value if checks else "public"
            found += [(method, path, permission) for method in sorted(route.methods or ())]
    return found


def test_api_reference_names_every_route_with_its_permission() -> None:
    text = page_text("api.md")
    missing = []
    for method, path, permission in api_routes():
        row = re.search(rf"^\| `{method} {re.escape(path)}` \|([^|]*)\|", text, re.MULTILINE)
        if row is None or permission not in row.group(1):
            missing.append(f"{method} {path} ({permission})")
    assert missing == []


def test_configuration_names_every_setting_and_section() -> None:
    text = page_text("configuration.md")
    names = [f"PODIUM_{name.upper()}" for name in Settings.model_fields if name != "control"]
    missing = [name for name in names if name not in text]
    for section, field in ControlConfig.model_fields.items():
        if section == "pricing":
            continue
        if f"[{section}" not in text:
            missing.append(f"[{section}]")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key, sub in annotation.model_fields.items():
                if f"`{sub.alias or key}`" not in text:
                    missing.append(f"[{section}] {sub.alias or key}")
    assert missing == []


_EVENT = re.compile(r"\"((?:run|agent\.task|system\.[a-z]+)\.[a-z_]+(?:\.[a-z_]+)?)\"")


def test_events_reference_names_every_event_type() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "podium").rglob("*.py"))
    kinds = set(_EVENT.findall(source)) | {
        f"system.circuit.{t}" for t in ("opened", "half_opened", "closed")
    }
    kinds -= {"run.cancel", "run.signal"}  # audit actions (`audit.run.cancel`), listed as such
    kinds = {k for k in kinds if not k.endswith(".html")}  # the dashboard's templates
    text = page_text("events.md")
    assert sorted(k for k in kinds if f"`{k}`" not in text) == []


MODELS: list[type[BaseModel]] = [
    model.Workflow, model.Step, model.InputSpec, model.Budget, model.RetryPolicy,
    model.CircuitPolicy, model.Limits, model.Resources, model.LatencyDist, model.TokenCounts,
    model.PythonAction, model.HttpAction, model.SimAction, model.WaitAction,
    model.WorkflowAction, model.LlmAction, model.N8nAction,
]


def test_workflow_format_names_every_field() -> None:
    text = page_text("workflow-format.md") + page_text("step-kinds.md")
    missing = [
        f"{cls.__name__}.{field.alias or name}"
        for cls in MODELS
        for name, field in cls.model_fields.items()
        if name not in ("action", "id", "definition") and f"`{field.alias or name}`" not in text
    ]
    assert missing == []


def test_nothing_refers_to_files_outside_the_repository() -> None:
    """A clone holds the whole reference: no design notes cited from outside it."""
    outside = re.compile(r"DESIGN §|DESIGN\.md|WORKLOADS\.md|\.\./shared|shared/")
    sources = [*PAGES, *(ROOT / "src" / "podium").rglob("*.py"), *EXAMPLES.iterdir()]
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources
        if path.is_file()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert hits == []
