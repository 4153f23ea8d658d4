"""A fault-injecting HTTP proxy in front of the test S3-API server (tests/s3_server.py), as its own
process over a socket: what a flaky network, a load balancer or a misbehaving store does to the
requests of store/s3.py, with nothing mocked in the process under test.

Run as `python -m tests.s3_proxy LISTEN_PORT UPSTREAM_PORT RULES_FILE`. The rules file (JSON, re-read
at every request, so a test may change it mid-run) is a list of rules; the first that matches a
request applies, at most `times` times (default: always):

    {"method": "PUT", "key": "part-0001\\.mkv$", "query": "", "header": "If-None-Match",
     "action": "drop", "times": 1}

`key` and `query` are regular expressions searched in the request's path and query string; `header`
names a request header that must be present. Actions:

* `drop`: forward the request, then close the connection without answering (the store did it, the
  client never hears so: a timeout or a reset after a successful PUT);
* `status`: answer with `status` (and S3's XML error `code`) without forwarding;
* `short`: forward, then answer with only the first `keep` bytes of the body (default: half), its
  Content-Length and Content-Range made consistent with that (a store that serves fewer bytes than
  asked, or an object cut short behind the reader's back);
* `cut`: forward, then send the headers as received and only half the body, and close;
* `flip`: forward, then flip one bit in the middle of the body (same length);
* `whole`: forward without the Range header (a store that ignores it: the whole object, HTTP 200).

Every request is appended to RULES_FILE + ".log" as one JSON line (method, path, query, action).
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


class _Rules:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.used: dict[str, int] = {}

    def match(self, method: str, path: str, query: str, headers: Any) -> dict[str, Any] | None:
        with self.lock:
            try:
                rules = json.loads(self.path.read_text() or "[]")
            except (OSError, ValueError):
                rules = []
            for rule in rules:
                ident = json.dumps(rule, sort_keys=True)
                if rule.get("method", method) != method or not re.search(rule.get("key", ""), path) \
                        or not re.search(rule.get("query", ""), query) \
                        or (rule.get("header") and rule["header"] not in headers):
                    continue
                if "times" in rule and self.used.get(ident, 0) >= rule["times"]:
                    continue
                self.used[ident] = self.used.get(ident, 0) + 1
                return rule
            return None

    def log(self, entry: dict[str, Any]) -> None:
        with self.lock, open(f"{self.path}.log", "a") as out:
            out.write(json.dumps(entry) + "\n")



def handler(upstream: int, rules: _Rules) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        action = "pass"

        def log_message(self, *_: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
            drop = HOP | ({"range"} if self.action == "whole" else set())
            headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            return resp.status, resp.reason, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP], data

        def _send(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes,
                  length: int | None = None) -> None:
            self.send_response(status, reason)
            for k, v in headers:
                if k.lower() != "content-length" or self.command == "HEAD":  # a HEAD's is the object's
                    self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            body = self._body()
            rule = rules.match(self.command, url.path, url.query, self.headers)
            action = self.action = rule["action"] if rule else "pass"
            rules.log({"method": self.command, "path": url.path, "query": url.query, "action": action,
                       "range": self.headers.get("Range"), "length": len(body),
                       "headers": dict(self.headers) if self.command == "PUT" else None})
            if action == "status":
                code = rule.get("code", "InternalError")
                xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                       f"<Message>injected by tests/s3_proxy.py</Message></Error>").encode()
                self._send(int(rule["status"]), code, [("Content-Type", "application/xml")], xml)
                return
            status, reason, headers, data = self._forward(body)
            if action == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "short" and status in (200, 206) and data:
                keep = int(rule.get("keep", len(data) // 2))
                data = data[:keep]
                fixed = []
                for k, v in headers:
                    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", v) if k.lower() == "content-range" else None
                    fixed.append((k, f"bytes {m[1]}-{int(m[1]) + keep - 1}/{m[3]}" if m else v))
                headers = fixed
            if action == "flip" and data:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:]
            if action == "cut" and data:
                self._send(status, reason, headers, data[:len(data) // 2], length=len(data))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send(status, reason, headers, data)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle

    return Handler


class S3Proxy:
    """The proxy as a process: `endpoint` is what boto3 is pointed at; `rules(...)` sets its rules."""

    def __init__(self, upstream_port: int, workdir: Path) -> None:
        from tests.mongo_server import free_port
        self.port = free_port()
        self.upstream = upstream_port
        self.rules_file = workdir / f"s3-proxy-{self.port}.json"
        self.rules_file.write_text("[]")
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rules(self, *rules: dict[str, Any]) -> None:
        self.rules_file.write_text(json.dumps(list(rules)))

    def requests(self) -> list[dict[str, Any]]:
        log = Path(f"{self.rules_file}.log")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def start(self) -> S3Proxy:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.s3_proxy", str(self.port), str(self.upstream),
                                      str(self.rules_file)], cwd=Path(__file__).resolve().parents[1],
                                     start_new_session=True)
        from tests.mongo_server import wait_listening
        wait_listening(self.proc, self.port, "the S3 proxy", 30)
        return self

    def stop(self) -> None:
        from tests.mongo_server import stop_group
        stop_group(self.proc)
        self.proc = None


def main() -> None:
    listen, upstream, rules_file = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    server = ThreadingHTTPServer(("127.0.0.1", listen), handler(upstream, _Rules(rules_file)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
