"""The replicated benchmark: a 3-node cluster of Fjord, then of Apache Kafka, on the same machine.

Not part of the test suite (pytest collects test_*.py only): `make bench-replicated` runs it once
against Fjord and once against Kafka (the compat suite's reference broker, through
`reference/kafka-as-fjord`, given the JVM settings `bench/run.py` gives it: a fixed 1 GiB heap
and Kafka's own JVM flags instead of the test suite's quick-start tuning).

Each node is a broker and a controller voter; both brokers run on their defaults. Every topic
is created with replication factor 3 and min.insync.replicas=2, and every producer uses
acks=all. The load comes from both generators `bench/run.py` uses: fjord-bench (librdkafka) and
Kafka's own perf tools (the Java client), through fjord-bench's `java-*` scenarios:

- produce: throughput of one librdkafka producer into 12 partitions;
- latency: end-to-end p99 (producer to consumer) at a fixed rate, one partition;
- catchup: a backlog, then one consumer reading it from the start;
- java-produce, java-latency, java-consume: the same three with kafka-producer-perf-test and
  kafka-consumer-perf-test.

Every node's CPU time and RSS (sampled every 200 ms) are recorded per scenario. One JSON line per
scenario and broker is appended to REPLICATED_OUT (default bench/results/replicated.jsonl);
`python3 compat-tests/replicated_bench.py summary FILE [RUN]` prints the Markdown table of a run.

Environment: REPLICATED_OUT, REPLICATED_RUN (a name shared by the Fjord and the Kafka half, so
the summary pairs them), REPLICATED_SCALE (1.0; 0.1 for a smoke run), REPLICATED_ONLY (a
comma-separated list of scenario names).
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_bench_run():
    """bench/run.py, for its paths, Kafka's JVM settings and its /proc readers: what `make bench`
    uses, the replicated benchmark uses too."""
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_bench_run()
FJORD_BENCH = bench.FJORD_BENCH_BIN
KAFKA_LIB = bench.KAFKA_LIB
OUT = Path(os.environ.get("REPLICATED_OUT", REPO / "bench" / "results" / "replicated.jsonl"))
RUN = os.environ.get("REPLICATED_RUN", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
SCALE = float(os.environ.get("REPLICATED_SCALE", "1.0"))
ONLY = {s for s in os.environ.get("REPLICATED_ONLY", "").split(",") if s}
KiB = 1024

#: As bench/run.py starts Kafka for its benchmarks (kafka-server-start.sh's heap and flags), so
#: that the reference is not measured with the test suite's quick-start JVM.
BENCH_JVM = {
    "KAFKA_HEAP_OPTS": bench.KAFKA_HEAP_OPTS,
    "KAFKA_JVM_PERFORMANCE_OPTS": bench.KAFKA_JVM_PERFORMANCE_OPTS,
}


def n(full: int) -> str:
    return str(max(1, int(full * SCALE)))


def scenarios() -> list[tuple[str, list[str], int]]:
    """(name, fjord-bench arguments, timeout in seconds)."""
    latency_s = 20 if SCALE >= 1 else 5
    warmup_s = 5
    java = ["--kafka-lib", str(KAFKA_LIB), "--partitions", "12", "--record-size", str(KiB)]
    rate = 10_000
    out = [
        ("produce", ["produce", "--topic", "rb-produce", "--partitions", "12", "--producers", "1",
                     "--records", n(1_000_000), "--record-size", str(KiB), "--acks", "all",
                     "--codec", "none"], 600),
        ("latency-10k", ["latency", "--topic", "rb-latency", "--partitions", "1", "--rate", str(rate),
                         "--duration-s", str(latency_s), "--record-size", str(KiB), "--acks", "all"],
         latency_s + 180),
        ("catchup", ["catchup", "--topic", "rb-catchup", "--partitions", "12",
                     "--backlog-bytes", n(1024**3), "--record-size", str(KiB), "--passes", "3"], 900),
        ("java-produce", ["java-produce", "--topic", "rb-java-produce", *java, "--records", n(1_000_000),
                          "--acks", "all", "--linger-ms", "5", "--batch-size", "262144",
                          "--payload-lines", "1000"], 600),
        ("java-latency-10k", ["java-latency", "--topic", "rb-java-latency", *java,
                              "--records", str(rate * (latency_s + warmup_s)),
                              "--warmup-records", str(rate * warmup_s), "--throughput", str(rate),
                              "--acks", "all", "--linger-ms", "0", "--batch-size", "262144"],
         latency_s + warmup_s + 180),
        ("java-consume", ["java-consume", "--topic", "rb-java-consume", *java, "--records", n(1_000_000),
                          "--payload-lines", "1000", "--passes", "3"], 900),
    ]
    return [s for s in out if not ONLY or s[0] in ONLY]


class Sampler:
    """Every node's RSS every 200 ms while a scenario runs, and its CPU time over it."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.cpu0 = {p: bench.cpu_seconds(p) or 0.0 for p in pids}
        self.rss_max = {p: 0 for p in pids}
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_ev.wait(0.2):
            for p in self.pids:
                rss = bench.rss_bytes(p)
                if rss is not None:
                    self.rss_max[p] = max(self.rss_max[p], rss)

    def stop(self) -> dict:
        self.stop_ev.set()
        self.thread.join()
        cpu = {p: round((bench.cpu_seconds(p) or self.cpu0[p]) - self.cpu0[p], 2) for p in self.pids}
        return {"node_cpu_s": list(cpu.values()),
                "node_rss_max_mib": [round(self.rss_max[p] / 2**20, 1) for p in self.pids]}


def run_scenario(label: str, bootstrap: str, pids: list[int], name: str, args: list[str],
                 timeout_s: int, results: Path) -> dict:
    out = results / f"{label}-{name}.json"
    cmd = [str(FJORD_BENCH), "--bootstrap", bootstrap, "--label", label, "--out", str(out),
           "--replication-factor", "3", "--min-insync-replicas", "2", "--max-s", str(max(60, timeout_s - 60)),
           *args]
    print(f"{label}: {name}: {' '.join(cmd[1:])}", flush=True)
    sampler = Sampler(pids)
    started = time.monotonic()
    with open(results / f"{label}-{name}.log", "wb") as log:
        try:
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=log, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = None
    nodes = sampler.stop()
    result = json.loads(out.read_text()) if out.exists() else {}
    row = {"run": RUN, "broker": label, "scenario": name, "exit": rc,
           "seconds": round(time.monotonic() - started, 1),
           "records_per_s": result.get("records_per_s"), "mb_per_s": result.get("mb_per_s"),
           "latency_ms": result.get("latency_ms"), "errors": result.get("errors"),
           "failed": result.get("failed", rc != 0), "notes": result.get("notes", [])[:5], **nodes}
    print(f"{label}: {name}: {json.dumps(row)}", flush=True)
    return row


@pytest.mark.timeout(7200)
def test_replicated(start_cluster):
    from conftest import REFERENCE

    assert FJORD_BENCH.exists(), f"{FJORD_BENCH} missing: cargo build --release --manifest-path bench/Cargo.toml"
    if any(a.startswith("java") for a, _, _ in scenarios()):
        assert KAFKA_LIB.exists(), f"{KAFKA_LIB} missing: FJORD_COMPAT_REFERENCE=1 bash compat-tests/setup.sh"
    label = "kafka" if REFERENCE else "fjord"
    if REFERENCE:
        for k, v in BENCH_JVM.items():
            os.environ.setdefault(k, v)
    nodes = start_cluster("replicated-bench", 3)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    pids = [n.proc.pid for n in nodes]
    time.sleep(5)
    idle = [round((bench.rss_bytes(p) or 0) / 2**20, 1) for p in pids]
    print(f"{label}: idle RSS per node (MiB): {idle}", flush=True)
    results = OUT.parent / f"replicated-{RUN}"
    results.mkdir(parents=True, exist_ok=True)
    rows = [{"run": RUN, "broker": label, "scenario": "idle", "node_rss_max_mib": idle}]
    for name, args, timeout_s in scenarios():
        rows.append(run_scenario(label, bootstrap, pids, name, args, timeout_s, results))
        assert all(n.proc.poll() is None for n in nodes), f"a {label} node died during {name}"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    failed = [r["scenario"] for r in rows if r.get("failed")]
    assert not failed, f"{label}: scenarios failed: {failed}"


def summary(path: Path, run: str | None) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    run = run or rows[-1]["run"]
    by = {(r["broker"], r["scenario"]): r for r in rows if r["run"] == run}
    names = list(dict.fromkeys(s for _, s in by))
    lines = [f"Run {run}.", "",
             "| scenario | figure | Fjord | Kafka | ratio | max RSS per node, Fjord / Kafka (MiB) |",
             "|---|---|---|---|---|---|"]

    def fig(r, name):
        if name == "idle":
            return "idle RSS per node", None
        if r.get("latency_ms"):
            return "p99 ms", r["latency_ms"].get("p99")
        return "MB/s", r.get("mb_per_s")

    for name in names:
        f, k = by.get(("fjord", name), {}), by.get(("kafka", name), {})
        what, fv = fig(f, name)
        _, kv = fig(k, name)
        ratio = f"{fv / kv:.2f}x" if fv and kv else "-"
        rss = f"{max(f.get('node_rss_max_mib') or [0])} / {max(k.get('node_rss_max_mib') or [0])}"
        lines.append(f"| {name} | {what} | {fv if fv is not None else '-'} | {kv if kv is not None else '-'} "
                     f"| {ratio} | {rss} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "summary":
        print(summary(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
    else:
        sys.exit(__doc__)
