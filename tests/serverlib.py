"""A test HTTP server on a background thread, for the length of a `with` block.

`release` unblocks requests the server holds back (a gate a failed test never opened).
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

S = TypeVar("S", bound=socketserver.BaseServer)


@contextmanager
def serving(server: S, release: Callable[[], None] | None = None) -> Iterator[S]:
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if release is not None:
            release()
        server.shutdown()
        server.server_close()
        thread.join()
