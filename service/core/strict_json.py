"""JSON parsing that refuses duplicate object keys (request bodies and token segments).

The standard library keeps the last of two equal keys, so `"immediate_risk": true,
"immediate_risk": false` reads as false: a sender (or anything between it and us) could make
what one reader sees differ from what another sees. Refusing is the only unambiguous answer.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeys(ValueError):
    """The document repeats a key in some object; `paths` name each repeat, never a value."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__("duplicate keys")
        self.paths = paths


class _Repeated(Exception):
    """Raised from inside the parser on the first repeat; the paths are worked out after."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The fast path: one dict() and a length comparison per object, in the parser's own pass.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Repeated
    return result


def loads_unique(data: str | bytes) -> Any:
    """`json.loads`, except that a repeated key anywhere raises DuplicateKeys.

    Malformed JSON raises json.JSONDecodeError as usual.
    """
    try:
        return json.loads(data, object_pairs_hook=_unique_object)
    except _Repeated:
        pass
    # Only a refused document pays for a second parse, which keeps every pair in order so the
    # repeats can be named by their place in the document.
    return _raise_with_paths(json.loads(data, object_pairs_hook=_Pairs))


class _Pairs(list[tuple[str, Any]]):
    """An object as its (key, value) pairs, in document order."""


def _raise_with_paths(document: Any) -> Any:
    paths: list[str] = []
    # An explicit stack, not recursion: the document may be as deep as the parser allowed.
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, node = stack.pop()
        children: list[tuple[str, Any]] = []
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, value in node:
                child = f"{path}.{key}" if path else key
                if key in seen:
                    paths.append(child)
                seen.add(key)
                children.append((child, value))
        elif isinstance(node, list):
            children = [(f"{path}[{index}]", value) for index, value in enumerate(node)]
        stack.extend(reversed(children))
    raise DuplicateKeys(list(dict.fromkeys(paths)))
