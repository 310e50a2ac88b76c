"""deploy/: the Prometheus alert rules, the example Prometheus config and the Grafana dashboard,
checked with Prometheus's own tools, and a real Prometheus scraping a real Fjord.

- promtool checks the rules and the config and runs the rules' unit tests (alerts_test.yml).
- Every PromQL expression of the dashboard (panel targets, annotations, variable queries) goes
  into a temp file of recording rules, with the dashboard's $-variables filled in, for
  `promtool check rules`: PromQL syntax checked offline by Prometheus's own parser.
- Every fjord_* metric name that deploy/ uses is one of the broker's metrics (METRICS below).
- A real Prometheus (Debian's `prometheus`) scrapes a Fjord started with metrics.listener every
  second and evaluates a copy of alerts.yml with every `for:` set to 0s. Real clients produce,
  consume and commit; the test waits until Prometheus has the series with the right values,
  evaluates every dashboard query against it, makes a consumer group lag and waits for
  FjordConsumerLagGrowing to fire, then stops the broker and waits for FjordDown.

Needs promtool and prometheus on PATH (`apt-get install prometheus`). The live test is skipped
when the broker under test is the Kafka reference, which has no metrics listener.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from clientlib import Rec, assert_ok, produce_confluent
from conftest import REFERENCE, free_port, group_overrides, wait_for

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "fjord-dashboard.json"
DEPLOY_README = DEPLOY / "README.md"

#: The broker's metrics (the contract between the broker and deploy/), by type. Histograms are
#: exported as <name>_bucket/_sum/_count.
METRICS = {
    "counter": {
        "fjord_requests_total", "fjord_request_errors_total", "fjord_bytes_in_total",
        "fjord_messages_in_total", "fjord_bytes_out_total", "fjord_connections_total",
        "fjord_wal_syncs_total", "fjord_inline_appends_total",
        "fjord_isr_shrinks_total", "fjord_isr_expands_total", "fjord_replica_truncations_total",
        "fjord_log_dir_refused_bytes_total",
    },
    "histogram": {
        "fjord_request_queue_seconds", "fjord_request_processing_seconds",
        "fjord_response_send_seconds", "fjord_wal_write_seconds",
    },
    "gauge": {
        "fjord_connections_active", "fjord_produce_purgatory_size", "fjord_fetch_purgatory_size",
        "fjord_rocksdb_write_stopped", "fjord_rocksdb_delayed_write_rate_bytes",
        "fjord_rocksdb_pending_compaction_bytes", "fjord_rocksdb_running_compactions",
        "fjord_log_dir_size_bytes", "fjord_log_dir_free_bytes", "fjord_log_dir_total_bytes",
        "fjord_log_dir_full", "fjord_log_dir_min_free_bytes", "fjord_partitions", "fjord_topics", "fjord_controller_raft_term",
        "fjord_controller_is_leader", "fjord_controller_commit_lag",
        "fjord_under_replicated_partitions", "fjord_offline_partitions",
        "fjord_active_brokers", "fjord_fenced_brokers",
        "fjord_consumer_group_lag", "fjord_consumer_group_lag_seconds",
        "fjord_consumer_group_members", "fjord_consumer_groups", "fjord_consumer_group_total_lag",
        "fjord_up", "fjord_build_info", "fjord_start_time_seconds",
    },
}
#: Every series name the broker exports.
SERIES_NAMES = (METRICS["counter"] | METRICS["gauge"]
                | {h + s for h in METRICS["histogram"] for s in ("_bucket", "_sum", "_count")})

#: What the dashboard's variables become when its queries are checked: multi-value variables are
#: regex matches (`=~"$topic"`, All = .*), the single-value ones equality matches.
VARIABLE_VALUES = {"job": "fjord", "instance": ".*", "topic": ".*", "group": ".*", "api": "Produce"}
#: Grafana's built-in interval variables.
BUILTIN_VALUES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}

#: Prometheus scrapes and evaluates rules this often in the live test.
SCRAPE_S = 1
#: Records produced past a group's committed offsets to make it lag: above FjordConsumerLagGrowing's
#: threshold (1000).
LAG_RECORDS = 2000
#: How long a condition may take in the live test (a few scrapes; the clients' own waits).
LIVE_TIMEOUT_S = 30.0
#: Alerts that must not fire on the healthy single broker of the live test.
QUIET_WHEN_HEALTHY = ("FjordDown", "FjordNoActiveController", "FjordOfflinePartitions",
                      "FjordUnderReplicatedPartitions", "FjordRocksDBWritesStopped", "FjordHighErrorRate")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install Debian's prometheus package "
                    f"(apt-get install prometheus), as compat-tests/setup.sh does")
    return path


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


def assert_ran(p: subprocess.CompletedProcess):
    assert p.returncode == 0, f"{' '.join(p.args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"


# ----------------------------------------------------------------------------------- promtool

def test_alert_rules_check():
    p = run(_tool("promtool"), "check", "rules", str(ALERTS))
    assert_ran(p)
    rules = int(re.search(r"SUCCESS: (\d+) rules found", p.stdout).group(1))
    assert rules == len(alert_names()), p.stdout


def test_alert_rules_unit_tests():
    """Each alert fires on a failing synthetic series and stays quiet on a healthy one."""
    p = run(_tool("promtool"), "test", "rules", str(ALERTS_TEST), cwd=ALERTS_TEST.parent)
    assert_ran(p)
    assert "SUCCESS" in p.stdout, p.stdout


def test_example_prometheus_config():
    p = run(_tool("promtool"), "check", "config", str(PROM_CONFIG))
    assert_ran(p)
    text = PROM_CONFIG.read_text()
    assert re.search(r"job_name:\s*fjord\b", text) and "localhost:9644" in text and "alerts.yml" in text


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\w+)\s*$", ALERTS.read_text(), re.M)


def test_every_alert_is_unit_tested_both_ways():
    """alerts_test.yml has, for every alert, a case where it fires and one where it does not."""
    tests = ALERTS_TEST.read_text()
    quiet = set(re.findall(r"alertname:\s*(\w+)\s*,?\s*exp_alerts:\s*\[\]", tests))
    fires = set(re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*\n\s*- exp_labels:", tests))
    names = set(alert_names())
    assert names, "no alerts found in alerts.yml"
    assert not names - fires, f"alerts without a test that they fire: {sorted(names - fires)}"
    assert not names - quiet, f"alerts without a test that they stay quiet: {sorted(names - quiet)}"


def test_alert_rules_have_severity_and_annotations():
    """Checked on what Prometheus itself parsed: a real Prometheus loads alerts.yml."""
    with Prometheus(scrape_targets=[], rule_text=ALERTS.read_text()) as prom:
        groups = prom.api("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(alert_names())
    for r in rules:
        assert r["type"] == "alerting" and r["health"] != "err", r
        assert r["labels"].get("severity") in ("critical", "warning"), r
        assert r["annotations"].get("summary") and r["annotations"].get("description"), r
        # Every alert waits out a blip (FjordDown: one failed scrape is not an outage).
        assert r["duration"] >= 60, r
        assert 'job="fjord"' in r["query"], r


# ---------------------------------------------------------------------------------- dashboard

def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(d: dict) -> list[dict]:
    """Every panel, including those inside (collapsed) rows."""
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_queries(d: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, Prometheus annotation and query variable."""
    out = []
    for p in all_panels(d):
        for t in p.get("targets", []):
            out.append((f"panel {p['id']} {p['title']!r} target {t['refId']}", t["expr"]))
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a['name']!r}", a["expr"]))
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q) or re.fullmatch(r"\s*query_result\((.*)\)\s*()", q)
        assert m, f"variable {v['name']}: unexpected query {q!r}"
        out.append((f"variable {v['name']}", m.group(1)))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """Fills in Grafana's variables: `=~"$v"` gets a regex, `="$v"` a value, $__intervals a duration."""
    def var(m):
        name = m.group(1) or m.group(2)
        if name in BUILTIN_VALUES:
            return BUILTIN_VALUES[name]
        assert name in values, f"unknown variable ${name} in {expr!r}"
        return values[name]

    out = re.sub(r'=~"\$\{?(\w+)\}?"', lambda m: f'=~"{".*" if m.group(1) != "job" else values["job"]}"', expr)
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", var, out)
    assert "$" not in out, out
    return out


def test_dashboard_structure():
    d = dashboard()
    assert d["schemaVersion"] >= 36 and d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("DS_PROMETHEUS")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", \
        "the dashboard needs a Prometheus datasource variable DS_PROMETHEUS"
    defined = set(variables) | set(BUILTIN_VALUES)
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in all_panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if "repeat" in p:
            assert p["repeat"] in variables and variables[p["repeat"]].get("multi"), p["title"]
    for where, expr in dashboard_queries(d):
        used = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", expr)}
        assert used <= defined, f"{where}: undefined variables {used - defined}"
    # Top-level panels do not overlap (collapsed rows' panels are laid out when expanded).
    cells = {}
    for p in d["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
    # What the dashboard is for: each of these appears in some query.
    exprs = " ".join(e for _, e in dashboard_queries(d))
    for needed in ["fjord_bytes_in_total", "fjord_bytes_out_total", "fjord_messages_in_total",
                   "fjord_requests_total", "histogram_quantile(0.99", "histogram_quantile(0.95",
                   "histogram_quantile(0.5", "fjord_consumer_group_total_lag", "fjord_consumer_group_lag{",
                   "fjord_consumer_group_lag_seconds", "fjord_request_errors_total", "fjord_log_dir_free_bytes",
                   "fjord_wal_write_seconds_bucket", "fjord_rocksdb_write_stopped", "fjord_connections_active",
                   "fjord_controller_is_leader", "fjord_under_replicated_partitions", "fjord_offline_partitions"]:
        assert needed in exprs, f"no dashboard query uses {needed}"


def test_dashboard_promql_parses(tmp_path):
    """Every dashboard query, variables filled in, as a recording rule for `promtool check rules`."""
    queries = dashboard_queries(dashboard())
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(expr, VARIABLE_VALUES)}
             for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))  # JSON is YAML
    p = run(_tool("promtool"), "check", "rules", str(path))
    if p.returncode != 0:
        # Name the panel of each failing rule.
        where = "\n".join(f"  dashboard:query_{i} = {w}" for i, (w, _) in enumerate(queries))
        pytest.fail(f"promtool check rules failed on the dashboard's queries:\n{p.stdout}\n{p.stderr}\n{where}")
    assert f"SUCCESS: {len(rules)} rules found" in p.stdout, p.stdout


def test_deploy_uses_only_the_brokers_metric_names():
    """A typo in a metric name would make a panel empty or an alert silent, with no error."""
    texts = {
        "dashboard": " ".join(e for _, e in dashboard_queries(dashboard())),
        "alerts.yml": ALERTS.read_text(),
        "alerts_test.yml": ALERTS_TEST.read_text(),
        "README.md": DEPLOY_README.read_text(),
    }
    for name, text in texts.items():
        unknown = set(re.findall(r"\bfjord_[a-z_]+[a-z]\b", text)) - SERIES_NAMES - METRICS["histogram"]
        assert not unknown, f"{name} uses metrics the broker does not export: {sorted(unknown)}"


# ---------------------------------------------------------------------------- real Prometheus

class Prometheus:
    """A real Prometheus on a free 127.0.0.1 port with a temp config and TSDB."""

    def __init__(self, scrape_targets: list[str], rule_text: str | None = None, interval_s: int = SCRAPE_S):
        self.dir = Path(tempfile.mkdtemp(prefix="fjord-compat-prometheus-"))
        self.port = free_port()
        self.log_path = self.dir / "prometheus.log"
        config = {
            "global": {"scrape_interval": f"{interval_s}s", "scrape_timeout": f"{interval_s}s",
                       "evaluation_interval": f"{interval_s}s"},
            "rule_files": [],
            "scrape_configs": [{"job_name": "fjord", "metrics_path": "/metrics",
                                "static_configs": [{"targets": scrape_targets}]}],
        }
        if rule_text is not None:
            (self.dir / "rules.yml").write_text(rule_text)
            config["rule_files"].append(str(self.dir / "rules.yml"))
        (self.dir / "prometheus.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Prometheus":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [_tool("prometheus"), f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._ready, "Prometheus ready", timeout_s=LIVE_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise AssertionError(f"Prometheus did not start\n{self.log_tail()}")
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited with {self.proc.returncode}\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join([f"----- prometheus log ({self.log_path}) -----", *text[-lines:]])

    def api(self, path: str, **params) -> dict | list:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query: [{'metric': {...}, 'value': float}]."""
        data = self.api("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return [{"metric": s["metric"], "value": float(s["value"][1])} for s in data["result"]]

    def value(self, promql: str) -> float | None:
        """The value of a query that returns one series, or None when it returns none."""
        res = self.query(promql)
        assert len(res) <= 1, f"{promql}: {res}"
        return res[0]["value"] if res else None

    def alerts(self, name: str, state: str = "firing", **labels) -> list[dict]:
        return [a for a in self.api("/api/v1/alerts")["alerts"]
                if a["labels"].get("alertname") == name and a["state"] == state
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    def firing(self) -> list[str]:
        return sorted(f"{a['labels']['alertname']}{ {k: v for k, v in a['labels'].items() if k != 'alertname'} }"
                      for a in self.api("/api/v1/alerts")["alerts"] if a["state"] == "firing")


def live_rules() -> str:
    """alerts.yml with every `for:` set to 0s, so an alert fires at its first true evaluation."""
    text, n = re.subn(r"(?m)^(\s+)for:\s*\S+\s*$", r"\1for: 0s", ALERTS.read_text())
    assert n == len(alert_names()), f"expected one `for:` per alert, replaced {n}"
    return text


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def consume_and_commit(bootstrap: str, group: str, topic: str, count: int) -> int:
    """A classic-protocol consumer of `group` reads `count` records, commits, and leaves."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500})
    try:
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + LIVE_TIMEOUT_S
        while got < count:
            assert time.monotonic() < deadline, f"consumer read {got} of {count} records"
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got += 1
        committed = c.commit(asynchronous=False)
        assert all(tp.error is None for tp in committed), committed
        return sum(tp.offset for tp in committed)
    finally:
        c.close()


@pytest.mark.skipif(REFERENCE, reason="the Kafka reference broker has no metrics listener (metrics.listener)")
def test_real_prometheus_scrapes_fjord_and_alerts(start_broker, new_topic):
    from confluent_kafka.admin import AdminClient, NewTopic

    mport = free_port()
    b = start_broker("monitoring", **group_overrides(**{
        "auto.create.topics.enable": "false", "num.partitions": 1,
        "metrics.listener": f"http://127.0.0.1:{mport}"}))
    target = f"127.0.0.1:{mport}"
    wait_for(lambda: http_ok(f"http://{target}/metrics"), f"GET http://{target}/metrics", timeout_s=LIVE_TIMEOUT_S)

    with Prometheus(scrape_targets=[target], rule_text=live_rules()) as prom:
        def ctx() -> str:
            return f"\nfiring: {prom.firing()}\n{prom.log_tail(15)}"

        def until(cond, what):
            try:
                return wait_for(cond, what, timeout_s=LIVE_TIMEOUT_S, interval_s=SCRAPE_S / 4)
            except AssertionError as e:
                raise AssertionError(f"{e}{ctx()}") from None

        # Scraped, and the broker says it is up.
        until(lambda: prom.value(f'up{{job="fjord",instance="{target}"}}') == 1, "up == 1")
        until(lambda: prom.value(f'fjord_up{{job="fjord",instance="{target}"}}') == 1, "fjord_up == 1")
        until(lambda: not prom.alerts("FjordDown"), "FjordDown resolved once the broker is scraped")
        assert prom.value('count(fjord_build_info{version!=""})') == 1
        assert 0 < time.time() - prom.value("fjord_start_time_seconds") < 600

        # Traffic: N records of a known size produced, read back and committed by group g1.
        topic = new_topic(b, partitions=3)
        n, size = 300, 200
        records = [Rec(f"k{i}".encode(), bytes([i % 251]) * size) for i in range(n)]
        assert_ok(produce_confluent(b.bootstrap, topic, records))
        t = f'topic="{topic}"'
        until(lambda: prom.value(f"sum(fjord_messages_in_total{{{t}}})") == n, f"fjord_messages_in_total{{{t}}} == {n}")
        assert prom.value(f"sum(fjord_bytes_in_total{{{t}}})") >= n * size
        g1 = f"monitoring-{uuid.uuid4().hex[:8]}"
        assert consume_and_commit(b.bootstrap, g1, topic, n) == n
        until(lambda: (prom.value(f"sum(fjord_bytes_out_total{{{t}}})") or 0) >= n * size,
              f"fjord_bytes_out_total{{{t}}} >= {n * size}")

        # Requests counted per API and version; histograms are real ones, and count what the
        # request counter counts (once the traffic has stopped).
        assert prom.value('sum(fjord_requests_total{api="Produce"})') >= 1
        assert all(s["metric"].get("version", "").isdigit()
                   for s in prom.query('fjord_requests_total{api="Produce"}')), prom.query("fjord_requests_total")
        for api in ("Produce", "Fetch"):
            until(lambda: prom.value(f'sum(fjord_request_processing_seconds_count{{api="{api}"}})')
                  == prom.value(f'sum(fjord_requests_total{{api="{api}"}})'),
                  f"{api}: processing histogram count == requests_total")
            for h in ("fjord_request_queue_seconds", "fjord_request_processing_seconds", "fjord_response_send_seconds"):
                inf = prom.value(f'sum({h}_bucket{{api="{api}",le="+Inf"}})')
                assert inf is not None and inf == prom.value(f'sum({h}_count{{api="{api}"}})') >= 1, (h, api)
            p99 = prom.value(f'histogram_quantile(0.99, sum by (le) (fjord_request_processing_seconds_bucket{{api="{api}"}}))')
            assert p99 is not None and 0 < p99 < 60, (api, p99)

        # An error code in a response: creating a topic that exists (TOPIC_ALREADY_EXISTS).
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        with pytest.raises(Exception, match="TOPIC_ALREADY_EXISTS|already exists"):
            admin.create_topics([NewTopic(topic, 3, 1)], operation_timeout=10)[topic].result(timeout=20)
        until(lambda: (prom.value('sum(fjord_request_errors_total{api="CreateTopics",error="TOPIC_ALREADY_EXISTS"})') or 0) >= 1,
              'fjord_request_errors_total{api="CreateTopics",error="TOPIC_ALREADY_EXISTS"} >= 1')

        # g1 is caught up: lag 0 on each of the 3 partitions, seen by Prometheus before it grows
        # (so the lag's trend has a point at 0), no members left after the consumer closed.
        gl = f'group="{g1}"'
        until(lambda: prom.value(f"fjord_consumer_group_total_lag{{{gl}}}") == 0, f"fjord_consumer_group_total_lag{{{gl}}} == 0")
        until(lambda: len(prom.query(f"fjord_consumer_group_lag{{{gl},{t}}} == 0")) == 3, f"3 partitions with lag 0 for {g1}")
        until(lambda: prom.value(f"max(fjord_consumer_group_lag_seconds{{{gl}}})") == 0, f"lag seconds of {g1} == 0")
        until(lambda: prom.value(f"sum(fjord_consumer_group_members{{{gl}}})") == 0, f"{g1} has no members")
        assert prom.value("sum(fjord_consumer_groups)") >= 1

        # g1 stops consuming while LAG_RECORDS more arrive: its lag grows and the alert fires.
        assert_ok(produce_confluent(b.bootstrap, topic, [Rec(b"late", b"x" * size)] * LAG_RECORDS))
        until(lambda: prom.value(f"fjord_consumer_group_total_lag{{{gl}}}") == LAG_RECORDS,
              f"fjord_consumer_group_total_lag{{{gl}}} == {LAG_RECORDS}")
        until(lambda: prom.value(f"sum(fjord_consumer_group_lag{{{gl},{t}}})") == LAG_RECORDS,
              f"fjord_consumer_group_lag{{{gl}}} sums to {LAG_RECORDS}")
        until(lambda: (prom.value(f"max(fjord_consumer_group_lag_seconds{{{gl}}})") or 0) > 0,
              f"fjord_consumer_group_lag_seconds{{{gl}}} > 0")
        until(lambda: prom.alerts("FjordConsumerLagGrowing", group=g1, instance=target),
              f"FjordConsumerLagGrowing firing for {g1}")

        # Every metric of the contract is there, and every dashboard query answers with data.
        names = {s["metric"]["__name__"] for s in prom.query(f'{{__name__=~"fjord_.+",instance="{target}"}}')}
        missing = SERIES_NAMES - names
        assert not missing, (f"metrics not exported after produce, consume, commit, lag and an error: "
                             f"{sorted(missing)} (a metric that appears only at its first event leaves its "
                             f"panels empty and its rate() undefined: export it at 0 from the start)")
        empty = []
        for where, expr in dashboard_queries(dashboard()):
            result = prom.query(substitute(expr, VARIABLE_VALUES))  # fails on a query Prometheus refuses
            if not result and not where.startswith("annotation"):  # annotations mark rare events
                empty.append(f"{where}: {expr}")
        assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
        # A healthy single broker raises none of these (the latency and disk alerts depend on the
        # machine, the lag alerts on the scenario).
        for quiet in QUIET_WHEN_HEALTHY:
            assert not prom.alerts(quiet), f"{quiet} fires on a healthy broker{ctx()}"

        # The broker stops: its scrapes fail and FjordDown fires for its instance.
        b.stop()
        until(lambda: prom.value(f'up{{job="fjord",instance="{target}"}}') == 0, "up == 0")
        until(lambda: prom.alerts("FjordDown", instance=target), f"FjordDown firing for {target}")
        assert prom.value("fjord_up") is None, "fjord_up should go stale when the scrape fails"
