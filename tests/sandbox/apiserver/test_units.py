"""Pure parts of the emulator: selectors, patches, JSONPath, schemas, durations."""

from __future__ import annotations

from typing import Any

import pytest

from llmbatch_sandbox.apiserver import cel, jsonpath, patch, schema, selectors, tables
from llmbatch_sandbox.apiserver.errors import ApiError


def test_label_selector_parsing() -> None:
    reqs = selectors.parse_label_selector("a=1, b!=2,c in (x, y),d notin (z),e,!f")
    assert [(r.key, r.op, r.values) for r in reqs] == [
        ("a", "=", ("1",)),
        ("b", "!=", ("2",)),
        ("c", "in", ("x", "y")),
        ("d", "notin", ("z",)),
        ("e", "exists", ()),
        ("f", "!exists", ()),
    ]
    match = selectors.make_filter(None, "a=1,c in (x),!f", None)
    assert match.matches({"metadata": {"labels": {"a": "1", "c": "x"}}})
    assert not match.matches({"metadata": {"labels": {"a": "1", "c": "x", "f": ""}}})
    with pytest.raises(ApiError):
        selectors.parse_label_selector("a in b")


def test_match_labels_and_expressions() -> None:
    reqs = selectors.selector_from_match(
        {
            "matchLabels": {"app": "x"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
        }
    )
    flt = selectors.Filter(None, tuple(reqs))
    assert flt.matches({"metadata": {"labels": {"app": "x", "tier": "b"}}})
    assert not flt.matches({"metadata": {"labels": {"app": "x"}}})


def test_strategic_merge_directives() -> None:
    target = {
        "spec": {
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}],
            "tolerations": [{"key": "k"}],
        },
        "metadata": {"finalizers": ["x"], "labels": {"l": "1", "m": "2"}},
    }
    result = patch.strategic_merge_patch(
        target,
        {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "spec": {
                "containers": [{"name": "b", "image": "3"}],
                "tolerations": [{"key": "j"}],
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            },
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "labels": {"m": None}},
        },
    )
    assert [c["name"] for c in result["spec"]["containers"]] == ["b", "a"]
    assert result["spec"]["containers"][0]["image"] == "3"
    assert result["spec"]["tolerations"] == [{"key": "j"}]  # no merge key: replaced
    assert result["metadata"] == {"finalizers": [], "labels": {"l": "1"}}
    replaced = patch.strategic_merge_patch(target, {"spec": {"$patch": "replace", "x": 1}})
    assert replaced["spec"] == {"x": 1}
    retained = patch.strategic_merge_patch(
        {"s": {"a": 1, "b": 2}}, {"s": {"$retainKeys": ["a", "c"], "c": 3}}
    )
    assert retained == {"s": {"a": 1, "c": 3}}


def test_json_patch_ops() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = patch.json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "move", "from": "/b/c", "path": "/d"},
            {"op": "copy", "from": "/a", "path": "/e"},
            {"op": "add", "path": "/x~1y", "value": True},
        ],
    )
    assert out == {"a": [1, 2, 3], "b": {}, "d": 1, "e": [1, 2, 3], "x/y": True}
    assert doc == {"a": [1, 2], "b": {"c": 1}}
    with pytest.raises(ApiError) as exc:
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert exc.value.code == 422
    with pytest.raises(ApiError) as exc:
        patch.json_patch(doc, {"op": "add"})
    assert exc.value.code == 400


def test_jsonpath_subset() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]
        },
        "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
    }
    assert jsonpath.find(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath.find(obj, ".status.conditions[0].type") == ["A"]
    assert jsonpath.find(obj, ".metadata.labels['app.kubernetes.io/name']") == ["x"]
    assert jsonpath.find(obj, ".status.missing") == []


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (192, "3m12s"),
        (1020, "17m"),
        (18180, "5h3m"),
        (72000, "20h"),
        (273600, "3d4h"),
        (1036800, "12d"),
        (800 * 86400, "2y"),
    ],
)
def test_human_duration(seconds: int, shown: str) -> None:
    assert tables.human_duration(seconds) == shown


def test_prune_default_validate_order() -> None:
    s: dict[str, Any] = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "default": 0, "minimum": 1},
                    "keep": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "opt": {"type": "string"},
                },
            }
        },
    }
    obj = schema.prune(
        {
            "apiVersion": "v",
            "kind": "K",
            "metadata": {"name": "x"},
            "spec": {"extra": 1, "keep": {"z": 1}, "opt": None},
        },
        s,
        root=True,
    )
    assert obj["spec"] == {"keep": {"z": 1}}
    obj = schema.apply_defaults(obj, s)
    errors = schema.validate(obj, s)
    assert [e.render() for e in errors] == [
        "spec.n: Invalid value: 0: spec.n in body should be greater than or equal to 1"
    ]


def test_cel_rules_and_transition_rules() -> None:
    s = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self.a <= self.b", "message": "a above b"}],
                "properties": {
                    "a": {"type": "integer"},
                    "b": {"type": "integer"},
                    "fixed": {
                        "type": "string",
                        "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "fixed is immutable"}
                        ],
                    },
                },
            }
        },
    }
    assert cel.check({"spec": {"a": 1, "b": 2, "fixed": "x"}}, s) == []
    errors = cel.check({"spec": {"a": 3, "b": 2}}, s)
    assert [e.render() for e in errors] == ['spec: Invalid value: "object": a above b']
    old = {"spec": {"a": 1, "b": 2, "fixed": "x"}}
    errors = cel.check({"spec": {"a": 1, "b": 2, "fixed": "y"}}, s, old)
    assert [e.render() for e in errors] == [
        'spec.fixed: Invalid value: "string": fixed is immutable'
    ]
