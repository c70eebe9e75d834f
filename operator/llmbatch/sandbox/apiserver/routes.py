"""The HTTP surface: URL parsing, verbs, query parameters, bodies, content negotiation
(JSON or Table) and error responses. Every failure is answered as a ``v1 Status``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from llmbatch.sandbox.apiserver import discovery, logs, protobuf, tables
from llmbatch.sandbox.apiserver.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    unknown_resource,
)
from llmbatch.sandbox.apiserver.objects import FIELD_WARNINGS
from llmbatch.sandbox.apiserver.patch import APPLY
from llmbatch.sandbox.apiserver.resources import ResourceType
from llmbatch.sandbox.apiserver.selectors import make_filter
from llmbatch.sandbox.apiserver.watch import WatchRequest, WatchStream

if TYPE_CHECKING:
    from llmbatch.sandbox.apiserver.server import ApiServer

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


def json_response(body: JSON, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(exc: ApiError) -> web.Response:
    response = json_response(exc.status(), exc.code)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _int(query: Any, key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid value for {key}: {value!r}") from None


class Routes:
    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.objects = server.objects
        self.registry = server.registry

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.query.get("fieldValidation", "Warn").lower()
        warnings: list[str] | None = [] if mode == "warn" else None
        token = FIELD_WARNINGS.set(warnings)
        try:
            response = await self._dispatch(request)
        except ApiError as exc:
            return error_response(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: still answer as the API would, and log it
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(ApiError(500, f"internal error: {exc}"))
        finally:
            FIELD_WARNINGS.reset(token)
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
            return await self._admin(request, parts[1:])
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
        watching = t.watch_path or _flag(query.get("watch"))
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
        if verb == "get":
            if t.sub == "log":
                return await self._log(request, t)
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
                t.rt, flt, _int(query, "limit"), query.get("continue")
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
        except (ValueError, yaml.YAMLError) as exc:
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
            except ValueError as exc:
                raise bad_request(f"couldn't decode DeleteOptions: {exc}") from None
            if not isinstance(parsed, dict):
                raise bad_request("DeleteOptions must be an object")
            options.update(parsed)
        query = request.query
        if query.get("propagationPolicy"):
            options["propagationPolicy"] = query["propagationPolicy"]
        if query.get("gracePeriodSeconds"):
            options["gracePeriodSeconds"] = _int(query, "gracePeriodSeconds")
        if query.get("orphanDependents"):
            options["orphanDependents"] = _flag(query["orphanDependents"])
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

        timeout = _int(query, "timeoutSeconds")
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
                _flag(query.get("allowWatchBookmarks")),
                _flag(query.get("sendInitialEvents")),
                render,
            ),
            self.server.bookmark_interval,
        )
        self.server.watches.add(watch)
        try:
            return await watch.serve(request)
        finally:
            self.server.watches.discard(watch)

    # -- logs ------------------------------------------------------------------------------
    async def _log(self, request: web.Request, t: Target) -> web.StreamResponse:
        ns, name = t.namespace or "", str(t.name)
        pod = self.objects.get(t.rt, ns, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one "
                    f"of: [{' '.join(map(str, containers))}]"
                )
            container = str(containers[0])
        elif container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        store: logs.PodLogs = self.server.logs
        data = store.read(ns, name, container)
        lines, limit = _int(request.query, "tailLines"), _int(request.query, "limitBytes")
        if not _flag(request.query.get("follow")):
            return web.Response(body=logs.tail(data, lines, limit), content_type="text/plain")
        return await self._follow(request, t, container, logs.tail(data, lines, None))

    async def _follow(
        self, request: web.Request, t: Target, container: str, initial: bytes
    ) -> web.StreamResponse:
        ns, name = t.namespace or "", str(t.name)
        response = web.StreamResponse()
        response.content_type = "text/plain"
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(initial)
        done = asyncio.Event()
        sub = self.server.store.subscribe(t.rt.storage)

        def finished(obj: JSON | None) -> bool:
            return obj is None or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")

        async def watch_pod() -> None:
            while True:
                change = await sub.queue.get()
                if change is None:
                    break
                md = change.obj["metadata"]
                if (md.get("namespace"), md.get("name")) == (ns, name) and (
                    change.type == "DELETED" or finished(change.obj)
                ):
                    break
            done.set()

        watcher = asyncio.ensure_future(watch_pod())
        self.server.log_followers.add(sub)
        try:
            if finished(self.server.store.get(t.rt.storage, ns, name)):
                done.set()
            offset = len(self.server.logs.read(ns, name, container))
            async for chunk in self.server.logs.follow(ns, name, container, offset, done):
                await response.write(chunk)
        except ConnectionResetError:
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.server.store.unsubscribe(sub)
            self.server.log_followers.discard(sub)
        return response

    # -- sandbox admin (fault injection, log appends from another process) -----------------
    async def _admin(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        server = self.server
        if parts == ["faults"] and request.method == "POST":
            body = await self._body(request)
            fault = server.faults.from_json(body)
            return json_response({"code": fault.code, "times": fault.times}, 201)
        if parts == ["faults"] and request.method == "DELETE":
            server.faults.clear()
            return json_response({})
        if parts == ["close-watches"] and request.method == "POST":
            return json_response({"closed": server.close_watches(request.query.get("resource"))})
        if parts == ["expire-history"] and request.method == "POST":
            server.expire_history()
            return json_response({})
        if len(parts) == 4 and parts[0] == "logs" and request.method == "POST":
            server.append_pod_log(parts[1], parts[2], await request.read(), container=parts[3])
            return json_response({})
        raise unknown_resource()
