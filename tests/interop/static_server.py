"""A tiny static file server (aiohttp), the "CDN" that storage middleware redirects to in tests.

``python -m tests.interop.static_server ROOT PORT PREFIX LOG`` serves the files under ROOT at
``http://127.0.0.1:PORT{PREFIX}/...`` (GET and HEAD, single ``Range`` → 206, as aiohttp's
FileResponse answers) and appends one line per request to LOG: ``METHOD PATH STATUS``.
"""
from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web


def main() -> None:
    root, port, prefix, log_path = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    out = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the server's lifetime, line-buffered

    @web.middleware
    async def log(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            resp = await handler(request)
            status = resp.status
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            out.write(f"{request.method} {request.path} {status}\n")
        return resp

    app = web.Application(middlewares=[log])
    app.router.add_static(prefix or "/", root, follow_symlinks=False)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
