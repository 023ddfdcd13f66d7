"""An OTLP/HTTP trace receiver for Herald's tests, built on the official protobuf
definitions (the opentelemetry-proto package). It decodes each POST to /v1/traces as an
ExportTraceServiceRequest and appends one JSON line per span to --out; anything that does
not decode is answered 400 and noted in the file, so a malformed export fails the test."""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def spans(req):
    for rs in req.resource_spans:
        resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                    "status": s.status.code,
                    "scope": ss.scope.name,
                    "resource": resource,
                }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            problem = None
            if self.path != "/v1/traces":
                problem = f"unexpected path {self.path}"
            elif self.headers.get("content-type") != "application/x-protobuf":
                problem = f"unexpected content-type {self.headers.get('content-type')}"
            else:
                try:
                    req = ExportTraceServiceRequest.FromString(body)
                except DecodeError as e:
                    problem = f"cannot decode: {e}"
            with open(args.out, "a", encoding="utf-8") as f:
                if problem:
                    f.write(json.dumps({"problem": problem}) + "\n")
                else:
                    for s in spans(req):
                        f.write(json.dumps(s) + "\n")
            if problem:
                self.send_response(400)
                self.end_headers()
                return
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
