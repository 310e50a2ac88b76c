"""A stand-in for the broker's HTTP listener, for the status page: serves broker/src/http/status.html
at `/` (with the /api/status JSON embedded the way the broker does it) and a JSON document at
/api/status that the caller sets, or a fake one with moving numbers.

    python3 compat-tests/statusstub.py [PORT]     # a live-looking fake broker on 127.0.0.1:PORT

The test uses it for what a real broker cannot easily be made to show: empty lists, a partition
without a committed offset, names that need HTML escaping, an /api/status that fails.
"""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATUS_HTML = REPO / "broker" / "src" / "http" / "status.html"
PLACEHOLDER = "/*FJORD_STATUS_JSON*/null"


def embed(html: str, status: dict | None) -> str:
    """The page as the broker serves it: the placeholder replaced by the JSON, with `<` escaped
    (\\u003c) so that no string in it (a client id, a topic name) can close the script element."""
    if status is None:
        return html
    js = json.dumps(status, separators=(",", ":")).replace("<", "\\u003c")
    return html.replace(PLACEHOLDER, js, 1)


class StatusStub:
    """HTTP server on 127.0.0.1 (a free port): `/` the page, `/api/status` `self.status` (a dict, or
    a callable returning one). `api_error` set to an HTTP status makes /api/status fail with it;
    `embed_json=False` serves the page without the embedded JSON."""

    def __init__(self, status=None, embed_json: bool = True, port: int = 0):
        self.status = status if status is not None else FakeBroker().status
        self.embed_json = embed_json
        self.api_error: int | None = None
        self.api_requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/":
                    body = embed(STATUS_HTML.read_text(), stub.current() if stub.embed_json else None).encode()
                    self._send(200, "text/html; charset=utf-8", body)
                elif path == "/api/status":
                    stub.api_requests += 1
                    if stub.api_error:
                        self._send(stub.api_error, "text/plain", b"stub: failing on purpose\n")
                    else:
                        self._send(200, "application/json", json.dumps(stub.current()).encode())
                elif path in ("/healthz", "/readyz"):
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code, ctype, body):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def current(self) -> dict:
        return self.status() if callable(self.status) else self.status

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def empty_status(now_ms: int | None = None) -> dict:
    now_ms = now_ms or int(time.time() * 1000)
    return {
        "broker": {"node_id": 1, "version": "0.1.0", "cluster_id": "q1Sh-9_ISia_zwGINzRvyQ",
                   "started_ms": now_ms - 5_000, "now_ms": now_ms, "listeners": ["127.0.0.1:9092"],
                   "data_dir": "/tmp/x"},
        "brokers": [],
        "topics": [],
        "groups": [],
        "series": [],
    }


class FakeBroker:
    """/api/status of a busy single-node broker: offsets grow, a group lags, one sample a second."""

    def __init__(self):
        self.started_ms = int(time.time() * 1000) - 3_723_000
        self.series: list[dict] = []
        self.hw = {("orders", p): 1200 + 37 * p for p in range(3)}
        self.hw.update({("payments", p): 400 + 11 * p for p in range(2)})
        self.committed = {k: v - 15 for k, v in self.hw.items()}
        self.last_tick = 0
        self.lock = threading.Lock()

    def _tick(self, now_ms: int):
        t = now_ms // 1000 * 1000
        if self.last_tick == 0:
            for i in range(45, 0, -1):
                self.series.append(self._sample(t - i * 1000))
            self.last_tick = t - 1000
        while self.last_tick < t:
            self.last_tick += 1000
            s = self._sample(self.last_tick)
            self.series.append(s)
            del self.series[:-60]
            msgs = int(s["messages_in_per_s"])
            for k in self.hw:
                self.hw[k] += msgs // len(self.hw) + random.randint(0, 2)
            for k in self.committed:
                # "billing" keeps up with orders; "audit" commits payments every 10 s, so it lags
                if k[0] == "orders":
                    self.committed[k] = self.hw[k] - random.randint(0, 4)
                elif self.last_tick // 1000 % 10 == 0:
                    self.committed[k] = self.hw[k] - random.randint(50, 200)

    @staticmethod
    def _sample(t_ms: int) -> dict:
        x = t_ms / 1000.0
        msgs = 900 + 400 * math.sin(x / 7) + random.uniform(-60, 60)
        return {"t_ms": t_ms, "bytes_in_per_s": msgs * 310.0, "bytes_out_per_s": msgs * 290.0 * (1.4 + 0.3 * math.sin(x / 5)),
                "messages_in_per_s": msgs, "requests_per_s": 40 + msgs / 25 + random.uniform(0, 8),
                "produce_p99_ms": 1.8 + math.sin(x / 3) ** 2 * 2.5 + random.uniform(0, 0.6),
                "fetch_p99_ms": 480 + random.uniform(0, 40)}

    def status(self) -> dict:
        now_ms = int(time.time() * 1000)
        with self.lock:
            self._tick(now_ms)
            parts = lambda topic, n: [  # noqa: E731
                {"partition": p, "leader": 1, "leader_epoch": 0, "log_start": 0, "high_watermark": self.hw[(topic, p)],
                 "last_stable": self.hw[(topic, p)], "size_bytes": self.hw[(topic, p)] * 310} for p in range(n)]
            lag = lambda topic, n: [  # noqa: E731
                {"topic": topic, "partition": p, "committed": self.committed[(topic, p)],
                 "high_watermark": self.hw[(topic, p)], "lag": self.hw[(topic, p)] - self.committed[(topic, p)],
                 "lag_seconds": round((self.hw[(topic, p)] - self.committed[(topic, p)]) / 270.0, 2)} for p in range(n)]
            billing = lag("orders", 3)
            audit = lag("payments", 2)
            return {
                "broker": {"node_id": 1, "version": "0.1.0", "cluster_id": "q1Sh-9_ISia_zwGINzRvyQ",
                           "started_ms": self.started_ms, "now_ms": now_ms, "listeners": ["127.0.0.1:9092"],
                           "data_dir": "/var/lib/fjord"},
                "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": None}],
                "topics": [
                    {"name": "orders", "topic_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "internal": False, "partitions": parts("orders", 3)},
                    {"name": "payments", "topic_id": "9b2e1c7a-0d4f-4e8b-a1c2-7f3e5d6b8a90", "internal": False, "partitions": parts("payments", 2)},
                    {"name": "__consumer_offsets", "topic_id": "0c7d2b1e-4f5a-4c3d-9e8f-1a2b3c4d5e6f", "internal": True,
                     "partitions": [{"partition": p, "leader": 1, "leader_epoch": 0, "log_start": 0, "high_watermark": 10 * p,
                                     "last_stable": 10 * p, "size_bytes": 1000 * p} for p in range(50)]},
                ],
                "groups": [
                    {"group_id": "billing", "type": "classic", "state": "Stable", "protocol": "range",
                     "members": [
                         {"member_id": "rdkafka-1b7c3a52-9d7e-4a0b-8d7e-4f1f6c2d9e11", "client_id": "billing-1", "host": "/127.0.0.1",
                          "assignment": [{"topic": "orders", "partitions": [0, 1]}]},
                         {"member_id": "rdkafka-5e2d9f30-2c1b-4f4e-9a3d-0b6c7e8f9a22", "client_id": "billing-2", "host": "/127.0.0.1",
                          "assignment": [{"topic": "orders", "partitions": [2]}]}],
                     "lag": billing, "total_lag": sum(x["lag"] for x in billing)},
                    {"group_id": "audit", "type": "consumer", "state": "Stable", "protocol": "uniform",
                     "members": [{"member_id": "Xq2v0m6PT4yQ4v1E8a9cZw", "client_id": "audit-java", "host": "/127.0.0.1",
                                  "assignment": [{"topic": "payments", "partitions": [0, 1]}]}],
                     "lag": audit, "total_lag": sum(x["lag"] for x in audit)},
                ],
                "series": list(self.series),
            }


if __name__ == "__main__":
    stub = StatusStub(port=int(sys.argv[1]) if len(sys.argv) > 1 else 19644)
    print(f"status stub on {stub.url}", flush=True)
    try:
        stub.thread.join()
    except KeyboardInterrupt:
        stub.close()
