"""A throwaway OTLP/HTTP trace receiver for `python -m bench --trace`: decodes and counts spans.

`python -m bench.otlp_sink COUNT_FILE` prints its endpoint on the first line of stdout, then
serves `POST /v1/traces` until killed, keeping the number of spans received in COUNT_FILE.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_RESPONSE = ExportTraceServiceResponse().SerializeToString()


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, count_file: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.count_file = count_file
        self.spans = 0


class _Handler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        request = ExportTraceServiceRequest.FromString(raw)  # decoded, as a collector would
        self.server.spans += sum(
            len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
        )
        self.server.count_file.write_text(str(self.server.spans))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(_RESPONSE)))
        self.end_headers()
        self.wfile.write(_RESPONSE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str]) -> int:
    sink = Sink(Path(argv[0]))
    host, port = sink.server_address[:2]
    print(f"http://{host!s}:{port}", flush=True)
    sink.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
