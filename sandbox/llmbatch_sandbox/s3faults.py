"""A fault-injecting reverse proxy for an S3 endpoint, for tests and chaos runs.

Clients point their endpoint at the proxy; it forwards each request unchanged (Host header
included, so SigV4 signatures still match behind it) and, on a seeded schedule, answers with
one of the faults real object stores produce instead:

- ``error_500``: 500 InternalError, request not forwarded;
- ``slow_down``: 503 SlowDown (throttling), request not forwarded;
- ``reset_before``: the connection is reset before the request is forwarded;
- ``reset_after``: the request is forwarded and done, then the connection is reset before the
  answer (the nastiest case: the client cannot tell whether it happened);
- ``reset_mid_body``: status and headers are sent, then part of the body, then a reset;
- ``slow``: the answer is delayed.

Rates are per HTTP verb. Counters of what was injected are kept (``counts``) and served as JSON
at ``GET /__faults__`` (no S3 bucket can be named that). For trying and testing only.

    python -m llmbatch_sandbox.s3faults --upstream http://127.0.0.1:9000 --rate 0.15 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import NoReturn

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

KINDS = ("error_500", "slow_down", "reset_before", "reset_after", "reset_mid_body", "slow")
STATS_PATH = "/__faults__"
# Headers that belong to one connection, not to the request; Expect is answered by this hop.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault for one request (their sum must stay <= 1)."""

    error_500: float = 0.0
    slow_down: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    reset_mid_body: float = 0.0
    slow: float = 0.0

    @classmethod
    def spread(cls, rate: float, kinds: tuple[str, ...] = KINDS) -> FaultRates:
        """`rate` in total, shared evenly among `kinds`."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        share = rate / len(kinds) if kinds else 0.0
        return cls(**{kind: share for kind in kinds})

    @property
    def total(self) -> float:
        return sum(float(getattr(self, item.name)) for item in fields(self))


@dataclass
class FaultConfig:
    """What to inject: rates per verb ("*" for verbs not listed), a seed, the slow delay."""

    rates: Mapping[str, FaultRates] = field(default_factory=dict)
    seed: int = 0
    slow_delay: tuple[float, float] = (0.05, 0.3)
    # Only this many faults in a row per verb; then one request goes through. Keeps a high
    # fault rate from exhausting a client's attempts by bad luck alone, like a real, flaky
    # but working endpoint.
    max_consecutive: int = 3

    def __post_init__(self) -> None:
        for verb, rates in self.rates.items():
            if rates.total > 1.0:
                raise ValueError(f"fault rates for {verb} add up to more than 1")

    @classmethod
    def uniform(
        cls,
        rate: float,
        seed: int = 0,
        verbs: tuple[str, ...] = ("GET", "PUT", "POST", "HEAD", "DELETE"),
        kinds: tuple[str, ...] = KINDS,
    ) -> FaultConfig:
        return cls(rates={verb: FaultRates.spread(rate, kinds) for verb in verbs}, seed=seed)

    def for_verb(self, verb: str) -> FaultRates:
        return self.rates.get(verb) or self.rates.get("*") or FaultRates()


class S3FaultProxy:
    """The proxy. ``await start()`` returns its base URL; ``await stop()`` shuts it down."""

    def __init__(
        self, upstream: str, config: FaultConfig, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.config = config
        self.host = host
        self.port = port
        self.url = ""
        # Faults injected, by kind and by "VERB kind"; "requests" counts every proxied request.
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(config.seed)
        self._streak: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def injected(self) -> int:
        return sum(self.counts[kind] for kind in KINDS)

    async def start(self) -> str:
        # Parts of multipart uploads are 5 MiB and more.
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("GET", STATS_PATH, self._stats)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = ClientSession(
            connector=TCPConnector(limit=64),
            timeout=ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        # With port 0 the OS picked one; the runner knows which.
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # The schedule ------------------------------------------------------------------------

    def _decide(self, verb: str) -> str | None:
        rates = self.config.for_verb(verb)
        draw = self._rng.random()
        if self._streak[verb] >= self.config.max_consecutive:
            self._streak[verb] = 0
            return None
        threshold = 0.0
        for kind in KINDS:
            threshold += getattr(rates, kind)
            if draw < threshold:
                self._streak[verb] += 1
                return kind
        self._streak[verb] = 0
        return None

    def _count(self, verb: str, kind: str) -> None:
        self.counts[kind] += 1
        self.counts[f"{verb} {kind}"] += 1

    # Handlers ----------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.counts))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        verb = request.method
        self.counts["requests"] += 1
        kind = self._decide(verb)
        body = await request.read()
        if kind in ("error_500", "slow_down"):
            self._count(verb, kind)
            return _s3_error(kind, verb, self.counts["requests"])
        if kind == "reset_before":
            self._count(verb, kind)
            return _reset(request)
        if kind == "slow":
            self._count(verb, kind)
            await asyncio.sleep(self._rng.uniform(*self.config.slow_delay))
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            verb,
            self.upstream + request.raw_path,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        ) as upstream:
            if kind == "reset_after":
                await upstream.read()
                self._count(verb, kind)
                return _reset(request)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() not in ("server", "date"):
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            cut: int | None = None
            if kind == "reset_mid_body":
                length = upstream.content_length or 0
                if verb == "HEAD" or length < 2:
                    # No body to cut: the answer is lost after the request was done.
                    await upstream.read()
                    self._count(verb, "reset_after")
                    return _reset(request)
                cut = self._rng.randint(1, length - 1)
            await response.prepare(request)
            sent = 0
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                if cut is not None and sent + len(chunk) >= cut:
                    await response.write(chunk[: cut - sent])
                    await _drain(request)
                    self._count(verb, "reset_mid_body")
                    return _reset(request)
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response


def _s3_error(kind: str, verb: str, request_number: int) -> web.Response:
    status, code, message = (
        (503, "SlowDown", "Please reduce your request rate.")
        if kind == "slow_down"
        else (500, "InternalError", "We encountered an internal error. Please try again.")
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>fault-{request_number}</RequestId></Error>"
    )
    if verb == "HEAD":
        return web.Response(status=status)
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


async def _drain(request: web.Request) -> None:
    # Give the partial body a moment to leave before the reset discards the send buffer.
    transport = request.transport
    if transport is not None and transport.get_write_buffer_size() > 0:
        await asyncio.sleep(0.01)


class _Reset(web.HTTPException):
    """Raised after the transport was aborted; aiohttp has nothing left to send."""

    status_code = 500


def _reset(request: web.Request) -> NoReturn:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close with RST, as a crashed peer or a load balancer would.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise _Reset()


# Running it --------------------------------------------------------------------------------


class ProxyThread:
    """The proxy on its own event loop in a daemon thread, for synchronous tests and tools."""

    def __init__(self, upstream: str, config: FaultConfig, host: str = "127.0.0.1") -> None:
        self.proxy = S3FaultProxy(upstream, config, host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def counts(self) -> Counter[str]:
        return self.proxy.counts

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


@contextlib.contextmanager
def running_proxy(upstream: str, config: FaultConfig) -> Iterator[ProxyThread]:
    handle = ProxyThread(upstream, config)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="S3 endpoint URL to put faults before")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.1, help="fault rate per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbs", default="GET,PUT,POST,HEAD,DELETE")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args(argv)
    config = FaultConfig.uniform(
        args.rate,
        seed=args.seed,
        verbs=tuple(v for v in args.verbs.split(",") if v),
        kinds=tuple(k for k in args.kinds.split(",") if k),
    )
    asyncio.run(_serve(args.upstream, config, args.host, args.port))


async def _serve(upstream: str, config: FaultConfig, host: str, port: int) -> None:
    proxy = S3FaultProxy(upstream, config, host, port)
    url = await proxy.start()
    print(f"S3_FAULT_PROXY={url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await proxy.stop()
        print(json.dumps(dict(proxy.counts), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
