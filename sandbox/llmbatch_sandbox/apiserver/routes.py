"""The HTTP surface: URL parsing, verbs, query parameters, bodies, content negotiation
(JSON or Table) and error responses. Every failure is answered as a ``v1 Status``."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from llmbatch_sandbox.apiserver import discovery, protobuf, reviews, tables
from llmbatch_sandbox.apiserver.admin import serve_admin
from llmbatch_sandbox.apiserver.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    unknown_resource,
)
from llmbatch_sandbox.apiserver.objects import WARN_UNKNOWN_FIELDS, WARNINGS
from llmbatch_sandbox.apiserver.patch import APPLY
from llmbatch_sandbox.apiserver.podlogs import serve_log
from llmbatch_sandbox.apiserver.resources import ResourceType
from llmbatch_sandbox.apiserver.responses import error_response, flag, int_param, json_response
from llmbatch_sandbox.apiserver.selectors import make_filter
from llmbatch_sandbox.apiserver.watch import WatchRequest, WatchStream

if TYPE_CHECKING:
    from llmbatch_sandbox.apiserver.server import ApiServer

JSON = dict[str, Any]
log = logging.getLogger(__name__)

_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass
class Target:
    """A parsed resource URL."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None
    watch_path: bool

    @property
    def resource(self) -> str:
        return f"{self.rt.plural}/{self.sub}" if self.sub else self.rt.plural


class Routes:
    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.objects = server.objects
        self.registry = server.registry

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.query.get("fieldValidation", "Warn").lower()
        warnings: list[str] = []
        token = WARNINGS.set(warnings)
        mode_token = WARN_UNKNOWN_FIELDS.set(mode == "warn")
        try:
            response = await self._dispatch(request)
        except ApiError as exc:
            return error_response(exc)
        except RecursionError:
            return error_response(bad_request("the request body is nested too deeply"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: still answer as the API would, and log it
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(ApiError(500, f"internal error: {exc}"))
        finally:
            WARNINGS.reset(token)
            WARN_UNKNOWN_FIELDS.reset(mode_token)
        if warnings and not response.prepared:
            for text in warnings:
                escaped = text.replace("\\", "\\\\").replace('"', '\\"')
                response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    # -- dispatch --------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return json_response(
                {
                    "paths": [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/openapi/v2",
                        "/openapi/v3",
                        "/version",
                        "/healthz",
                    ]
                }
            )
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "version":
            return json_response(discovery.VERSION_INFO)
        if head == "openapi":
            return self._openapi(request, parts)
        if head == "sandbox":
            return await serve_admin(self.server, request, parts[1:], self._body)
        if head == "api":
            if len(parts) == 1:
                return json_response(discovery.api_versions(request.host))
            return await self._group_version(request, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return json_response(discovery.api_group_list(self.registry))
            if len(parts) == 2:
                group = discovery.api_group(self.registry, parts[1])
                if group is None:
                    raise unknown_resource()
                return json_response(group)
            return await self._group_version(request, parts[1], parts[2], parts[3:])
        raise unknown_resource()

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts[1:] == ["v2"]:
            if "protobuf" in request.headers.get("Accept", ""):
                return web.Response(body=b"", content_type=discovery.OPENAPI_V2_PROTOBUF_TYPE)
            return json_response(discovery.openapi_v2_json())
        if parts[1:] == ["v3"]:
            return json_response(discovery.openapi_v3_root(self.registry))
        if len(parts) > 2 and parts[1] == "v3":
            doc = discovery.openapi_v3_group_version(self.registry, "/".join(parts[2:]))
            if doc is not None:
                return json_response(doc)
        raise unknown_resource()

    async def _group_version(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        if not rest:
            doc = discovery.api_resource_list(self.registry, group, version)
            if doc is None:
                raise unknown_resource()
            return json_response(doc)
        target = self._parse(group, version, rest)
        return await self._resource(request, target)

    def _parse(self, group: str, version: str, rest: list[str]) -> Target:
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES)
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise unknown_resource()
        rt = self.registry.lookup(group, version, rest[0])
        if rt is None:
            raise unknown_resource()
        if namespace is not None and not rt.namespaced:
            raise unknown_resource()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise unknown_resource()
        return Target(rt, namespace, name, sub, watch_path)

    async def _resource(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        query = request.query
        ns = t.namespace or ""
        if t.rt.namespaced and t.name is not None and t.namespace is None:
            raise unknown_resource()
        watching = t.watch_path or flag(query.get("watch"))
        verb = {
            "GET": "watch" if watching else ("get" if t.name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection",
        }.get(method)
        if verb is None:
            raise method_not_allowed()
        if t.name is None and verb in ("update", "patch"):
            raise method_not_allowed()
        if t.name is not None and verb == "create" and t.sub != "binding":
            raise method_not_allowed()
        if t.sub == "binding" and verb != "create":
            raise method_not_allowed()
        if t.sub in ("log",) and verb != "get":
            raise method_not_allowed()
        if t.sub == "finalize" and verb != "update":
            raise method_not_allowed()
        fault = self.server.faults.take(verb, t.resource, t.namespace, t.name)
        if fault is not None and fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.code and not (verb == "watch" and fault.code == 410):
            raise fault.error()
        dry_run = bool(query.get("dryRun"))
        strict = query.get("fieldValidation", "").lower() == "strict"
        accept = request.headers.get("Accept", "")
        if t.rt.extra.get("review"):
            if verb != "create":
                raise method_not_allowed()
            if "protobuf" in request.headers.get("Content-Type", ""):
                # kubectl sends reviews as protobuf; the answer does not depend on the body.
                return json_response(reviews.review(t.rt, {}), 201)
            return json_response(reviews.review(t.rt, await self._body(request)), 201)
        if verb == "get":
            if t.sub == "log":
                return await serve_log(self.server, request, t.rt, ns, str(t.name))
            obj = self.objects.get(t.rt, ns, str(t.name))
            if tables.wants_table(accept):
                return json_response(
                    tables.table(
                        t.rt,
                        [obj],
                        query.get("includeObject", ""),
                        {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                    )
                )
            return json_response(obj)
        if verb == "list":
            flt = make_filter(t.namespace, query.get("labelSelector"), query.get("fieldSelector"))
            items, meta = self.objects.list_objects(
                t.rt, flt, int_param(query, "limit"), query.get("continue")
            )
            if tables.wants_table(accept):
                return json_response(
                    tables.table(t.rt, items, query.get("includeObject", ""), meta)
                )
            kind = str(t.rt.extra.get("listKind") or f"{t.rt.kind}List")
            return json_response(
                {"kind": kind, "apiVersion": t.rt.api_version, "metadata": meta, "items": items}
            )
        if verb == "watch":
            return await self._watch(
                request, t, forced_gone=fault is not None and fault.code == 410
            )
        if verb == "create" and t.sub == "binding":
            return json_response(
                self.objects.bind(t.rt, ns, str(t.name), await self._body(request)), 201
            )
        if verb == "create":
            body = await self._body(request)
            obj = self.objects.create(t.rt, ns, body, dry_run, strict)
            return json_response(obj, 201)
        if verb == "update":
            body = await self._body(request)
            sub = "status" if t.sub == "status" else None
            if t.sub == "finalize":
                return json_response(self._finalize_namespace(t, body))
            return json_response(
                self.objects.replace(t.rt, ns, str(t.name), body, sub, dry_run, strict)
            )
        if verb == "patch":
            body = await self._body(request, allow_list=True)
            sub = "status" if t.sub == "status" else None
            content_type = request.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip().lower() == APPLY:
                if not request.query.get("fieldManager"):
                    raise bad_request("PATCH with an apply patch requires a fieldManager")
                obj, created = self.objects.apply(t.rt, ns, str(t.name), body, sub, dry_run, strict)
                return json_response(obj, 201 if created else 200)
            return json_response(
                self.objects.patch(t.rt, ns, str(t.name), content_type, body, sub, dry_run, strict)
            )
        options = await self._delete_options(request)
        if verb == "delete":
            return json_response(self.objects.delete(t.rt, ns, str(t.name), options, dry_run))
        flt = make_filter(t.namespace, query.get("labelSelector"), query.get("fieldSelector"))
        return json_response(self.objects.delete_collection(t.rt, flt, options))

    # -- bodies ----------------------------------------------------------------------------
    async def _body(self, request: web.Request, allow_list: bool = False) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise bad_request("the request body is empty")
        content_type = request.headers.get("Content-Type", "").lower()
        if "protobuf" in content_type:
            return protobuf.decode(raw)
        if "cbor" in content_type:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                f"include: application/json, application/yaml (got {content_type})",
            )
        try:
            value = yaml.safe_load(raw) if "yaml" in content_type else json.loads(raw)
        except (ValueError, RecursionError, yaml.YAMLError) as exc:
            raise bad_request(f"couldn't decode the request body: {exc}") from None
        if isinstance(value, dict) or (allow_list and isinstance(value, list)):
            return value
        raise bad_request("the request body must be an object")

    async def _delete_options(self, request: web.Request) -> JSON:
        options: JSON = {}
        raw = await request.read()
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise bad_request(f"couldn't decode DeleteOptions: {exc}") from None
            if not isinstance(parsed, dict):
                raise bad_request("DeleteOptions must be an object")
            options.update(parsed)
        query = request.query
        if query.get("propagationPolicy"):
            options["propagationPolicy"] = query["propagationPolicy"]
        if query.get("gracePeriodSeconds"):
            options["gracePeriodSeconds"] = int_param(query, "gracePeriodSeconds")
        if query.get("orphanDependents"):
            options["orphanDependents"] = flag(query["orphanDependents"])
        return options

    def _finalize_namespace(self, t: Target, body: JSON) -> JSON:
        finalizers = (body.get("spec") or {}).get("finalizers") or []
        current = self.objects.get(t.rt, "", str(t.name))
        patch = {"spec": {"finalizers": finalizers}}
        return self.objects.patch(
            t.rt,
            "",
            str(t.name),
            "application/merge-patch+json",
            {**patch, "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}},
            None,
        )

    # -- watch -----------------------------------------------------------------------------
    async def _watch(
        self, request: web.Request, t: Target, forced_gone: bool
    ) -> web.StreamResponse:
        query = request.query
        flt = make_filter(t.namespace, query.get("labelSelector"), query.get("fieldSelector"))
        if t.name:
            flt = make_filter(
                t.namespace,
                query.get("labelSelector"),
                ",".join(filter(None, [query.get("fieldSelector"), f"metadata.name={t.name}"])),
            )
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        rt = t.rt
        include = query.get("includeObject", "")

        def render(obj: JSON) -> JSON:
            shown = self.objects.render(rt, obj)
            if as_table:
                return tables.table(
                    rt,
                    [shown],
                    include,
                    {"resourceVersion": shown["metadata"].get("resourceVersion", "")},
                )
            return shown

        timeout = int_param(query, "timeoutSeconds")
        resource_version = query.get("resourceVersion")
        if forced_gone:
            resource_version = "1"
            self.server.store.compact()
        watch = WatchStream(
            self.server.store,
            WatchRequest(
                rt,
                flt,
                resource_version,
                float(timeout) if timeout is not None else None,
                flag(query.get("allowWatchBookmarks")),
                flag(query.get("sendInitialEvents")),
                render,
            ),
            self.server.bookmark_interval,
        )
        self.server.watches.add(watch)
        try:
            return await watch.serve(request)
        finally:
            self.server.watches.discard(watch)
