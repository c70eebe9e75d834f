"""A container's environment as the kubelet builds it: ``envFrom`` (Secrets, ConfigMaps), then
``env`` (literal values with ``$(VAR)`` expansion, ``secretKeyRef``, ``configMapKeyRef``,
``fieldRef``, ``resourceFieldRef``). A missing non-optional reference is a configuration error
that keeps the container from starting, with the kubelet's message."""

from __future__ import annotations

import base64
import re
from typing import Any

from llmbatch_sandbox.kubeapi import JsonObject, KubeApi, object_path

_VALID_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class EnvError(Exception):
    """A reference that cannot be resolved (Kubernetes: CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(NAME)`` expansion: defined names are replaced, ``$$`` escapes, undefined
    references stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2 : end]
                if name in env:
                    out.append(env[name])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


class EnvResolver:
    """Looks Secrets and ConfigMaps up through the API, like the kubelet does."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def _source(self, kind: str, namespace: str, name: str) -> JsonObject | None:
        plural = "secrets" if kind == "Secret" else "configmaps"
        return await self.api.get(object_path("v1", plural, namespace, name))

    async def _data(
        self, kind: str, namespace: str, name: str, optional: bool
    ) -> dict[str, str] | None:
        obj = await self._source(kind, namespace, name)
        if obj is None:
            if optional:
                return None
            raise EnvError(f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {
                key: base64.b64decode(value).decode("utf-8", "replace")
                for key, value in (obj.get("data") or {}).items()
            } | {str(k): str(v) for k, v in (obj.get("stringData") or {}).items()}
        data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value).decode("utf-8", "replace")
        return data

    async def resolve(
        self, pod: JsonObject, container: JsonObject, base: dict[str, str]
    ) -> dict[str, str]:
        """``base`` (the runtime's own variables) overlaid with the container's env."""
        namespace = str(pod["metadata"].get("namespace") or "default")
        env = dict(base)
        for source in container.get("envFrom") or []:
            prefix = str(source.get("prefix") or "")
            for kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                ref = source.get(field)
                if not ref:
                    continue
                data = await self._data(kind, namespace, ref["name"], bool(ref.get("optional")))
                for key, value in (data or {}).items():
                    if _VALID_NAME.match(prefix + key):
                        env[prefix + key] = value
        defined: dict[str, str] = {}
        for item in container.get("env") or []:
            name = str(item["name"])
            if "valueFrom" in item:
                found = await self._value_from(pod, container, item["valueFrom"], namespace)
                if found is None:
                    continue
                value = found
            else:
                value = expand(str(item.get("value") or ""), env | defined)
            defined[name] = value
        env.update(defined)
        return env

    async def _value_from(
        self, pod: JsonObject, container: JsonObject, source: JsonObject, namespace: str
    ) -> str | None:
        for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            ref = source.get(field)
            if not ref:
                continue
            optional = bool(ref.get("optional"))
            data = await self._data(kind, namespace, ref["name"], optional)
            if data is None:
                return None
            if ref["key"] not in data:
                if optional:
                    return None
                raise EnvError(
                    f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}"
                )
            return data[ref["key"]]
        if "fieldRef" in source:
            return field_value(pod, str(source["fieldRef"].get("fieldPath") or ""))
        if "resourceFieldRef" in source:
            resource = str(source["resourceFieldRef"].get("resource") or "")
            kind, _, name = resource.partition(".")
            value = ((container.get("resources") or {}).get(kind) or {}).get(name)
            return str(value) if value is not None else "0"
        raise EnvError(f"unsupported valueFrom: {sorted(source)}")


def field_value(pod: JsonObject, path: str) -> str:
    """The downward-API fields a pod may read through ``fieldRef``."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName") or "sandbox",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": status.get("hostIP") or "127.0.0.1",
        "status.podIP": status.get("podIP") or "127.0.0.1",
        "status.podIPs": status.get("podIP") or "127.0.0.1",
        "status.hostIPs": status.get("hostIP") or "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(values.items()))
    match = _FIELD_KEY.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2)) or "")
    raise EnvError(f"unsupported fieldRef fieldPath: {path}")
