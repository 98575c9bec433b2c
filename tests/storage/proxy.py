"""A reverse proxy on 127.0.0.1 in front of an S3 server that can fail, delay or hold chosen requests.

Each request is matched against the rules in order; the first rule whose method and path match
decides: ``"fail"`` answers 503 (what S3 says when it sheds load), ``"reset"`` closes the
connection without an answer, ``"hold"`` waits until :meth:`release` (or the proxy closes),
``"delay"`` forwards after a pause. A rule applies ``times`` times (None: always), after letting
``skip`` matching requests through. Everything forwarded is logged as ``(method, path)``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .servers import _LoopThread


@dataclass
class Rule:
    action: str  # "fail", "reset", "hold", "delay"
    method: str = "PUT"
    path: str = ".*"  # regular expression searched in the request path (with query)
    skip: int = 0
    times: int | None = None
    seconds: float = 0.0  # for "delay"
    seen: int = 0
    applied: int = 0


class S3Proxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.forwarded: list[tuple[str, str]] = []
        self.held = threading.Event()  # set while a request is held
        self._release: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._loop = _LoopThread(app)
        self.endpoint = f"http://127.0.0.1:{self._loop.port}"
        self.storage_options = {
            "key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": self.endpoint},
            # botocore retries on its own; fastload's retries are what the tests measure
            "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}},
        }

    def add(self, action: str, **kw) -> Rule:
        rule = Rule(action, **kw)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()
        self.release()

    def release(self) -> None:
        if self._release is not None:
            self._loop.loop.call_soon_threadsafe(self._release.set)

    def _decide(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.method in (method, "*") and re.search(rule.path, path):
                rule.seen += 1
                if rule.seen <= rule.skip or (rule.times is not None and rule.applied >= rule.times):
                    continue
                rule.applied += 1
                return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path_qs
        rule = self._decide(request.method, path)
        if rule is not None and rule.action == "fail":
            return web.Response(status=503, body=b"<Error><Code>ServiceUnavailable</Code></Error>")
        if rule is not None and rule.action == "reset":
            request.transport.close()
            return web.Response(status=503)
        if rule is not None and rule.action == "hold":
            if self._release is None:
                self._release = asyncio.Event()
            self.held.set()
            await self._release.wait()
            request.transport.close()  # the client, if still alive, sees the connection drop
            return web.Response(status=503)
        if rule is not None and rule.action == "delay":
            await asyncio.sleep(rule.seconds)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "expect")}
        async with self._session.request(request.method, self.upstream + path, headers=headers, data=body,
                                         allow_redirects=False) as up:
            data = await up.read()
            drop = ("transfer-encoding", "content-encoding", "connection") + (
                () if request.method == "HEAD" else ("content-length",))  # a HEAD's length is the object's
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in drop}
            self.forwarded.append((request.method, path))
            if request.method == "HEAD":
                return web.Response(status=up.status, headers=out_headers)
            return web.Response(status=up.status, body=data, headers=out_headers)

    def close(self) -> None:
        self.release()

        async def stop():
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop.loop).result(10)
        self._loop.close()
