"""YAML read with the position of every value, so an error can name its file, line and column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Location = tuple[int | str, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based, as editors count
    column: int


@dataclass(frozen=True)
class SourceError(Exception):
    """One problem in one file, at one place."""

    file: Path
    position: Position
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.position.line}:{self.position.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class Document:
    """A YAML document's plain value and where each part of it was written."""

    file: Path
    value: Any
    positions: dict[Location, Position] = field(default_factory=dict)
    key_positions: dict[Location, Position] = field(default_factory=dict)

    def error(
        self, location: Sequence[int | str], message: str, *, at_key: bool = False
    ) -> SourceError:
        """An error at the deepest written part of location (a missing key: its parent).

        With at_key, at the key rather than its value: where an unknown field is written.
        """
        written = tuple(location)
        if at_key and written in self.key_positions:
            return SourceError(self.file, self.key_positions[written], dotted(location), message)
        while written not in self.positions and written:
            written = written[:-1]
        position = self.positions.get(written, Position(1, 1))
        return SourceError(self.file, position, dotted(location), message)


def dotted(location: Sequence[int | str]) -> str:
    """('steps', 1, 'params') -> steps[1].params"""
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# libyaml's parser where PyYAML was built with it (its wheels are): the same nodes and marks,
# several times faster than the pure-Python one, which every load and reload would wait on.
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(file: Path) -> Document:
    """Parse one YAML document; raises SourceError on a syntax error or duplicate key."""
    text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        raise SourceError(file, position, "", f"YAML syntax error: {exc.problem}") from exc
    document = Document(file, None)
    if node is not None:
        document.value = _plain(node, (), document, yaml.SafeLoader(""))
    return document


def _plain(node: yaml.Node, location: Location, document: Document, loader: yaml.SafeLoader) -> Any:
    document.positions[location] = Position(node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if key in out:
                mark = key_node.start_mark
                raise SourceError(
                    document.file,
                    Position(mark.line + 1, mark.column + 1),
                    dotted(location),
                    f"duplicate key {key!r}",
                )
            mark = key_node.start_mark
            document.key_positions[(*location, key)] = Position(mark.line + 1, mark.column + 1)
            out[key] = _plain(value_node, (*location, key), document, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _plain(item, (*location, index), document, loader)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node)
