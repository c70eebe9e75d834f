"""Decoding of the Kubernetes protobuf bodies kubectl's imperative commands send
(``kubectl create namespace|configmap|secret|serviceaccount|job``). Only those kinds and
the fields those commands set: other protobuf bodies get 415. Field numbers are those of
k8s.io/api's generated.proto."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from llmbatch_sandbox.apiserver.errors import ApiError

JSON = dict[str, Any]
MAGIC = b"k8s\x00"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): ints for varints, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            if len(value) != length:
                raise ValueError("truncated field")
            pos += length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _map_entry(data: bytes, binary: bool = False) -> tuple[str, Any]:
    key = ""
    value: Any = b"" if binary else ""
    for number, _, raw in fields(data):
        if number == 1:
            key = raw.decode()
        elif number == 2:
            value = raw if binary else raw.decode()
    return key, value


def _object_meta(data: bytes) -> JSON:
    meta: JSON = {}
    names = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for number, _, raw in fields(data):
        if number in names and raw:
            meta[names[number]] = raw.decode()
        elif number in (11, 12):
            key, value = _map_entry(raw)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = value
        elif number == 14:
            meta.setdefault("finalizers", []).append(raw.decode())
    return meta


def _configmap(data: bytes) -> JSON:
    obj: JSON = {}
    for number, wire, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
        elif number == 2:
            key, value = _map_entry(raw)
            obj.setdefault("data", {})[key] = value
        elif number == 3:
            key, blob = _map_entry(raw, binary=True)
            obj.setdefault("binaryData", {})[key] = base64.b64encode(blob).decode()
        elif number == 4 and wire == 0:
            obj["immutable"] = bool(raw)
    return obj


def _secret(data: bytes) -> JSON:
    obj: JSON = {}
    for number, wire, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
        elif number == 2:
            key, blob = _map_entry(raw, binary=True)
            obj.setdefault("data", {})[key] = base64.b64encode(blob).decode()
        elif number == 3 and raw:
            obj["type"] = raw.decode()
        elif number == 4:
            key, value = _map_entry(raw)
            obj.setdefault("stringData", {})[key] = value
        elif number == 5 and wire == 0:
            obj["immutable"] = bool(raw)
    return obj


def _metadata_only(data: bytes) -> JSON:
    obj: JSON = {}
    for number, _, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
    return obj


def _container(data: bytes) -> JSON:
    out: JSON = {}
    strings = {1: "name", 2: "image", 5: "workingDir", 14: "imagePullPolicy"}
    for number, _, raw in fields(data):
        if number in strings and raw:
            out[strings[number]] = raw.decode()
        elif number in (3, 4):
            out.setdefault("command" if number == 3 else "args", []).append(raw.decode())
        elif number == 7:
            env: JSON = {}
            for sub, _, text in fields(raw):
                if sub in (1, 2):
                    env["name" if sub == 1 else "value"] = text.decode()
            out.setdefault("env", []).append(env)
    return out


def _pod_spec(data: bytes) -> JSON:
    spec: JSON = {}
    for number, wire, raw in fields(data):
        if number == 2:
            spec.setdefault("containers", []).append(_container(raw))
        elif number == 3 and raw:
            spec["restartPolicy"] = raw.decode()
        elif number in (4, 5) and wire == 0:
            spec["terminationGracePeriodSeconds" if number == 4 else "activeDeadlineSeconds"] = raw
        elif number == 7:
            key, value = _map_entry(raw)
            spec.setdefault("nodeSelector", {})[key] = value
        elif number == 8 and raw:
            spec["serviceAccountName"] = raw.decode()
    return spec


def _job(data: bytes) -> JSON:
    """What ``kubectl create job`` sends: counts, deadline, mode, suspend and the template."""
    obj: JSON = {}
    ints = {
        1: "parallelism",
        2: "completions",
        3: "activeDeadlineSeconds",
        7: "backoffLimit",
        8: "ttlSecondsAfterFinished",
    }
    for number, _, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
        elif number == 2:
            spec: JSON = {}
            for sub, wire, value in fields(raw):
                if sub in ints and wire == 0:
                    spec[ints[sub]] = value
                elif sub == 6:
                    template: JSON = {}
                    for part, _, inner in fields(value):
                        if part == 1:
                            template["metadata"] = _object_meta(inner)
                        elif part == 2:
                            template["spec"] = _pod_spec(inner)
                    spec["template"] = template
                elif sub == 9 and value:
                    spec["completionMode"] = value.decode()
                elif sub == 10 and wire == 0:
                    spec["suspend"] = bool(value)
            obj["spec"] = spec
    return obj


_DECODERS: dict[tuple[str, str], Callable[[bytes], JSON]] = {
    ("batch/v1", "Job"): _job,
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
    ("v1", "Namespace"): _metadata_only,
    ("v1", "ServiceAccount"): _metadata_only,
}


def decode(body: bytes) -> JSON:
    """The JSON form of a protobuf-encoded object, or 415 when it is not one we know."""
    unsupported = ApiError(
        415,
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml (protobuf only for Namespace, ConfigMap, Secret, "
        "ServiceAccount and Job)",
    )
    if not body.startswith(MAGIC):
        raise unsupported
    try:
        api_version = kind = ""
        raw = b""
        for number, _, value in fields(body[len(MAGIC) :]):
            if number == 1:
                for sub, _, text in fields(value):
                    if sub == 1:
                        api_version = text.decode()
                    elif sub == 2:
                        kind = text.decode()
            elif number == 2:
                raw = value
        decoder = _DECODERS.get((api_version, kind))
        if decoder is None:
            raise unsupported
        obj = decoder(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the protobuf body could not be decoded") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
