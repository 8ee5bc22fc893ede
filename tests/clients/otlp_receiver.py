"""A small OTLP/HTTP trace receiver for tests/otel_traces.rs.

It decodes every POSTed ExportTraceServiceRequest with the OpenTelemetry project's own protobuf
definitions (the `opentelemetry-proto` package) and appends one JSON line per span to the file
named on the command line. It prints `listening <port>` once it accepts connections.

Usage: otlp_receiver.py OUT.jsonl [--status CODE]
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]
STATUS = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else 200


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if STATUS != 200:
            self.send_response(STATUS)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        lines = []
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(json.dumps({
                        "path": self.path,
                        "content_type": self.headers.get("content-type"),
                        "authorization": self.headers.get("authorization"),
                        "resource": resource,
                        "scope": ss.scope.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "trace_state": s.trace_state,
                        "name": s.name,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "status_code": s.status.code,
                        "status_message": s.status.message,
                        "attributes": attrs(s.attributes),
                        "events": [
                            {"name": e.name, "time": e.time_unix_nano, "attributes": attrs(e.attributes)}
                            for e in s.events
                        ],
                    }))
        # One write per request; the test still reads only newline-ended lines, because a
        # reader can see a write half done.
        with open(OUT, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
