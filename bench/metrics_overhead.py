#!/usr/bin/env python3
"""What the metrics cost: the produce benchmark against Fjord with `metrics.listener` on (the
default) and off, alternating on fresh data dirs in one run, with a scrape of /metrics every
second while metrics are on (as a Prometheus would).

    python3 bench/metrics_overhead.py [--rounds 3] [--records 1000000]

Needs target/release/fjord and bench/target/release/fjord-bench (`make bench` builds both).
Prints one line per run and a summary: median MB/s and CPU seconds per GB with and without.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FJORD = os.path.join(ROOT, "target", "release", "fjord")
BENCH = os.path.join(ROOT, "bench", "target", "release", "fjord-bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(metrics_on, records, partitions):
    port, http = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="fjord-metrics-overhead-") as d:
        listener = f"http://127.0.0.1:{http}" if metrics_on else "none"
        proc = subprocess.Popen(
            [FJORD, "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
             "--override", f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
             "--override", f"log.dirs={d}/data", "--override", f"metrics.listener={listener}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()
        scrapes = [0]

        def scrape():
            while not stop.wait(1.0):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=2).read()
                    scrapes[0] += 1
                except OSError:
                    pass

        try:
            subprocess.run([BENCH, "--bootstrap", f"127.0.0.1:{port}", "wait-ready"], check=True,
                           stdout=subprocess.DEVNULL)
            if metrics_on:
                threading.Thread(target=scrape, daemon=True).start()
            out = os.path.join(d, "result.json")
            subprocess.run([BENCH, "--bootstrap", f"127.0.0.1:{port}", "--broker-pid", str(proc.pid),
                            "--out", out, "produce", "--acks", "all", "--partitions", str(partitions),
                            "--records", str(records)], check=True, stdout=subprocess.DEVNULL)
            with open(out) as f:
                return json.load(f), scrapes[0]
        finally:
            stop.set()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=12)
    a = ap.parse_args()
    rows = {True: [], False: []}
    for r in range(a.rounds):
        # Alternate which goes first, so drift in the machine's state hits both alike.
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            res, scrapes = run_once(on, a.records, a.partitions)
            mbps = float(res["mb_per_s"])
            cpu = float(res["broker"]["cpu_s"]) / (float(res["bytes"]) / 1e9)
            rows[on].append((mbps, cpu))
            print(f"round {r + 1} metrics={'on ' if on else 'off'} {mbps:8.1f} MB/s  "
                  f"{cpu:6.2f} CPU s/GB  scrapes={scrapes}", flush=True)
    for on in (False, True):
        mb = statistics.median(x[0] for x in rows[on])
        cpu = statistics.median(x[1] for x in rows[on])
        print(f"median metrics={'on ' if on else 'off'} {mb:8.1f} MB/s  {cpu:6.2f} CPU s/GB")
    off = statistics.median(x[0] for x in rows[False])
    on = statistics.median(x[0] for x in rows[True])
    print(f"throughput with metrics / without: {on / off:.3f}")


if __name__ == "__main__":
    sys.exit(main())
