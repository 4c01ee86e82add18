"""A small reader of sandlot's own ``.proto`` files and a checker of proto3 JSON against them.

It reads what `sandlot/agent/proto/*.proto` use and nothing more: ``package``, ``service`` with
``rpc`` lines (``stream`` on either side), ``message`` (nested), ``enum``, ``oneof``, ``map<,>``,
``repeated`` and ``optional`` fields. A construct it does not know fails the parse, so a
.proto that grows past it says so instead of being checked loosely.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"[A-Za-z_][\w.]*|\d+|[{}();=<>,]|\"[^\"]*\"")
_INTEGERS = {"int32", "uint32", "sint32", "fixed32", "int64", "uint64", "sint64", "fixed64"}
_SCALARS = _INTEGERS | {"string", "bool", "bytes", "double", "float"}
TIMESTAMP = "google.protobuf.Timestamp"


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: str
    """A scalar name, or the full name of a message or enum (``process.ProcessConfig``)."""
    repeated: bool = False
    map_value: str | None = None
    """For ``map<string, V>``: V (then `type` is ``string``)."""
    oneof: str | None = None

    @property
    def json_name(self) -> str:
        head, *rest = self.name.split("_")
        return head + "".join(part.title() for part in rest)


@dataclasses.dataclass(frozen=True)
class Rpc:
    name: str
    request: str
    response: str
    client_stream: bool
    server_stream: bool


@dataclasses.dataclass
class Schema:
    messages: dict[str, dict[str, Field]] = dataclasses.field(default_factory=dict)
    """Full message name -> JSON field name -> field."""
    enums: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    rpcs: dict[str, Rpc] = dataclasses.field(default_factory=dict)
    """Connect path (``/process.Process/Start``) -> rpc."""

    def check(self, message_type: str, value: Any, where: str = "") -> None:
        """Assert that ``value`` is ``message_type`` in proto3 JSON, every key a known field."""
        where = where or message_type
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        fields = self.messages[message_type]
        oneofs: dict[str, str] = {}
        for key, item in value.items():
            field = fields.get(key) or next((f for f in fields.values() if f.name == key), None)
            assert field is not None, f"{where}: {key!r} is no field of {message_type} ({sorted(fields)})"
            if field.oneof is not None:
                assert field.oneof not in oneofs, (
                    f"{where}: {key!r} and {oneofs[field.oneof]!r} share oneof {field.oneof}"
                )
                oneofs[field.oneof] = key
            if item is None:
                continue
            if field.map_value is not None:
                assert isinstance(item, dict), f"{where}.{key}: a map must be an object"
                for k, v in item.items():
                    self._check_value(field.map_value, v, f"{where}.{key}[{k!r}]")
            elif field.repeated:
                assert isinstance(item, list), f"{where}.{key}: a repeated field must be a list"
                for i, v in enumerate(item):
                    self._check_value(field.type, v, f"{where}.{key}[{i}]")
            else:
                self._check_value(field.type, item, f"{where}.{key}")

    def _check_value(self, type_: str, value: Any, where: str) -> None:
        if type_ in self.messages:
            self.check(type_, value, where)
        elif type_ in self.enums:
            assert value in self.enums[type_], f"{where}: {value!r} is no value of {type_}"
        elif type_ in _INTEGERS:
            assert not isinstance(value, bool) and isinstance(value, (int, str)), f"{where}: {value!r} is no {type_}"
            int(value)
        elif type_ == "bool":
            assert isinstance(value, bool), f"{where}: {value!r} is no bool"
        elif type_ in ("string", TIMESTAMP):
            assert isinstance(value, str), f"{where}: {value!r} is no {type_}"
        elif type_ == "bytes":
            assert isinstance(value, str), f"{where}: {value!r} is no base64 text"
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise AssertionError(f"{where}: {value!r} is not standard base64") from exc
        else:
            raise AssertionError(f"{where}: unknown type {type_}")


def load(paths: list[Path]) -> Schema:
    schema = Schema()
    for path in paths:
        text = re.sub(r"//[^\n]*", "", path.read_text())
        _Parser(_TOKEN.findall(text), schema).file()
    return schema


class _Parser:
    def __init__(self, tokens: list[str], schema: Schema) -> None:
        self.tokens = tokens
        self.at = 0
        self.schema = schema
        self.package = ""
        self.pending: list[tuple[str, str, Field]] = []  # (scope, written type, field), resolved at the end

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        self.at += 1
        assert expected is None or token == expected, f"expected {expected!r}, got {token!r}"
        return token

    def file(self) -> None:
        while self.at < len(self.tokens):
            word = self.take()
            if word in ("syntax", "import", "option"):
                while self.take() != ";":
                    pass
            elif word == "package":
                self.package = self.take()
                self.take(";")
            elif word == "service":
                self.service(self.take())
            elif word == "message":
                self.message(self.package)
            elif word == "enum":
                self.enum(self.package)
            else:
                raise AssertionError(f"unknown top-level {word!r}")
        for scope, written, field in self.pending:
            self.schema.messages[scope][field.json_name] = dataclasses.replace(
                field,
                type=self.resolve(scope, written),
                map_value=field.map_value and self.resolve(scope, field.map_value),
            )

    def resolve(self, scope: str, name: str) -> str:
        if name in _SCALARS or name == TIMESTAMP:
            return name
        while True:  # proto scoping: innermost first
            candidate = f"{scope}.{name}"
            if candidate in self.schema.messages or candidate in self.schema.enums:
                return candidate
            assert "." in scope, f"unknown type {name!r}"
            scope = scope.rsplit(".", 1)[0]

    def service(self, name: str) -> None:
        self.take("{")
        while self.take() != "}":  # "rpc"
            rpc = self.take()
            self.take("(")
            client = self.tokens[self.at] == "stream" and bool(self.take())
            request = self.take()
            self.take(")")
            self.take("returns")
            self.take("(")
            server = self.tokens[self.at] == "stream" and bool(self.take())
            response = self.take()
            self.take(")")
            self.take(";")
            path = f"/{self.package}.{name}/{rpc}"
            full = f"{self.package}."
            self.schema.rpcs[path] = Rpc(rpc, full + request, full + response, client, server)

    def enum(self, scope: str) -> None:
        name = f"{scope}.{self.take()}"
        self.take("{")
        values = set()
        while (token := self.take()) != "}":
            values.add(token)
            self.take("=")
            self.take()
            self.take(";")
        self.schema.enums[name] = values

    def message(self, scope: str, oneof: str | None = None, name: str | None = None) -> None:
        if name is None:
            name = f"{scope}.{self.take()}"
            self.schema.messages[name] = {}
        self.take("{")
        while (token := self.take()) != "}":
            if token == "message":
                self.message(name)
            elif token == "enum":
                self.enum(name)
            elif token == "oneof":
                self.message(scope, oneof=self.take(), name=name)
            else:
                self.field(name, token, oneof)

    def field(self, scope: str, token: str, oneof: str | None) -> None:
        repeated = token == "repeated"
        if token in ("repeated", "optional"):
            token = self.take()
        map_value = None
        if token == "map":
            self.take("<")
            assert self.take() == "string", "only map<string, V>"
            self.take(",")
            map_value = self.take()
            self.take(">")
            token = "string"
        field = Field(self.take(), token, repeated, map_value, oneof)
        self.take("=")
        self.take()
        self.take(";")
        self.pending.append((scope, token, field))

