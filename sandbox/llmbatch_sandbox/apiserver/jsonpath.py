"""The JSONPath subset additionalPrinterColumns use: ``.a.b``, ``['a.b']``, ``[0]``, ``[*]``
and filters such as ``[?(@.type=="Ready")]``."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.(?P<name>[A-Za-z0-9_\-$]+)"""
    r"""|\[(?P<quote>['"])(?P<qname>.*?)(?P=quote)\]"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[(?P<star>\*)\]"""
    r"""|\[\?\(@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<fop>==|!=)\s*(?P<fq>['"])(?P<fval>.*?)(?P=fq)\)\]"""
)


def find(obj: Any, path: str) -> list[Any]:
    """Every value ``path`` selects in ``obj`` (an empty list when nothing matches)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    nodes = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        nodes = _step(nodes, m)
    return nodes


def _step(nodes: list[Any], m: re.Match[str]) -> list[Any]:
    out: list[Any] = []
    for node in nodes:
        name = m.group("name") or m.group("qname")
        if name is not None:
            if isinstance(node, dict) and name in node:
                out.append(node[name])
        elif m.group("index") is not None:
            i = int(m.group("index"))
            if isinstance(node, list) and -len(node) <= i < len(node):
                out.append(node[i])
        elif m.group("star"):
            if isinstance(node, list):
                out.extend(node)
            elif isinstance(node, dict):
                out.extend(node.values())
        elif m.group("fpath") and isinstance(node, list):
            for item in node:
                value: Any = item
                for part in m.group("fpath").split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                equal = str(value) == m.group("fval") if value is not None else False
                if equal == (m.group("fop") == "=="):
                    out.append(item)
    return out
