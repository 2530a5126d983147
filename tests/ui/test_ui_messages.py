"""Messages are dataclasses; screens' worker results live in ui/messages.py and each has a handler."""

from __future__ import annotations

import ast
import dataclasses
import inspect

from textual.message import Message

from tests.helpers.cli import REPO

UI = REPO / "fceval_tui" / "ui"


def _message_classes(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(base, ast.Name) and base.id == "Message" for base in node.bases
        ):
            yield node


def test_every_message_class_in_the_ui_is_a_dataclass():
    handwritten = []
    for path in UI.rglob("*.py"):
        for node in _message_classes(ast.parse(path.read_text())):
            decorated = any(
                (isinstance(d, ast.Name) and d.id == "dataclass")
                or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass")
                for d in node.decorator_list
            )
            if not decorated or any(isinstance(n, ast.FunctionDef) and n.name == "__init__" for n in node.body):
                handwritten.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert handwritten == []


def test_screens_define_no_messages_of_their_own():
    nested = []
    for path in (UI / "screens").glob("*.py"):
        nested += [f"{path.name}: {node.name}" for node in _message_classes(ast.parse(path.read_text()))]
    assert nested == []  # worker results belong in ui/messages.py


def test_every_worker_message_has_a_handler():
    from fceval_tui.ui import messages

    handlers = {
        node.name
        for path in UI.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("on_")
    }
    classes = [
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, Message) and cls.__module__ == messages.__name__
    ]
    assert classes and all(dataclasses.is_dataclass(cls) for cls in classes)
    assert sorted(cls.handler_name for cls in classes if cls.handler_name not in handlers) == []
