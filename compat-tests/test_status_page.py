"""The built-in status page in a real headless browser: Debian's chromium, driven over the
Chrome DevTools Protocol (cdp.py).

Against a real Fjord (metrics.listener on a free port): a topic, a classic and a KIP-848 consumer
group that commit and then stop consuming while more is produced; the page has to show the topic's
partitions and high watermarks and each group with its member and a lag of exactly what was
produced beyond the commit, first from the JSON the broker embeds in the page (with /api/status
blocked in the browser) and then live; while a producer runs, the charts have to move. Then a
screenshot: docs/status-page.png with FJORD_SCREENSHOT=1 (the README's), else the test's tmp dir.

Against statusstub.py (no broker): what a broker does not easily show: empty lists, a partition
with no committed offset, an offline partition, names that need escaping (in the embedded JSON
and in the DOM), and an /api/status that fails and comes back.

Everything is read from the DOM (PAGE_MODEL below): what a person sees, not the page's JSON.
Skipped when the broker is the reference Kafka (it has no HTTP listener) or chromium is missing.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

import statusstub
from cdp import Chromium, find_chromium
from conftest import REFERENCE, REPO, free_port, group_overrides, wait_for

CHROMIUM = find_chromium()
try:
    import websocket  # noqa: F401 - the websocket-client package, for cdp.py
    HAVE_WEBSOCKET = True
except ImportError:
    HAVE_WEBSOCKET = False

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium to drive: apt-get install chromium (or set FJORD_CHROMIUM)"),
    pytest.mark.skipif(not HAVE_WEBSOCKET, reason="websocket-client is not installed (pip install websocket-client)"),
]

VIEWPORT = (1400, 1000)
SCREENSHOT = os.environ.get("FJORD_SCREENSHOT") == "1"
DOCS_SCREENSHOT = REPO / "docs" / "status-page.png"

#: What the page shows, read from its DOM (text as rendered, and the data-v values beside it).
PAGE_MODEL = r"""
(() => {
  const txt = (el) => el ? el.textContent.replace(/[ \t\r\n]+/g, ' ').trim() : null;
  const cell = (root, k) => {
    const el = root.querySelector('[data-k="' + k + '"]');
    return el ? { v: el.getAttribute('data-v'), text: txt(el), lag: el.classList.contains('lag-pos') || !!el.querySelector('.lag-pos') } : null;
  };
  const shown = (id) => { const el = document.getElementById(id); return el && el.offsetParent !== null ? txt(el) : null; };
  return {
    conn: { cls: document.getElementById('conn').className, text: txt(document.getElementById('conn-text')) },
    error: shown('err'),
    header: { cluster: txt(document.getElementById('m-cluster')), node: txt(document.getElementById('m-node')),
              version: txt(document.getElementById('m-version')), uptime: txt(document.getElementById('m-uptime')) },
    kpis: Object.fromEntries([...document.querySelectorAll('[data-kpi]')].map((k) => [k.getAttribute('data-kpi'), txt(k.querySelector('.v'))])),
    topics: [...document.querySelectorAll('#topics details.topic')].map((t) => ({
      name: txt(t.querySelector('.tname')),
      internal: !!t.querySelector('summary .badge.internal'),
      badges: [...t.querySelectorAll('summary .badge')].map(txt),
      partitions: [...t.querySelectorAll('tr[data-partition]')].map((r) => ({
        partition: Number(r.getAttribute('data-partition')),
        leader: cell(r, 'leader'), leader_epoch: cell(r, 'leader_epoch'), log_start: cell(r, 'log_start'),
        high_watermark: cell(r, 'high_watermark'), last_stable: cell(r, 'last_stable'), size_bytes: cell(r, 'size_bytes'),
        replicas: cell(r, 'replicas'), isr: cell(r, 'isr'),
      })),
    })),
    groups: [...document.querySelectorAll('#groups .group')].map((g) => ({
      group_id: txt(g.querySelector('.group-head .tname')),
      badges: [...g.querySelectorAll('.group-head .badge')].map(txt),
      state: txt(g.querySelector('[data-k="state"]')),
      protocol: txt(g.querySelector('.group-head .sub b')),
      total_lag: cell(g.querySelector('.group-head'), 'total_lag'),
      members: [...g.querySelectorAll('tr[data-member]')].map((m) => ({
        member_id: m.getAttribute('data-member'), client_id: txt(m.querySelector('[data-k="client_id"]')),
        host: txt(m.querySelector('[data-k="host"]')), assignment: txt(m.querySelector('[data-k="assignment"]')),
      })),
      lag: [...g.querySelectorAll('tr[data-lag-partition]')].map((r) => ({
        topic: r.getAttribute('data-lag-topic'), partition: Number(r.getAttribute('data-lag-partition')),
        committed: cell(r, 'committed'), high_watermark: cell(r, 'high_watermark'), lag: cell(r, 'lag'), lag_seconds: cell(r, 'lag_seconds'),
      })),
      empty: [...g.querySelectorAll('.empty')].map(txt),
    })),
    brokers: [...document.querySelectorAll('#brokers tr[data-broker]')].map((r) => [...r.cells].map(txt)),
    empty: Object.fromEntries(['groups', 'topics', 'brokers'].map((id) => [id, txt(document.querySelector('#' + id + ' > .empty'))])),
    charts: Object.fromEntries([...document.querySelectorAll('[data-chart]')].map((c) => [c.getAttribute('data-chart'), {
      svg: c.querySelector('svg') ? c.querySelector('svg').outerHTML : null,
      lines: Object.fromEntries([...c.querySelectorAll('path.line')].map((p) => [p.getAttribute('data-key'), p.getAttribute('d')])),
      legend: txt(c.querySelector('.legend')),
      empty: txt(c.querySelector('.empty-chart')),
      state: window.fjordCharts[c.getAttribute('data-chart')] || null,
    }])),
  };
})()
"""


def model(page) -> dict:
    return page.evaluate(PAGE_MODEL)


def by_name(items: list[dict], key: str, value) -> dict:
    found = [x for x in items if x[key] == value]
    assert len(found) == 1, f"expected one entry with {key}={value!r} on the page, found {len(found)} in {[x[key] for x in items]}"
    return found[0]


def http_get(url: str, timeout_s: float = 5.0):
    """(status, headers (case-insensitive), body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Chromium.launch(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


@pytest.fixture
def page(browser):
    p = browser.new_page(*VIEWPORT)
    yield p
    try:
        browser.call("Target.closeTarget", {"targetId": p.target}, timeout_s=10)
    except Exception:  # noqa: BLE001 - the browser may be gone after a failure
        pass


@pytest.fixture(scope="module")
def status_broker(start_broker):
    if REFERENCE:
        pytest.skip("the broker under test is Apache Kafka (reference/kafka-as-fjord): it has no HTTP listener, "
                    "the status page is Fjord's")
    http_port = free_port()
    b = start_broker("status-page", **group_overrides(**{
        "metrics.listener": f"http://127.0.0.1:{http_port}",
        "auto.create.topics.enable": "false",
    }))
    b.http = f"http://127.0.0.1:{http_port}"
    wait_for(lambda: http_get(b.http + "/api/status")[0] == 200, f"{b.http}/api/status to answer 200")
    return b


# ---------------------------------------------------------------------------------- real broker

PARTITIONS = 3
COMMITTED_PER_PARTITION = 20  # produced, read and committed by both groups
LAG_PER_PARTITION = 7         # produced after the commit: each group's lag per partition


def _producer(bootstrap: str):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 5,
                     "client.id": "status-page-producer"})


def _produce(bootstrap: str, topic: str, per_partition: int, tag: str):
    p = _producer(bootstrap)
    errors = []
    for part in range(PARTITIONS):
        for i in range(per_partition):
            p.produce(topic, value=f"{tag}-{part}-{i}".encode() * 8, key=f"k{i}".encode(), partition=part,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0, "producer did not flush in 30 s"
    assert not errors, f"delivery errors: {errors[:3]}"


def _create_topic(b, name: str):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)], operation_timeout=20, request_timeout=20)[name].result(timeout=30)
    wait_for(lambda: len(admin.list_topics(name, timeout=5).topics[name].partitions) == PARTITIONS,
             f"topic {name} with {PARTITIONS} partitions in Metadata")


def _consume_and_commit(bootstrap: str, topic: str, group: str, protocol: str):
    """A group member that reads everything there is, commits it, and then stays in the group
    without polling (librdkafka keeps heartbeating in its own thread), so the group lags."""
    from confluent_kafka import Consumer, TopicPartition

    conf = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"{group}-1",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c = Consumer(conf)
    c.subscribe([topic])
    want = PARTITIONS * COMMITTED_PER_PARTITION
    got = 0
    deadline = time.monotonic() + 45
    while got < want:
        assert time.monotonic() < deadline, f"{group}: read {got} of {want} records in 45 s"
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, f"{group}: {m.error()}"
        got += 1
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == {p: COMMITTED_PER_PARTITION for p in range(PARTITIONS)}
    return c


class Traffic:
    """Produces to `topic` from a thread until stop(): 150 to 650 records/s of 400 bytes, bounded
    in count and time."""

    def __init__(self, bootstrap: str, topic: str, max_s: float):
        self.bootstrap, self.topic, self.max_s = bootstrap, topic, max_s
        self.sent = 0
        self.errors: list = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        p = _producer(self.bootstrap)
        end = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < end and self.sent < 200_000:
            # A rate that changes over time (between about 150 and 650 records/s), so the charts
            # have a shape.
            burst = int(12 + 8 * math.sin(time.monotonic() / 3))
            for i in range(burst):
                p.produce(self.topic, value=os.urandom(200).hex().encode(), partition=(self.sent + i) % PARTITIONS,
                          on_delivery=lambda err, msg: self.errors.append(err) if err else None)
            self.sent += burst
            p.poll(0)
            time.sleep(0.03)
        p.flush(30)

    def stop(self):
        self._stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "traffic thread did not stop"
        assert not self.errors, f"traffic delivery errors: {self.errors[:3]}"


def test_status_page_shows_topic_groups_lag_and_live_charts(status_broker, page, tmp_path):
    b = status_broker
    # Plain names: this broker is the module's own, and they are what the README's picture shows.
    topic, classic_group, kip848_group = "orders", "billing", "shipping"
    _create_topic(b, topic)

    _produce(b.bootstrap, topic, COMMITTED_PER_PARTITION, "before")
    consumers = [_consume_and_commit(b.bootstrap, topic, classic_group, "classic"),
                 _consume_and_commit(b.bootstrap, topic, kip848_group, "consumer")]
    traffic = None
    try:
        _produce(b.bootstrap, topic, LAG_PER_PARTITION, "after")
        hw = COMMITTED_PER_PARTITION + LAG_PER_PARTITION
        total_lag = PARTITIONS * LAG_PER_PARTITION

        # The broker's own view first (a failure here is the API's, not the page's).
        def api_lag():
            st = json.loads(http_get(b.http + "/api/status")[2])
            gs = {g["group_id"]: g for g in st["groups"]}
            # lag_seconds comes from the broker's once-a-second sampler: null until it has run.
            return all(gs.get(g, {}).get("total_lag") == total_lag and len(gs[g]["members"]) == 1
                       and all(x["lag_seconds"] is not None for x in gs[g]["lag"])
                       for g in (classic_group, kip848_group)) and st
        st = wait_for(api_lag, f"/api/status to show both groups with one member, a total lag of {total_lag} "
                               f"and every partition's lag in seconds")

        # `/` is the page with the status JSON embedded (the first paint needs no fetch).
        code, headers, body = http_get(b.http + "/")
        html = body.decode()
        assert code == 200 and headers.get("Content-Type", "").startswith("text/html"), (code, dict(headers))
        assert statusstub.PLACEHOLDER not in html, "the page was served without its embedded status JSON"
        assert f'"{topic}"' in html and "<script" in html

        # First paint from the embedded JSON alone: the browser may not fetch /api/status.
        page.block_urls(["*/api/status*"])
        page.navigate(b.http + "/")
        m = model(page)
        assert page.evaluate("window.fjordPage.lastOkMs") == 0, "the page fetched /api/status although it was blocked"
        assert page.evaluate("window.fjordPage.renders") >= 1
        t = by_name(m["topics"], "name", topic)
        assert [p["partition"] for p in t["partitions"]] == list(range(PARTITIONS))
        assert m["header"]["node"] == f"node {b.node_id}"
        assert m["header"]["cluster"] == st["broker"]["cluster_id"]

        # Then live: /api/status every second.
        page.block_urls([])
        page.wait_js("window.fjordPage.lastOkMs > 0 && document.getElementById('conn').classList.contains('live')",
                     "the page to fetch /api/status and show itself live", timeout_s=15)
        m = model(page)
        assert m["error"] is None, m["error"]
        assert m["header"]["version"] == st["broker"]["version"]
        assert m["header"]["uptime"] not in (None, "—")
        assert [r[0] for r in m["brokers"]] == [str(b.node_id)]
        assert m["brokers"][0][1:3] == ["127.0.0.1", str(b.port)]

        # The topic with its partitions and high watermarks.
        t = by_name(m["topics"], "name", topic)
        assert not t["internal"]
        assert [p["partition"] for p in t["partitions"]] == list(range(PARTITIONS))
        for p in t["partitions"]:
            assert p["high_watermark"] == {"v": str(hw), "text": str(hw), "lag": False}, p
            assert p["last_stable"]["v"] == str(hw) and p["last_stable"]["text"] == str(hw), p
            assert p["log_start"]["text"] == "0" and p["leader"]["text"] == str(b.node_id), p
            assert int(p["size_bytes"]["v"]) > 0 and p["size_bytes"]["text"].endswith("B"), p
        # Internal topics (__consumer_offsets) are hidden until asked for.
        assert all(not x["internal"] for x in m["topics"])

        # Each group with its member, assignment and lag: exactly what was produced after the commit.
        for group, gtype in ((classic_group, "classic"), (kip848_group, "consumer")):
            g = by_name(m["groups"], "group_id", group)
            assert gtype in g["badges"], (group, g["badges"])
            assert g["state"] == "Stable", (group, g["state"])
            assert g["protocol"] not in (None, "", "—"), (group, g["protocol"])
            if gtype == "classic":
                assert g["protocol"] == "range", g["protocol"]  # librdkafka's first choice
            assert len(g["members"]) == 1, g["members"]
            mem = g["members"][0]
            assert mem["client_id"] == f"{group}-1" and "127.0.0.1" in mem["host"], mem
            assert mem["assignment"] == f"{topic}: 0\u2013{PARTITIONS - 1}", mem
            assert g["total_lag"]["v"] == str(total_lag) and g["total_lag"]["text"] == str(total_lag), g["total_lag"]
            assert g["total_lag"]["lag"], "a total lag > 0 is highlighted"
            rows = sorted((r for r in g["lag"] if r["topic"] == topic), key=lambda r: r["partition"])
            assert [r["partition"] for r in rows] == list(range(PARTITIONS)), g["lag"]
            for r in rows:
                assert r["committed"]["text"] == str(COMMITTED_PER_PARTITION), r
                assert r["high_watermark"]["text"] == str(hw), r
                assert r["lag"] == {"v": str(LAG_PER_PARTITION), "text": str(LAG_PER_PARTITION), "lag": True}, r
                assert float(r["lag_seconds"]["v"]) >= 0, r
        assert m["kpis"]["total_lag"] == str(2 * total_lag), m["kpis"]

        # The charts move while a producer runs.
        before = model(page)["charts"]
        for name in ("bytes", "messages", "requests", "latency"):
            assert name in before, before.keys()
        traffic = Traffic(b.bootstrap, topic, max_s=60)
        time.sleep(25 if SCREENSHOT else 5)  # a longer run gives the README's picture a history
        page.wait_js("(() => { const c = window.fjordCharts; return c.bytes && c.bytes.last.bytes_in_per_s > 0"
                     " && c.messages.last.messages_in_per_s > 0 && c.requests.last.requests_per_s > 0; })()",
                     "the charts' newest sample to show bytes, messages and requests in", timeout_s=15)
        after = model(page)["charts"]
        bytes_after = after["bytes"]
        assert bytes_after["svg"] and bytes_after["svg"] != before["bytes"]["svg"], "the bytes chart did not change"
        assert bytes_after["lines"]["bytes_in_per_s"] != before["bytes"]["lines"].get("bytes_in_per_s")
        assert bytes_after["state"]["t_last"] > ((before["bytes"]["state"] or {}).get("t_last") or 0)
        assert bytes_after["state"]["points"] >= 2
        assert bytes_after["state"]["last"]["bytes_in_per_s"] > 0
        for name in ("messages", "requests"):
            assert after[name]["svg"] != before[name]["svg"], f"the {name} chart did not change"
        assert after["latency"]["svg"], "the latency chart has nothing drawn"
        # What is drawn is the broker's series (read in one go: the page re-renders every second).
        assert page.evaluate("Math.min(60, window.fjordStatus.series.length) === window.fjordCharts.bytes.points")
        assert page.console_errors() == []

        # The picture (taken while the traffic still runs, so the charts are live).
        png = page.screenshot()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        out = DOCS_SCREENSHOT if SCREENSHOT else tmp_path / "status-page.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png)
    finally:
        if traffic is not None:
            traffic.stop()
        for c in consumers:
            c.close()


HOSTILE_GROUP = "<!--<script>x</script>"


def test_status_page_embeds_hostile_names_safely(status_broker, page):
    """Group ids are any string a client sends. One that opens an HTML comment and a script element
    (`<!--<script>`) sends the HTML tokenizer into its "double escaped" state if it reaches the page
    raw: replacing `</` is not enough, the embedded JSON must not contain `<` at all (\\u003c)."""
    from confluent_kafka import Consumer, TopicPartition

    b = status_broker
    topic = "names"
    _create_topic(b, topic)
    _produce(b.bootstrap, topic, 3, "x")
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": HOSTILE_GROUP, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        c.close()
    wait_for(lambda: any(g["group_id"] == HOSTILE_GROUP for g in json.loads(http_get(b.http + "/api/status")[2])["groups"]),
             "/api/status to list the group")
    html = http_get(b.http + "/")[2].decode()
    assert "<!--<script>" not in html and "x</script>" not in html, "a group id reached the page unescaped"

    page.block_urls(["*/api/status*"])  # the first paint, from the embedded JSON alone
    page.navigate(b.http + "/")
    assert page.evaluate("typeof window.fjordPage") == "object", "the page's script did not run"
    g = by_name(model(page)["groups"], "group_id", HOSTILE_GROUP)
    assert [(r["topic"], r["partition"], r["committed"]["text"], r["lag"]["text"]) for r in g["lag"]] == [(topic, 0, "1", "2")]
    page.block_urls([])
    page.wait_js("window.fjordPage.lastOkMs > 0", "a fetch of /api/status")
    assert by_name(model(page)["groups"], "group_id", HOSTILE_GROUP)["state"] == "Empty"
    assert page.console_errors() == []


# ---------------------------------------------------------------------------------- stub


def _edge_status() -> dict:
    now = int(time.time() * 1000)
    st = statusstub.empty_status(now)
    st["brokers"] = [{"node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": "rack-a"}]
    st["topics"] = [
        {"name": "a<b>&\"c'", "topic_id": "t-1", "internal": False, "partitions": [
            {"partition": 1, "leader": -1, "leader_epoch": 3, "replicas": [1, 2, 3], "isr": [3], "log_start": 5, "high_watermark": 1234567, "last_stable": 1234000, "size_bytes": 3 * 1024 * 1024},
            {"partition": 0, "leader": 1, "leader_epoch": 0, "log_start": 0, "high_watermark": 0, "last_stable": 0, "size_bytes": 0}]},
        {"name": "__consumer_offsets", "topic_id": "t-2", "internal": True, "partitions": [
            {"partition": p, "leader": 1, "leader_epoch": 0, "log_start": 0, "high_watermark": p, "last_stable": p, "size_bytes": 0} for p in range(50)]},
    ]
    st["groups"] = [
        {"group_id": "</script><img src=x onerror=\"window.pwned=1\">", "type": "classic", "state": "PreparingRebalance", "protocol": None,
         "members": [{"member_id": "m-1", "client_id": "<b>c</b>", "host": "/127.0.0.1",
                      "assignment": [{"topic": "a<b>&\"c'", "partitions": [0, 1, 3, 4, 5, 7]}]}],
         "lag": [{"topic": "a<b>&\"c'", "partition": 0, "committed": None, "high_watermark": 0, "lag": None, "lag_seconds": None},
                 {"topic": "a<b>&\"c'", "partition": 1, "committed": 1234567, "high_watermark": 1234567, "lag": 0, "lag_seconds": 0.0}],
         "total_lag": 0},
        {"group_id": "idle", "type": "consumer", "state": "Empty", "protocol": "uniform", "members": [], "lag": [], "total_lag": 0},
    ]
    st["series"] = [
        {"t_ms": now - 2000, "bytes_in_per_s": 10.0, "bytes_out_per_s": 0.0, "messages_in_per_s": 1.0, "requests_per_s": 3.0, "produce_p99_ms": 1.5, "fetch_p99_ms": 500.0},
        {"t_ms": now - 1000, "bytes_in_per_s": None, "bytes_out_per_s": 5.0, "messages_in_per_s": None, "requests_per_s": 2.0, "produce_p99_ms": None, "fetch_p99_ms": 499.0},
        {"t_ms": now, "bytes_in_per_s": 2048.0, "bytes_out_per_s": 1024.0, "messages_in_per_s": 4.0, "requests_per_s": 5.0, "produce_p99_ms": 0.2, "fetch_p99_ms": 501.0},
    ]
    return st


def test_status_page_edge_cases_from_stub(page):
    """Escaping (embedded JSON and DOM), null offsets and lag, offline leader, open transaction,
    empty group, internal topics behind the checkbox, gaps in the series."""
    st = _edge_status()
    with statusstub.StatusStub(st) as stub:
        # First paint from the embedded JSON alone: a group id with </script> in it must not end
        # the script (the broker writes `<` as \u003c) nor run as HTML.
        page.block_urls(["*/api/status*"])
        page.navigate(stub.url)
        assert stub.api_requests == 0
        for fetched in (False, True):
            if fetched:
                page.block_urls([])
                page.wait_js("window.fjordPage.lastOkMs > 0", "a fetch of /api/status")
            m = model(page)
            assert page.evaluate("window.pwned === undefined")
            g = by_name(m["groups"], "group_id", st["groups"][0]["group_id"])
            assert g["state"] == "PreparingRebalance" and g["protocol"] == "—"
            assert g["members"][0]["client_id"] == "<b>c</b>"
            assert g["members"][0]["assignment"] == "a<b>&\"c': 0, 1, 3\u20135, 7"
            lag = {r["partition"]: r for r in g["lag"]}
            assert lag[0]["committed"]["text"] == "—" and lag[0]["lag"]["text"] == "—" and not lag[0]["lag"]["lag"]
            assert lag[1]["committed"]["text"] == "1,234,567" and lag[1]["lag"] == {"v": "0", "text": "0", "lag": False}
            assert g["total_lag"] == {"v": "0", "text": "0", "lag": False}
            idle = by_name(m["groups"], "group_id", "idle")
            assert "consumer" in idle["badges"] and idle["state"] == "Empty" and idle["protocol"] == "uniform"
            assert idle["members"] == [] and "no members" in idle["empty"]

            assert [t["name"] for t in m["topics"]] == ["a<b>&\"c'"]  # __consumer_offsets hidden
            t = m["topics"][0]
            assert [p["partition"] for p in t["partitions"]] == [0, 1]  # sorted
            p1 = t["partitions"][1]
            assert p1["leader"]["text"] == "none"
            assert p1["high_watermark"]["text"] == "1,234,567" and p1["last_stable"]["lag"]  # open transaction
            assert p1["size_bytes"]["text"] == "3.00\u202fMiB"
            assert p1["replicas"]["text"] == "1, 2, 3" and p1["isr"]["text"] == "3" and p1["isr"]["lag"]  # under-replicated
            assert t["badges"] == ["1 offline", "1 under-replicated"]
            assert m["brokers"] == [["1", "127.0.0.1", "9092", "rack-a", "this broker"]]

            assert m["charts"]["bytes"]["state"]["points"] == 3
            assert m["charts"]["bytes"]["lines"]["bytes_in_per_s"].count("M") == 2  # broken at the null sample
            assert m["charts"]["latency"]["legend"] == "produce 200\u202fµs fetch 501\u202fms"

        page.evaluate("document.getElementById('show-internal').click()")
        m = model(page)
        assert [t["name"] for t in m["topics"]] == ["a<b>&\"c'", "__consumer_offsets"]
        internal = m["topics"][1]
        assert internal["internal"] and internal["partitions"] and len(internal["partitions"]) == 50
        assert page.console_errors() == []


def test_status_page_empty_lists_from_stub(page):
    with statusstub.StatusStub(statusstub.empty_status()) as stub:
        page.navigate(stub.url)
        page.wait_js("window.fjordPage.lastOkMs > 0", "a fetch of /api/status")
        m = model(page)
        assert m["empty"] == {"groups": "no consumer groups", "topics": "no topics", "brokers": "no brokers"}
        assert m["kpis"]["total_lag"] == "0" and m["kpis"]["topics"] == "0"
        for c in m["charts"].values():
            assert c["svg"] is None and c["empty"] == "waiting for samples…", c
        assert m["header"]["uptime"] == "5s"
        assert page.console_errors() == []


def test_status_page_survives_api_failure_from_stub(page):
    """No embedded JSON and a failing /api/status: the page says so, keeps the last data it had,
    and goes live again when the API answers."""
    with statusstub.StatusStub(embed_json=False) as stub:
        page.navigate(stub.url)
        page.wait_js("document.getElementById('conn').classList.contains('live')", "the page to go live")
        assert [t["name"] for t in model(page)["topics"]] == ["orders", "payments"]
        stub.api_error = 500
        page.wait_js("document.getElementById('conn').classList.contains('down')", "the page to show the broker unreachable")
        m = model(page)
        assert "HTTP 500" in m["error"], m["error"]
        assert [t["name"] for t in m["topics"]] == ["orders", "payments"], "the last data stays on the page"
        stub.api_error = None
        page.wait_js("document.getElementById('conn').classList.contains('live')", "the page to go live again")
        assert model(page)["error"] is None
        assert page.console_errors() == []
