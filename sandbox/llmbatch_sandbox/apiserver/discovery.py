"""Discovery documents (/api, /apis, group and group/version resource lists), /version and
the OpenAPI endpoints. OpenAPI is served empty: kubectl then falls back to its compiled-in
types for strategic merge patches and skips client-side schema validation (the server
validates), which is what ``kubectl apply`` needs."""

from __future__ import annotations

from typing import Any

from llmbatch_sandbox.apiserver.resources import Registry, ResourceType

JSON = dict[str, Any]

VERSION_INFO: JSON = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0-llmbatch-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# gnostic's openapi_v2.Document, protobuf-encoded with no fields set, is zero bytes.
OPENAPI_V2_PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> JSON:
    groups = [_group(g, vs) for g, vs in registry.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> JSON | None:
    versions = registry.group_versions().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _resource_entry(rt: ResourceType) -> list[JSON]:
    main: JSON = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for sub in sorted(rt.subresources):
        verbs = {"log": ["get"], "finalize": ["update"], "binding": ["create"]}.get(
            sub, ["get", "patch", "update"]
        )
        out.append(
            {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": verbs,
            }
        )
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    types = registry.resources_in(group, version)
    if not types:
        return None
    resources = [entry for rt in types for entry in _resource_entry(rt)]
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def openapi_v2_json() -> JSON:
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": {},
        "definitions": {},
    }


def openapi_v3_root(registry: Registry) -> JSON:
    """Group-versions with a published schema: those of CRDs (``kubectl explain`` reads them).
    Built-in groups are absent, so kubectl uses its compiled-in types for them."""
    paths = {}
    for rt in registry.all():
        if rt.custom and rt.schema is not None:
            key = f"apis/{rt.group}/{rt.version}"
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={_hash(registry, key)}"}
    return {"paths": paths}


def _hash(registry: Registry, key: str) -> str:
    import hashlib
    import json

    doc = openapi_v3_group_version(registry, key) or {}
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()


def openapi_v3_group_version(registry: Registry, key: str) -> JSON | None:
    """The OpenAPI v3 document of one CRD group-version: component schemas only, no paths
    (so kubectl neither expects server-side field validation nor strategic patches)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "apis":
        return None
    group, version = parts[1], parts[2]
    schemas: JSON = {}
    paths: JSON = {}
    for rt in registry.resources_in(group, version):
        if not rt.custom or rt.schema is None:
            continue
        reversed_group = ".".join(reversed(group.split(".")))
        gvk = {"group": group, "kind": rt.kind, "version": version}
        schema = dict(rt.schema)
        schema["x-kubernetes-group-version-kind"] = [gvk]
        name = f"{reversed_group}.{version}.{rt.kind}"
        schemas[name] = schema
        # Read-only operations only: kubectl explain finds the kind through them.
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        response = {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        }
        paths[f"/apis/{group}/{version}{scope}/{rt.plural}/{{name}}"] = {
            "get": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "get",
                "responses": response,
            },
        }
    if not schemas:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
