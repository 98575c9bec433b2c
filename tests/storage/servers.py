"""Real servers on 127.0.0.1 for the storage tests: aiohttp static files (Range), a fault injector,
a listener that never answers, and moto's S3 server. Each counts the requests it serves."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import threading
from pathlib import Path

from aiohttp import web

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


class _LoopThread:
    """An asyncio loop running an aiohttp app in a daemon thread."""

    def __init__(self, app: web.Application):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        # handlers still writing to a client that stopped reading (a download abandoned over a
        # stalled server) are cancelled after 2 s, so close() never waits out aiohttp's 60 s
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)

        async def start():
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return site._server.sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class StaticServer:
    """aiohttp's static file handler (with Range support) over ``root``; counts GETs per path."""

    def __init__(self, root: Path):
        self.requests: collections.Counter[str] = collections.Counter()

        self.connections: set = set()  # client (host, port) pairs: one per TCP connection

        @web.middleware
        async def count(request, handler):
            self.requests[request.path] += 1
            self.connections.add(request.transport.get_extra_info("peername"))
            return await handler(request)

        app = web.Application(middlewares=[count])
        app.router.add_static("/", str(root))
        self._loop = _LoopThread(app)
        self.url = f"http://127.0.0.1:{self._loop.port}"

    def shard_requests(self) -> dict[str, int]:
        return {p: n for p, n in self.requests.items() if not p.endswith("manifest.json")}

    def close(self) -> None:
        self._loop.close()


class CountingServer:
    """Files under ``root`` with HEAD and single Range requests, counting the body bytes it sends
    (aiohttp's static handler does not say how much of a file went out)."""

    def __init__(self, root: Path):
        self.sent = 0

        async def serve(request: web.Request) -> web.Response:
            path = Path(root) / request.match_info["path"]
            if not path.is_file():
                raise web.HTTPNotFound()
            data = path.read_bytes()
            if request.method == "HEAD":
                return web.Response(body=data)  # aiohttp sends the length and drops the body
            rng = request.http_range
            if rng.start is None and rng.stop is None:
                body, status = data, 200
            else:
                body, status = data[rng], 206
            self.sent += len(body)
            return web.Response(body=body, status=status)

        app = web.Application()
        app.router.add_get("/{path:.+}", serve)
        self._loop = _LoopThread(app)
        self.url = f"http://127.0.0.1:{self._loop.port}"

    def close(self) -> None:
        self._loop.close()


class FaultyServer:
    """Serves ``root`` with Range, failing requests in a fixed cycle: 503, a truncated body, a reset.

    ``every``: one request in ``every`` fails (cycling through the fault kinds); the manifest is
    served faithfully only when ``spare_manifest``.
    """

    def __init__(self, root: Path, every: int = 3, spare_manifest: bool = False):
        self.root = Path(root)
        self.every = every
        self.count = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self.spare_manifest = spare_manifest
        self.stall = False
        app = web.Application()
        app.router.add_get("/{name:.*}", self._handle)
        self._loop = _LoopThread(app)
        self.url = f"http://127.0.0.1:{self._loop.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.count += 1
        path = self.root / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        start, end = 0, len(data)
        rng = request.headers.get("Range")
        if rng:
            a, b = rng.split("=", 1)[1].split("-")
            start, end = int(a), min(int(b) + 1 if b else len(data), len(data))
        body = data[start:end]
        if self.stall and path.name != "manifest.json":  # half a body, then nothing until unstalled
            resp = web.StreamResponse(status=206 if rng else 200)
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            while self.stall:
                await asyncio.sleep(0.05)
            request.transport.close()
            return resp
        spared = self.spare_manifest and path.name == "manifest.json"
        kind = None if spared or self.count % self.every else ("503", "truncate", "reset")[self.count // self.every % 3]
        if kind == "503":
            self.faults[kind] += 1
            return web.Response(status=503, text="try later")
        resp = web.StreamResponse(status=206 if rng else 200)
        resp.content_length = len(body)
        resp.headers["Accept-Ranges"] = "bytes"
        if rng:
            resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        await resp.prepare(request)
        if kind is not None and len(body) > 1:
            self.faults[kind] += 1
            await resp.write(body[: len(body) // 2])
            if kind == "reset":  # RST instead of FIN
                sock = request.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            request.transport.close()
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp

    def close(self) -> None:
        self._loop.close()


class SilentServer:
    """Accepts connections and never answers: every request can only end by the client's timeout."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._sock.close()


def free_port_url() -> str:
    """A URL on a port where nothing listens (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class S3Server:
    """moto's S3 server in a thread, with one bucket; ``upload`` copies a local dataset into it."""

    def __init__(self, bucket: str = "data"):
        from moto.server import ThreadedMotoServer

        os.environ.update(S3_ENV)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.storage_options = {"client_kwargs": {"endpoint_url": self.endpoint}}
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint)
        self.client.create_bucket(Bucket=bucket)
        self.bucket = bucket

    def upload(self, root: Path, prefix: str) -> str:
        for p in sorted(Path(root).iterdir()):
            self.client.put_object(Bucket=self.bucket, Key=f"{prefix}/{p.name}", Body=p.read_bytes())
        return f"s3://{self.bucket}/{prefix}"

    def close(self) -> None:
        self._server.stop()
