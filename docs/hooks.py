"""MkDocs hooks: the configuration reference, generated at build time from the pydantic
schema (otrs_mailgate/config/schema.py), so it lists exactly the keys the daemon reads,
with their types, defaults and the comments written above them in the schema."""

from __future__ import annotations

import ast
import inspect
import json
import types
import typing
from typing import Any

from mkdocs.structure.files import File, Files
from pydantic import BaseModel

from otrs_mailgate.config import schema

PAGE = "reference/configuration.md"


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, PAGE, content=reference()))
    return files


def reference() -> str:
    comments = _comments()
    out = [
        "# Configuration reference",
        "",
        "Generated from `otrs_mailgate/config/schema.py` when the documentation is built:",
        "every key the daemon reads, its type and default, and what the schema says of it.",
        "Unknown keys are refused (a typo is never read silently); every key can also be",
        "set from the environment as `OTRS_MAILGATE_<SECTION>_<KEY>` (see",
        "[Configuration](../configuration.md)). The shipped `otrs-mailgate.toml.example`",
        "shows them all with their defaults.",
        "",
    ]
    for name, field in schema.Config.model_fields.items():
        model, many = _section_model(field.annotation)
        if model is None:
            continue
        heading = f"[[{name}]]" if many else f"[{name}]"
        out += [f"## `{heading}`", ""]
        doc = inspect.getdoc(model)
        if doc and model.__doc__ and not model.__doc__.startswith(model.__name__ + "("):
            out += [doc, ""]
        out += _table(model, comments)
        for sub_name, sub_field in model.model_fields.items():
            sub_model, sub_many = _section_model(sub_field.annotation)
            if sub_model is not None:
                sub = f"[[{name}.{sub_name}]]" if sub_many else f"[{name}.{sub_name}]"
                out += [f"### `{sub}`", "", *_table(sub_model, comments)]
    return "\n".join(out) + "\n"


def _section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    origin = typing.get_origin(annotation)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return (inner, True) if _is_model(inner) else (None, False)
    return (annotation, False) if _is_model(annotation) else (None, False)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _table(model: type[BaseModel], comments: dict[tuple[str, str], str]) -> list[str]:
    rows = ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for key, field in model.model_fields.items():
        if _section_model(field.annotation)[0] is not None:
            continue
        default = (
            "(required)"
            if field.is_required()
            else _show(field.get_default(call_default_factory=True))
        )
        note = comments.get((model.__name__, key), "")
        rows.append(f"| `{key}` | {_type(field.annotation)} | {default} | {note} |")
    return [*rows, ""]


def _show(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(see below)"
    text = json.dumps(value, default=str, ensure_ascii=False)
    return f"`{text}`".replace("|", "\\|")


def _type(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "none"
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        args = ", ".join(_type(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation)).replace("|", "\\|")


def _comments() -> dict[tuple[str, str], str]:
    """(class, field) -> the comment lines right above the field (and its inline one)."""
    source = inspect.getsource(schema)
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, i = [], item.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            inline = lines[item.end_lineno - 1].partition("  # ")[2].strip()
            text = " ".join([*above, inline]).strip()
            found[(node.name, item.target.id)] = text.replace("|", "\\|")
    return found
