"""Whether a message's JSON schema changed compatibly: the rule of docs/events.md, checked.

Within a version (`type` ends in `.v1`) a public event only gains optional fields. So a change breaks
consumers, and needs a new version, when a field is removed or renamed, a field's type changes (its
JSON types, format, constant, or the values an enum allows — a value added is one no consumer knows),
or a field becomes required (a new field that is required included). Descriptions, defaults, titles and
bounds are not compared. Schemas are pydantic's JSON schemas: `$ref` into `$defs`, `anyOf` for unions.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Why consumers written against `old` break on messages of `new`; empty when none would."""
    return _Comparison(old, new).compare(old, new, "")


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.roots = (old_root, new_root)
        self.seen: set[tuple[str, str]] = set()  # $ref pairs compared already (recursive models)

    def compare(self, old: Schema, new: Schema, path: str) -> list[str]:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs != ("", "") and refs in self.seen:
            return []
        self.seen.add(refs)
        old, new = _resolve(self.roots[0], old), _resolve(self.roots[1], new)
        old_options, new_options = _alternatives(self.roots[0], old), _alternatives(self.roots[1], new)
        if [_kind(o, len(old_options) > 1) for o in old_options] != [
            _kind(n, len(new_options) > 1) for n in new_options
        ]:
            return [
                f"{path or 'the message'} changes type: {_describe(old_options)} → {_describe(new_options)}"
            ]
        problems: list[str] = []
        for old_option, new_option in zip(old_options, new_options, strict=True):
            problems += self._compare_shape(old_option, new_option, path)
        return problems

    def _compare_shape(self, old: Schema, new: Schema, path: str) -> list[str]:
        problems: list[str] = []
        if old.get("enum") != new.get("enum"):
            problems.append(f"{path} changes its values: {old.get('enum')} → {new.get('enum')}")
        if "items" in old and "items" in new:
            problems += self.compare(old["items"], new["items"], f"{path}[]")
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        for name, schema in old_fields.items():
            where = f"{path}.{name}" if path else name
            if name not in new_fields:
                problems.append(f"{where} is removed (or renamed)")
            else:
                problems += self.compare(schema, new_fields[name], where)
        for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
            where = f"{path}.{name}" if path else name
            problems.append(
                f"{where} becomes required" if name in old_fields else f"{where} is new and required"
            )
        return problems


def _resolve(root: Schema, schema: Schema) -> Schema:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = root["$defs"][name]
    return schema


def _alternatives(root: Schema, schema: Schema) -> list[Schema]:
    """A union's members (resolved, in a stable order), or the schema alone."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return [schema]
    resolved = [_resolve(root, option) for option in options]
    return sorted(resolved, key=lambda option: repr(_kind(option, in_union=True)))


def _kind(schema: Schema, in_union: bool = False) -> tuple[Any, ...]:
    """What a value of the schema is on the wire: its JSON types, format and constant (and in a union a
    model's title, which tells its members apart)."""
    types = schema.get("type")
    if types is None and "const" in schema:
        types = type(schema["const"]).__name__
    names = tuple(sorted(types)) if isinstance(types, list) else (types,)
    title = schema.get("title") if in_union and "properties" in schema else None
    return names, schema.get("format"), repr(schema.get("const")), title


def _describe(options: list[Schema]) -> str:
    def one(option: Schema) -> str:
        types, form, const, _ = _kind(option)
        text = "/".join(str(t) for t in types)
        return text + (f" ({form})" if form else "") + ("" if const == "None" else f" {const}")

    return " | ".join(one(option) for option in options)
