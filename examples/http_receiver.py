#!/usr/bin/env python3
"""A tiny task receiver for Warren's http handler (standard library only).

It does what the tutorial's worker.py does (one second of work per '.' in the
body) and answers 200, so Warren acks the task:

    python3 examples/http_receiver.py --port 8080 &
    warren work --handler http --http-url http://127.0.0.1:8080/tasks

Warren POSTs each task body as is, with CloudEvents binary-mode headers
(ce-id, ce-source, ce-type, ce-specversion, ce-time) and X-Warren-Attempt /
X-Warren-Redelivered. The status is the answer: 2xx = done (ack); 4xx other
than 408/429 = this task can never succeed (dead-letter now); 5xx, 408, 429
= try again later (retry), no sooner than a Retry-After header says.
GET /healthz answers 200, for handler.http.ready_url.
"""

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections open: Warren reuses one per worker.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            text = body.decode()
        except UnicodeDecodeError:
            self.answer(422, b"body is not UTF-8\n")  # dead-lettered by Warren
            return
        attempt = self.headers.get("X-Warren-Attempt", "1")
        print(f" [x] Received {text} (id {self.headers.get('ce-id')}, attempt {attempt})", flush=True)
        time.sleep(body.count(b"."))
        print(" [x] Done", flush=True)
        self.answer(200, b"")

    def do_GET(self) -> None:
        self.answer(200 if self.path == "/healthz" else 404, b"")

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per task above is enough


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    server.daemon_threads = True
    print(f"listening on http://{args.host}:{args.port}/tasks", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
