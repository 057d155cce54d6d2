"""A command-line reference generated from an :mod:`argparse` parser, so it cannot drift.

``.. argparse-reference:: package.module:make_parser`` calls the function, walks the
parser and its subparsers (to any depth) and emits a section per command: its usage, its
description and, group by group, every argument with its help (``%(default)s`` expanded as
``--help`` does), choices and default, all as the parser defines them. Help texts are
inserted as plain text, never parsed as markup.

Each section gets the label ``cli-<command path>`` (``cli-select``, ``cli-session-init``) for
``:ref:`` links. The page is rebuilt when a source file of the parser's package changes.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

USAGE_WIDTH = "88"  # columns of the usage lines, whatever terminal builds the docs


@contextmanager
def _columns(width: str) -> Iterator[None]:
    """argparse wraps usage to ``$COLUMNS`` (shutil.get_terminal_size)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _load(spec: str) -> tuple[argparse.ArgumentParser, str]:
    module_name, _, func_name = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name or "make_parser")(), module_name


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each subcommand, in the parser's order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _text(value: str) -> list[nodes.paragraph]:
    """Plain text, one paragraph per blank-line-separated block, without smart quotes
    (which would print ``--out`` as an en dash and ``out``)."""
    blocks = [" ".join(b.split()) for b in value.split("\n\n")]
    return [nodes.paragraph(b, b, support_smartquotes=False) for b in blocks if b]


def _default(action: argparse.Action) -> str | None:
    if action.default in (None, argparse.SUPPRESS):
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return None  # a flag: its default is its absence
    if isinstance(action.default, str):
        return action.default if action.default else '""'
    return repr(action.default)


def _invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The argument as ``--help`` lists it (``--score {expected,spread,authors}``)."""
    return parser._get_formatter()._format_action_invocation(action)


def _field(name: str, value: str) -> nodes.paragraph:
    para = nodes.paragraph()
    para += nodes.emphasis(name, name)
    para += nodes.Text(": ")
    para += nodes.literal(value, value)
    return para


def _argument(
    parser: argparse.ArgumentParser, action: argparse.Action
) -> nodes.definition_list_item:
    item = nodes.definition_list_item()
    term = nodes.term()
    invocation = _invocation(parser, action)
    term += nodes.literal(invocation, invocation)
    if action.required and action.option_strings:
        term += nodes.Text(" (required)")
    item += term
    body = nodes.definition()
    if action.help and action.help is not argparse.SUPPRESS:
        body.extend(_text(parser._get_formatter()._expand_help(action)))
    if action.choices is not None:
        body += _field("Choices", ", ".join(str(c) for c in action.choices))
    default = _default(action)
    if default is not None:
        body += _field("Default", default)
    item += body
    return item


class ArgparseReference(SphinxDirective):
    """``.. argparse-reference:: module:function`` (the function returns the parser)."""

    required_arguments = 1
    option_spec: ClassVar[dict] = {"usage-width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        parser, module_name = _load(self.arguments[0])
        package = Path(importlib.import_module(module_name).__file__).parent
        for path in sorted(package.rglob("*.py")):
            self.env.note_dependency(str(path))
        width = str(self.options.get("usage-width", USAGE_WIDTH))
        with _columns(width):
            return self._command(parser, [parser.prog], "", top=True)

    def _command(
        self, parser, path: list[str], summary: str, top: bool = False
    ) -> list[nodes.Node]:
        label = "cli" if top else "cli-" + "-".join(path[1:])
        if top:
            container: nodes.Element = nodes.container()
        else:
            title = " ".join(path)
            container = nodes.section(ids=[nodes.make_id(label)], names=[label])
            container += nodes.title(title, title)
            self.state.document.note_explicit_target(container)  # :ref:`cli-select` etc.
        usage = parser.format_usage().strip()
        container += nodes.literal_block(usage, usage, language="none")
        container.extend(_text(parser.description or summary))
        for group in parser._action_groups:
            actions = [
                a for a in group._group_actions
                if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
                and a.help is not argparse.SUPPRESS
            ]  # fmt: skip
            if not actions:
                continue
            title = group.title or ""
            container += nodes.rubric(title, title[:1].upper() + title[1:])
            items = nodes.definition_list()
            items.extend(_argument(parser, a) for a in actions)
            container += items
        subs = list(_subcommands(parser))
        if subs:
            container += nodes.rubric("", "Subcommands")
            listing = nodes.bullet_list()
            for name, help_, _ in subs:
                para = nodes.paragraph(support_smartquotes=False)
                ref = nodes.reference(
                    "", "", refid=nodes.make_id("-".join(["cli", *path[1:], name]))
                )
                ref += nodes.literal(name, name)
                para += ref
                if help_:
                    para += nodes.Text(": " + help_)
                listing += nodes.list_item("", para)
            container += listing
        children = [
            n for name, help_, sub in subs for n in self._command(sub, [*path, name], help_)
        ]
        if top:
            return [container, *children]
        container.extend(children)  # a subcommand's subcommands are subsections of it
        return [container]


def setup(app):
    app.add_directive("argparse-reference", ArgparseReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
