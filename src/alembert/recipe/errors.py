"""One line for a recipe's validation error: the key's path as the user wrote it, what was wrong, a hint."""
from __future__ import annotations

import difflib
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from alembert.errors import printable, short_repr
from alembert.recipe.specs import REGISTERED


def format_validation_error(err: ValidationError, source: str, root: type[BaseModel],
                            overrides: dict[str, str] | None = None) -> str:
    """One line for a schema's validation error: the key's path as the user wrote it, what was wrong, a hint.
    `overrides` (dotted key -> its `--set` text): an error at or below such a key is the `--set`'s, not the file's."""
    # the deepest error is the most specific: for `task: {trian: ...}` that is the typo, not "not a string";
    # at one depth an unknown key goes first, since its 'did you mean' also explains a missing one
    first = max(err.errors(), key=lambda e: (len(e["loc"]), e["type"] == "extra_forbidden"))
    parts, annotation = _walk(root, first["loc"])
    path = ".".join(printable(p) for p in parts) or "(top level)"
    dotted = ".".join(str(p) for p in parts)
    for key, text in (overrides or {}).items():
        if dotted == key or dotted.startswith(key + "."):
            source = f"--set {printable(text)}"
    if first["type"] == "union_tag_not_found":  # e.g. a loss without its 'type'
        tags = [t for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
                and "type" in m.model_fields for t in get_args(m.model_fields["type"].annotation)]
        return f"{source}: {path}: missing key 'type' (expected one of: {', '.join(tags + _registered(tags))})"
    if first["type"] == "extra_forbidden":
        _, parent = _walk(root, first["loc"][:-1])
        return f"{source}: {path}: unknown key{_suggest(first['loc'][-1], parent)}"
    if first["type"] == "missing":
        return f"{source}: {path}: required key is missing"
    message = printable(first["msg"].removeprefix("Value error, "))
    got = first.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {short_repr(got)})"
    return f"{source}: {path}: {message}{shown}"


def _members(annotation) -> list:
    """The alternatives of a type: X | Y and Annotated[Union[...], ...] give each member."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def _walk(annotation, loc) -> tuple[list, Any]:
    """Follow an error location through the schema: the parts a user wrote (pydantic's union-member tags such
    as 'GenericTaskSpec' or 'str' left out) and the type where it ends (None when the schema is left)."""
    parts = []
    for part in loc:
        nxt, is_tag = None, False
        for member in _members(annotation) if annotation is not None else []:
            if isinstance(member, type) and issubclass(member, BaseModel):
                if part in member.model_fields:
                    nxt = member.model_fields[part].annotation
                    break
                kind = member.model_fields.get("type")
                if kind is not None and part in get_args(kind.annotation):  # a loss type: shown, as users write it
                    nxt = member
                    break
            if get_origin(member) is list and isinstance(part, int):
                nxt = get_args(member)[0]
                break
            if get_origin(member) is dict and isinstance(part, str):  # a named entry, e.g. under sources
                nxt = get_args(member)[1]
                break
        else:
            if part == REGISTERED:  # an entry of a user's module: its own type name is in the message
                continue
            if isinstance(part, str) and part.startswith("tagged-union["):  # pydantic's name of a nested union
                continue
            tagged = [m for m in _members(annotation) if getattr(m, "__name__", None) == part] if annotation else []
            if tagged:
                nxt, is_tag = tagged[0], True
        if not is_tag:
            parts.append(part)
        annotation = nxt
    return parts, annotation


def _suggest(key, annotation) -> str:
    """'did you mean' for an unknown key, from the keys the schema allows where it stands."""
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)] \
        if annotation is not None else []
    if len(models) != 1:
        return " (remove it)"
    model = models[0]
    close = difflib.get_close_matches(str(key), list(model.model_fields), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(model.model_fields)})"


def _registered(builtin_tags: list[str]) -> list[str]:
    """Registry keys beyond the built-in tags of a union, for a 'missing type' message (loss, plugin, ...)."""
    from alembert import registry

    for entries in (registry.LOSSES, registry.PLUGINS, registry.SOURCES, registry.SAMPLERS, registry.STEPS):
        keys = entries.keys()
        if set(builtin_tags) & set(keys):
            return [k for k in keys if k not in builtin_tags]
    return []
