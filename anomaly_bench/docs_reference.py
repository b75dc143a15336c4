"""Write the config reference page (``docs/reference/config.md``) from the config tree and the schema.

The YAML files in ``conf/`` hold every user-facing default with a comment saying what it means,
and ``anomaly_bench/config.py`` holds the typed schema those groups are checked against. A
hand-written reference would drift from both; this module walks the tree and the schema's
dataclasses generically (new groups, options and keys appear without changes here), and
``tests/test_docs.py`` fails when the committed page differs from what it writes.

    python -m anomaly_bench.docs_reference            # rewrite docs/reference/config.md
    python -m anomaly_bench.docs_reference --check    # exit 1 when the page is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from anomaly_bench import config as schema_module
from anomaly_bench.config_location import CONF_DIR, PRIMARY_CONFIG

DEFAULT_OUT = Path("docs") / "reference" / "config.md"
COMMAND = "python -m anomaly_bench.docs_reference"
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[^\s#\-][^#]*?):(?:\s+(?P<value>.*?))?\s*$")
PACKAGE_LINE = re.compile(r"^#\s*@package\s+(?P<package>\S+)")


@dataclasses.dataclass
class YamlFile:
    """One config file as the reference shows it: description, package, defaults list, keys."""

    description: str
    package: str | None
    defaults: list[Any]
    keys: list[tuple[str, Any, str]]  # (dotted key, value, comment)


def _comment_text(lines: list[str]) -> str:
    return " ".join(line.strip().lstrip("#").strip() for line in lines).strip()


def description_markdown(lines: list[str]) -> str:
    """A file's leading comment as markdown: prose joined into paragraphs, indented lines
    (``#   anomaly-bench -m ...``: examples) kept as they are in a text block."""
    parts: list[str] = []
    prose: list[str] = []
    code: list[str] = []
    for line in lines:
        body = line.strip()[1:]
        if body.startswith("   ") and body.strip():
            if prose:
                parts.append(" ".join(prose))
                prose = []
            code.append(body.strip())
        else:
            if code:
                parts.append("```text\n" + "\n".join(code) + "\n```")
                code = []
            if body.strip():
                prose.append(body.strip())
    if prose:
        parts.append(" ".join(prose))
    if code:
        parts.append("```text\n" + "\n".join(code) + "\n```")
    return "\n\n".join(parts)


def _inline_comment(line: str) -> str:
    """The ``# ...`` part of ``key: value  # ...`` (a ``#`` inside quotes is not one)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1 :].strip()
    return ""


def key_comments(text: str) -> tuple[str, dict[str, str]]:
    """(the file's leading comment, {dotted key: the comment written above or beside it}).

    A comment block belongs to the key right below it, and also to the keys that follow without
    a blank line when it names them as ``key:`` or they share the key's prefix (``max_train``,
    ``max_test``). Comments between the items of a list value belong to the key holding the list.
    """
    lines = text.splitlines()
    description: list[str] = []
    start = 0
    while start < len(lines) and (
        lines[start].strip().startswith("#") or (not description and not lines[start].strip())
    ):
        if lines[start].strip().startswith("#") and not PACKAGE_LINE.match(lines[start].strip()):
            description.append(lines[start])
        start += 1
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings enclosing the current line
    pending: list[str] = []
    carried = ""  # a comment block that may name the keys that follow it
    previous = ""  # the key of the line before, for keys that share its prefix (max_train, max_test)
    block_key: tuple[int, str] | None = None  # (indent, dotted key) of the last key without an inline value
    in_list = False  # the lines after block_key are the items of a block list
    for line in lines[start:]:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            pending, carried, previous = [], "", ""
            continue
        if stripped.startswith("#"):
            pending.append(stripped)
            continue
        if block_key is not None and (stripped.startswith("-") or (in_list and indent > block_key[0])):
            in_list = True
            if pending:
                comments[block_key[1]] = " ".join(filter(None, [comments[block_key[1]], _comment_text(pending)]))
            pending = []
            continue
        in_list = False
        match = KEY_LINE.match(line)
        if not match:
            pending, block_key = [], None
            continue
        key = match["key"].strip().strip("'\"")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        above = _comment_text(pending)
        if above:
            carried = above
        elif carried and not (
            re.search(rf"(?<![\w.]){re.escape(key)}:", carried)
            or (previous and "_" in key and key.split("_")[0] == previous.split("_")[0])
        ):
            carried = ""
        comments[dotted] = " ".join(filter(None, [above or carried, _inline_comment(match["value"] or "")]))
        pending, previous = [], key
        if match["value"] and not match["value"].startswith("#"):
            block_key = None
        else:
            stack.append((indent, key))
            block_key = (indent, dotted)
    return description_markdown(description), comments


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def read_yaml(path: Path) -> YamlFile:
    text = path.read_text()
    description, comments = key_comments(text)
    package = next((m["package"] for m in map(PACKAGE_LINE.match, text.splitlines()) if m), None)
    data = yaml.safe_load(text) or {}
    defaults = data.pop("defaults", [])
    keys = [(key, value, comments.get(key, "")) for key, value in _flatten(data)]
    return YamlFile(description, package, defaults, keys)


def shown(value: Any) -> str:
    """A value as YAML writes it on one line, in code formatting that survives a table cell."""
    if isinstance(value, str) and "\n" in value:
        text = value.splitlines()[0] + " …"
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def key_table(prefix: str, keys: list[tuple[str, Any, str]]) -> list[str]:
    if not keys:
        return []
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, value, comment in keys:
        rows.append(f"| `{prefix}{key}` | {shown(value)} | {cell(comment)} |")
    return rows + [""]


def _prefix(group: str, package: str | None) -> str:
    """What a user types before a key of this file: ``dataset.`` for dataset/mnist.yaml."""
    if package == "_global_":
        return ""
    if package in (None, "_group_"):
        return group.replace("/", ".") + "."
    return package.replace("_group_", group.replace("/", ".")) + "."


def groups(conf_dir: Path) -> list[str]:
    """Every folder of the tree that holds options (``dataset``, ``hydra/launcher``, ...), sorted."""
    return sorted(
        str(folder.relative_to(conf_dir))
        for folder in conf_dir.rglob("*")
        if folder.is_dir() and any(folder.glob("*.yaml"))
    )


def _defaults_line(defaults: list[Any]) -> list[str]:
    if not defaults:
        return []
    return [f"Defaults list: {shown(defaults)}", ""]


def _target(item: YamlFile) -> Any:
    return next((value for key, value, _ in item.keys if key == "_target_"), None)


def group_comments(group_dir: Path) -> dict[tuple[Any, str], str]:
    """Each key's first comment among the group's options that build the same ``_target_``: the
    meaning of ``normal_classes`` is written once (say in mnist.yaml), not in every option that
    sets it, while ``score`` of one model class says nothing about another's."""
    found: dict[tuple[Any, str], str] = {}
    for path in sorted(group_dir.glob("*.yaml")):
        item = read_yaml(path)
        for key, _, comment in item.keys:
            if comment:
                found.setdefault((_target(item), key), comment)
    return found


def render_option(group: str, path: Path, shared: dict[tuple[Any, str], str]) -> list[str]:
    item = read_yaml(path)
    target = _target(item)
    item.keys = [(key, value, comment or shared.get((target, key), "")) for key, value, comment in item.keys]
    lines = [f"### `{group}={path.stem}`", ""]
    if item.description:
        lines += [item.description, ""]
    if item.package:
        where = (
            f"under `{_prefix(group, item.package).rstrip('.')}`"
            if _prefix(group, item.package)
            else "at the top level"
        )
        lines += [f"Package `{item.package}`: its keys are placed {where}.", ""]
    lines += _defaults_line(item.defaults)
    lines += key_table(_prefix(group, item.package), item.keys)
    return lines


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def field_comments(cls: type) -> dict[str, str]:
    """The comment lines written directly above each field in the dataclass's source."""
    source = inspect.getsource(cls).splitlines()
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in source[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped)
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match:
            comments[match.group(1)] = _comment_text(pending)
        pending = []
    return comments


def _default(spec: dataclasses.Field) -> str:
    """The field's default as the table shows it; ``required`` when it has none."""
    if spec.default is not dataclasses.MISSING:
        return shown(spec.default)
    if spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
        is_instance = dataclasses.is_dataclass(value) and not isinstance(value, type)
        return shown(dataclasses.asdict(value) if is_instance else value)
    return "required"


def render_schema() -> list[str]:
    """Every dataclass of the schema module and those it imports from the package: the types and
    defaults the groups are checked against."""
    lines = [
        "## Schema",
        "",
        f"`{schema_module.__name__}` types the composed groups before anything runs: an unknown key or a "
        "value of the wrong type ends with one line and exit code 2.",
        "",
    ]
    package = schema_module.__name__.split(".")[0]
    classes = [
        cls
        for _, cls in inspect.getmembers(schema_module, inspect.isclass)
        if dataclasses.is_dataclass(cls) and cls.__module__.split(".")[0] == package
    ]
    own = schema_module.__name__

    def order(cls: type) -> tuple[bool, str, int]:  # the schema module's own classes first, in source order
        return (cls.__module__ != own, cls.__module__, inspect.getsourcelines(cls)[1])

    for cls in sorted(classes, key=order):
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        doc = inspect.getdoc(cls) or ""
        generated = doc.startswith(cls.__name__ + "(")  # dataclasses write a signature when there is no docstring
        lines += [f"### `{cls.__name__}`" + ("" if cls.__module__ == own else f" ({cls.__module__})"), ""]
        if doc and not generated:
            lines += [doc.splitlines()[0], ""]
        lines += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for spec in dataclasses.fields(cls):
            kind = cell(_type_name(hints[spec.name]))
            lines.append(f"| `{spec.name}` | `{kind}` | {_default(spec)} | {cell(comments.get(spec.name, ''))} |")
        lines.append("")
    return lines


def render(conf_dir: Path = CONF_DIR) -> str:
    """The whole page, deterministic (sorted groups and options, keys in file order)."""
    primary = read_yaml(conf_dir / f"{PRIMARY_CONFIG}.yaml")
    names = groups(conf_dir)
    lines = [
        "# Config reference",
        "",
        f"<!-- Generated by `{COMMAND}` from conf/ and {schema_module.__name__}; do not edit by hand. -->",
        "",
        "Every key below can be set on the command line as `key=value`, every group option chosen as "
        "`group=option`; `anomaly-bench [overrides] --cfg job` prints the composed result. Defaults and "
        "meanings come from the YAML files in `conf/` (the comments written in them) and from the schema "
        f"in `{schema_module.__name__}`.",
        "",
        f"## `{PRIMARY_CONFIG}.yaml`",
        "",
    ]
    if primary.description:
        lines += [primary.description, ""]
    lines += _defaults_line(primary.defaults)
    lines += key_table("", primary.keys)
    lines += ["## Groups", "", "| group | options |", "|---|---|"]
    for group in names:
        options = ", ".join(f"`{p.stem}`" for p in sorted((conf_dir / group).glob("*.yaml")))
        lines.append(f"| `{group}` | {options} |")
    lines.append("")
    for group in names:
        lines += [f"## `{group}`", ""]
        shared = group_comments(conf_dir / group)
        for path in sorted((conf_dir / group).glob("*.yaml")):
            lines += render_option(group, path, shared)
    lines += render_schema()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the page to write (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page differs")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != page:
            print(f"{args.out} is out of date; regenerate it with: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
