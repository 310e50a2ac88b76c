#!/usr/bin/env python3
"""Fjord against Apache Kafka on this machine, end to end: what `make bench` runs.

    python3 bench/run.py [--quick] [--only fjord|kafka] [--scenarios produce,latency-10k] ...

1. Builds `fjord` and `fjord-bench` in release (through ccache when it is installed), and fetches
   Apache Kafka 4.4 (`--kafka-version 4.1.1` for another) and its load tools from Maven Central
   through `FJORD_COMPAT_REFERENCE=1 compat-tests/setup.sh`.
2. Empties the page cache (as root) and reads the brokers' programs back in, then measures the
   disk under the data dirs (`fjord-bench limits`), so a reader can tell a broker limit from a
   machine limit.
3. For each broker in turn on a fresh data dir and a free port: times startup to the first
   Metadata answer, reads idle RSS, runs every scenario, then SIGTERMs it.
   A full run does this in `--rounds` rounds (default 2), the brokers' order reversed in every
   other round (fjord, kafka, kafka, fjord, ...) and the limits measured again at the start of
   each: a shared or throttled machine then weighs on both brokers alike, and the report takes
   the median of each figure over the rounds.
4. `fjord-bench report` turns bench/results/<run>/ into Markdown and SVG charts; a full run splices
   the Markdown into BENCHMARKS.md and copies its JSON to bench/results/latest/.

Only the Python standard library, so `make bench` needs no venv. Every process this starts runs in
its own process group and is killed when this exits, on ^C and on SIGTERM. A scenario that fails
or times out is recorded as failed for that broker and the run goes on; a broker that dies is
restarted on a fresh data dir for the scenarios after it.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_ROOT = BENCH / "results"
#: The newest published run: a copy, not a symlink, so git can hold it (see README.md).
LATEST = RESULTS_ROOT / "latest"
CHARTS = BENCH / "charts"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
BEGIN_MARKER = "<!-- bench:begin -->"
END_MARKER = "<!-- bench:end -->"

#: Overridable like compat-tests' FJORD_BIN, e.g. to benchmark a binary built elsewhere.
FJORD_BIN = Path(os.environ.get("FJORD_BIN", REPO / "target" / "release" / "fjord"))
FJORD_BENCH_BIN = Path(os.environ.get("FJORD_BENCH_BIN", BENCH / "target" / "release" / "fjord-bench"))
KAFKA_AS_FJORD = REPO / "compat-tests" / "reference" / "kafka-as-fjord"
#: The reference broker's version (--kafka-version); its jars, with Kafka's own load tools, are
#: where compat-tests/setup.sh copies them.
KAFKA_VERSION = "4.4.0"


def kafka_lib(version: str) -> Path:
    return REPO / "compat-tests" / "reference" / "target" / f"kafka-{version}"


KAFKA_LIB = kafka_lib(KAFKA_VERSION)
#: Beside the checkout, so the brokers write to the disk the repository is on. bench/target is
#: already ignored by git; each broker's dir is removed once it has stopped (unless --keep-data).
DEFAULT_DATA_ROOT = BENCH / "target" / "bench-data"

#: kafka-server-start.sh's default heap, which the apache/kafka image keeps. Fixed (-Xms = -Xmx)
#: so the JVM does not resize its heap in the middle of a scenario.
KAFKA_HEAP_OPTS = "-Xmx1G -Xms1G"
#: kafka-run-class.sh's default JVM flags (Kafka 4.x).
KAFKA_JVM_PERFORMANCE_OPTS = ("-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "
                              "-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent "
                              "-XX:MaxInlineLevel=15 -Djava.awt.headless=true")
#: kafka-as-fjord is tuned for short test runs: `-XX:TieredStopAtLevel=1` (C1 only: quick start,
#: slow steady state) and a 768 MiB heap. Until it honours KAFKA_HEAP_OPTS, the flags above go in
#: `_JAVA_OPTIONS`, which HotSpot applies after the command line, so they win over its own; this
#: one puts C2 back (4 is the JVM default).
KAFKA_UNDO_TEST_TUNING = "-XX:TieredStopAtLevel=4"
#: Options of the `java` launcher rather than of the VM: `_JAVA_OPTIONS` must not carry them (the
#: VM refuses to start on "Unrecognized option: -server"), and on a 64-bit JDK they change nothing.
LAUNCHER_ONLY_OPTIONS = {"-server", "-client"}

#: Kafka on 2 cores takes ~5-10 s to format and start; more than this is a broken start.
READY_TIMEOUT_S = 90
#: How long a broker sits after its first Metadata answer before idle RSS is read.
IDLE_SETTLE_S = 5
#: A clean shutdown slower than this is reported, then the process group is SIGKILLed.
STOP_TIMEOUT_S = 60
#: One `fjord-bench limits` write, to measure the data dir's disk.
LIMITS_BYTES = 2 * 1024**3
LIMITS_TIMEOUT_S = 600
#: Below this much free space under the data root a full run may fill the disk. fjord-bench
#: deletes each scenario's topic, but space comes back late (Kafka deletes files after a delay,
#: RocksDB on compaction), so count every scenario's data: 4 x 2 GiB produced, the 2 GiB
#: backlog, 0.4 GB of orders, 2 x 1.6 GB of logs before compression.
MIN_FREE_BYTES_FULL = 16 * 1024**3
#: A 1-minute load average above this share of the cores means something else is running and
#: the numbers will be noisy; the run goes on but says so.
BUSY_LOAD_PER_CORE = 0.5

#: Room between fjord-bench's own cap (`--max-s`) and our kill: topic creation before the
#: measured phase, purging and topic deletion after it.
MAX_S_MARGIN_S = 60

KiB = 1024
GiB = 1024**3


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    #: The --scenarios key and the file name: results/<run>/<label>-<name>.json.
    name: str
    #: The fjord-bench subcommand; --scenarios also accepts it, to select a whole family.
    command: str
    args: tuple[str, ...]
    #: Past this the fjord-bench process group is killed and the scenario recorded as failed.
    #: fjord-bench itself stops its measured phases MAX_S_MARGIN_S earlier (`--max-s`), so it
    #: normally writes a result, with a note, instead of being killed.
    timeout_s: int


def scenarios(quick: bool) -> list[Scenario]:
    """Sized so that both brokers take ~4.5 minutes a round on 2 cores (measured phases of 3-10 s,
    the latency runs 20 s): two rounds and a cold build (~16 minutes) stay inside 30; --quick is
    ~1/10.

    Order matters: create-partitions goes last because 5,000 partitions make every later request
    on Kafka slower, and catchup after the short runs so its 2 GiB do not sit in the page cache
    during them.
    """
    scale = 0.1 if quick else 1.0

    def n(full: int, floor: int = 1) -> str:
        return str(max(floor, int(full * scale)))

    def t(full_s: int, quick_s: int) -> int:
        return quick_s if quick else full_s

    out = []
    for acks in ("1", "all"):
        for parts in (1, 12):
            name = f"produce-acks{acks}-p{parts}"
            out.append(Scenario(name, "produce", (
                "--topic", f"bench-{name}", "--partitions", str(parts), "--producers", "1",
                "--records", n(2_000_000), "--record-size", str(1 * KiB), "--acks", acks,
                "--codec", "none"), t(300, 120)))
    # The broker's own ceiling: a near-free client resending one pre-encoded batch (librdkafka
    # holds a shared 2-core machine near 1 GB/s whatever the broker).
    out.append(Scenario("produce-raw-acksall-p12", "produce-raw", (
        "--topic", "bench-produce-raw", "--partitions", "12", "--records", n(2_000_000),
        "--record-size", str(1 * KiB), "--acks", "all"), t(300, 120)))
    latency_s = 5 if quick else 20
    for rate in (10_000, 50_000):
        name = f"latency-{rate // 1000}k"
        out.append(Scenario(name, "latency", (
            "--topic", f"bench-{name}", "--partitions", "1", "--rate", str(rate),
            "--duration-s", str(latency_s), "--record-size", str(1 * KiB), "--acks", "all"),
            latency_s + t(120, 90)))
    out.append(Scenario("orders", "orders", (
        "--topic", "bench-orders", "--partitions", "24", "--producers", "8",
        "--records", n(2_000_000), "--record-size", "200", "--acks", "all", "--idempotent"),
        t(300, 120)))
    for codec in ("lz4", "zstd"):
        name = f"logs-{codec}"
        out.append(Scenario(name, "logs", (
            "--topic", f"bench-{name}", "--partitions", "6", "--records", n(400_000),
            "--record-size", str(4 * KiB), "--codec", codec, "--acks", "1",
            "--batch-bytes", str(1024 * KiB), "--linger-ms", "50"), t(300, 120)))
    out.append(Scenario("catchup", "catchup", (
        "--topic", "bench-catchup", "--partitions", "12", "--backlog-bytes", n(2 * GiB),
        "--record-size", str(1 * KiB), "--passes", "5"), t(900, 180)))
    # Kafka's own load tools and the Java client, as a Kafka user would first try either broker:
    # kafka-producer-perf-test at full speed and at a fixed rate, kafka-consumer-perf-test on its
    # defaults reading a backlog (bench/src/javatools.rs).
    java = ("--kafka-lib", str(KAFKA_LIB), "--partitions", "12", "--record-size", str(1 * KiB))
    producer = ("--acks", "all", "--linger-ms", "5", "--batch-size", "262144")
    out.append(Scenario("java-produce", "java-produce", (
        "--topic", "bench-java-produce", *java, "--records", n(2_000_000), *producer), t(300, 120)))
    # The same with records drawn from a file of 1,000 random lines: the tool's own per-record
    # random payload no longer sets the pace, the Java producer and the broker do.
    out.append(Scenario("java-produce-file", "java-produce", (
        "--topic", "bench-java-produce-file", *java, "--records", n(2_000_000), *producer,
        "--payload-lines", "1000"), t(300, 120)))
    out.append(Scenario("java-consume", "java-consume", (
        "--topic", "bench-java-consume", *java, "--records", n(2_000_000), "--payload-lines", "1000",
        "--passes", "3"), t(600, 180)))
    rate = 20_000
    warmup_s = 5  # the client JVM's first seconds are left out (--warmup-records)
    for linger in (5, 0):
        out.append(Scenario(f"java-latency-20k-linger{linger}", "java-latency", (
            "--topic", f"bench-java-latency-linger{linger}", *java, "--records", str(rate * (latency_s + warmup_s)),
            "--warmup-records", str(rate * warmup_s), "--throughput", str(rate), "--acks", "all",
            "--linger-ms", str(linger), "--batch-size", "262144"), latency_s + warmup_s + t(120, 90)))
    out.append(Scenario("idle-connections", "idle-connections", (
        "--count", "1000", "--hold-s", "2" if quick else "10"), t(180, 90)))
    out.append(Scenario("create-partitions", "create-partitions", (
        "--topics", n(50), "--partitions-per-topic", "100"), t(600, 180)))
    return out


def select(all_scenarios: list[Scenario], wanted: str | None) -> list[Scenario]:
    if not wanted:
        return all_scenarios
    keys = [w.strip() for w in wanted.split(",") if w.strip()]
    known = {s.name for s in all_scenarios} | {s.command for s in all_scenarios}
    unknown = [k for k in keys if k not in known]
    if unknown:
        sys.exit(f"bench/run.py: unknown scenario(s) {', '.join(unknown)}; "
                 f"known: {', '.join(s.name for s in all_scenarios)} "
                 f"(or a family: {', '.join(sorted({s.command for s in all_scenarios}))})")
    return [s for s in all_scenarios if s.name in keys or s.command in keys]


# --------------------------------------------------------------------------------------------
# Output and process bookkeeping
# --------------------------------------------------------------------------------------------

T0 = time.monotonic()


def say(msg: str = "") -> None:
    el = int(time.monotonic() - T0)
    print(f"[{el // 60:02d}:{el % 60:02d}] {msg}", flush=True)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds) // 60} min {int(seconds) % 60:02d} s"


#: Every process group this run started and has not reaped; killed by `kill_all` on any exit.
_LIVE: dict[int, subprocess.Popen] = {}


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when run.py dies, even by SIGKILL, when neither
    atexit nor a signal handler gets to run. Survives exec (so it reaches Kafka's JVM)."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: atexit and the signal handlers still cover every ordinary exit


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
          tee: str | None = None, indent: str = "    ") -> tuple[subprocess.Popen, threading.Thread | None]:
    """Starts `cmd` in a new session (so its whole group can be killed) with its output in
    `log_path`. `tee="all"` also shows stdout and stderr on our stdout; `tee="stderr"` shows only
    stderr (fjord-bench's progress; its stdout is the result JSON, which --out has too).

    Always called from the main thread, and the pump thread of the previous process has been
    joined by then: preexec_fn is unsafe only while other threads run."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    log.write(f"===== {dt.datetime.now().isoformat(timespec='seconds')}: {' '.join(cmd)}\n".encode())
    log.flush()
    common = dict(stdin=subprocess.DEVNULL, env=env, start_new_session=True, cwd=REPO,
                  preexec_fn=die_with_parent)
    if tee is None:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **common)
        log.close()
        _LIVE[proc.pid] = proc
        return proc, None
    if tee == "all":
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **common)
        shown = proc.stdout
    else:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, **common)
        shown = proc.stderr
    _LIVE[proc.pid] = proc

    def pump():
        assert shown is not None  # a PIPE above
        with log:
            for line in iter(shown.readline, b""):
                log.write(line)
                log.flush()
                print(indent + line.decode("utf-8", "replace").rstrip(), flush=True)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return proc, thread


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def reap(proc: subprocess.Popen) -> None:
    """SIGKILLs what is left of the group (children a SIGTERMed leader left behind) and forgets it."""
    kill_group(proc)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    _LIVE.pop(proc.pid, None)


def kill_all() -> None:
    for proc in list(_LIVE.values()):
        reap(proc)


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    # Raised in the main thread; `main`'s finally and atexit kill the brokers.
    raise Interrupted(signal.Signals(signum).name)


#: For fjord-bench only, never the brokers: glibc's allocator keeps what the client frees (the
#: producer's queue of copied records, the consumer's fetch buffers) instead of returning it to
#: the kernel and faulting it in again. The client shares the two cores with the broker; this cut
#: its CPU by ~20% (3.0 -> 2.4 s for a 1 GiB produce + catch-up), the same for either broker.
#: mmap_max=0 serves the consumer's response buffers (one per Fetch, up to 55 MiB, above any mmap
#: threshold) from the heap too: as fresh mappings they cost 60,000-520,000 page faults per
#: catch-up pass, depending on whether huge pages happened to be free, the largest spread in that
#: scenario. Consume-only passes, 4 each: Fjord 980 -> 1,146 MB/s, Kafka 1,030 -> 1,254.
CLIENT_GLIBC_TUNABLES = ("glibc.malloc.trim_threshold=2147483648:glibc.malloc.top_pad=268435456"
                         ":glibc.malloc.mmap_max=0")


def client_env() -> dict[str, str]:
    return {**os.environ, "GLIBC_TUNABLES": CLIENT_GLIBC_TUNABLES}


def run_logged(cmd: list[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None,
               tee: str | None = "stderr") -> tuple[int | None, float]:
    """Runs to completion or timeout; returns (exit status or None on timeout, seconds)."""
    if env is None and cmd and cmd[0] == str(FJORD_BENCH_BIN):
        env = client_env()
    start = time.monotonic()
    proc, thread = spawn(cmd, log_path, env=env, tee=tee)
    try:
        rc: int | None = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        rc = None
    reap(proc)
    if thread is not None:
        thread.join(5)
    return rc, time.monotonic() - start


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join("      | " + line for line in text[-lines:])


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------

def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def mount_of(path: Path) -> dict[str, str]:
    """The /proc/mounts entry holding `path` (longest mount point that prefixes it)."""
    best = {"device": "unknown", "mount": "/", "fstype": "unknown"}
    real = str(path.resolve())
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best["mount"]):
                    best = {"device": dev, "mount": mnt, "fstype": fstype}
    except OSError:
        pass
    return best


#: What `cargo build -p fjord-broker` compiles: a change here changes the broker measured.
BROKER_SOURCES = ("Cargo.toml", "Cargo.lock", "protocol", "storage", "controller", "broker", "vendor")


def machine(data_root: Path) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    git = first_line(["git", "rev-parse", "--short=12", "HEAD"])
    # Dirty means the broker's own source differs from the commit, not bench/ or the docs.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *BROKER_SOURCES],
                           capture_output=True, text=True, cwd=REPO).stdout.strip()
    kafka_jar = next(iter(sorted(KAFKA_LIB.glob("kafka_2.13-*.jar"))), None)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem_kib * 1024,
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "data_filesystem": mount_of(data_root),
        "load_average_1m_at_start": os.getloadavg()[0],
        "fjord_git": git + ("-dirty" if dirty else ""),
        "rustc": first_line(["rustc", "--version"]),
        "java": first_line(["java", "-version"]),
        "kafka": kafka_jar.name.removeprefix("kafka_2.13-").removesuffix(".jar") if kafka_jar else "not fetched",
    }


def drop_page_cache(warm: list[Path]) -> dict:
    """Empties the page cache, then reads `warm` (the brokers' binaries, jars, the JDK) back in.

    Why: a page cache full of other files (a build leaves gigabytes) made the first broker of a
    run write slower at up to twice the CPU, with twice the RSS, for its whole round
    (BENCHMARKS.md, 2026-12-06); the second broker wrote into a cache the first had just freed
    by deleting its data. Reading the programs back keeps startup times warm for both. Needs
    root; otherwise the run says it could not."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as e:
        return {"dropped": False, "reason": e.strerror or str(e)}
    read = 0
    for root in warm:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            try:
                with open(f, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        read += len(chunk)
            except OSError:
                pass
    return {"dropped": True, "warmed_bytes": read}


def java_home() -> Path | None:
    """The JDK the Java tools and Kafka run on (the `java` on PATH)."""
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else None


def warn_if_busy() -> float:
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > BUSY_LOAD_PER_CORE * cores:
        top = subprocess.run(["ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu"], capture_output=True,
                             text=True).stdout.splitlines()[1:6]
        say(f"WARNING: load average {load:.2f} on {cores} cores: something else is running and the "
            f"numbers will be noisy. Busiest processes:")
        for line in top:
            print("      " + line.strip(), flush=True)
    return load


def raise_fd_limit() -> None:
    """1,000 idle connections need more than the usual soft limit of 1,024 descriptors, in the
    client and in the broker alike; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --------------------------------------------------------------------------------------------
# Build and fetch
# --------------------------------------------------------------------------------------------

def build(logs: Path, need_kafka: bool) -> float:
    env = dict(os.environ)
    if shutil.which("ccache"):
        env.setdefault("CC", "ccache gcc")
        env.setdefault("CXX", "ccache g++")
    if not shutil.which("clang"):
        say("WARNING: clang is missing and RocksDB's bindings need it: `make system-deps` installs it")
    steps = [
        ("fjord", ["cargo", "build", "--release", "-p", "fjord-broker"]),
        ("fjord-bench", ["cargo", "build", "--release", "--manifest-path", str(BENCH / "Cargo.toml")]),
    ]
    if need_kafka:
        steps.append((f"Kafka {KAFKA_VERSION} and its tools (Maven Central)",
                      ["bash", str(REPO / "compat-tests" / "setup.sh")]))
        env["FJORD_COMPAT_REFERENCE"] = "1"
        env["FJORD_KAFKA_VERSION"] = KAFKA_VERSION
    total_s = 0.0
    for what, cmd in steps:
        say(f"build {what}: {' '.join(cmd)}")
        rc, secs = run_logged(cmd, logs / "build.log", timeout_s=3600, env=env, tee="all")
        if rc != 0:
            sys.exit(f"bench/run.py: building {what} failed (exit {rc}); see {logs / 'build.log'}")
        say(f"build {what}: done in {fmt_s(secs)}")
        total_s += secs
    return total_s


# --------------------------------------------------------------------------------------------
# Brokers
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, all threads (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the parenthesised command name, which may itself contain spaces.
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def kafka_supports_heap_opts() -> bool:
    try:
        return "KAFKA_HEAP_OPTS" in KAFKA_AS_FJORD.read_text()
    except OSError:
        return False


@dataclass
class Broker:
    label: str
    run_dir: Path
    data_root: Path
    #: Appended to result and log file names: "" in round 1, "-r2" in round 2, ...
    sfx: str = ""
    #: One data dir per start: a restart after a crash gets a fresh one too.
    starts: int = 0
    proc: subprocess.Popen | None = None
    port: int = 0
    data_dir: Path | None = None
    info: dict = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / f"{self.label}{self.sfx}.log"

    def command(self) -> tuple[list[str], dict[str, str]]:
        assert self.data_dir is not None
        overrides = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            # fjord advertises localhost:9092 unless told; librdkafka may resolve localhost to ::1.
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(self.data_dir),
            # Flush settings are left at both brokers' identical defaults (no forced fsync:
            # log.flush.interval.messages = Long.MAX_VALUE, log.flush.interval.ms unset).
        }
        env = dict(os.environ)
        if self.label == "fjord":
            cmd = [str(FJORD_BIN)]
            # Its own Prometheus listener on a free port too: a fixed 9644 fails the start
            # whenever another fjord runs on this machine.
            overrides["metrics.listener"] = f"http://127.0.0.1:{free_port()}"
        else:
            cmd = [sys.executable, str(KAFKA_AS_FJORD)]
            heap = os.environ.get("KAFKA_HEAP_OPTS", KAFKA_HEAP_OPTS)
            perf = os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS", KAFKA_JVM_PERFORMANCE_OPTS)
            env["KAFKA_HEAP_OPTS"] = heap
            env["KAFKA_JVM_PERFORMANCE_OPTS"] = perf
            if not kafka_supports_heap_opts():
                vm = [o for o in f"{heap} {perf} {KAFKA_UNDO_TEST_TUNING}".split()
                      if o not in LAUNCHER_ONLY_OPTIONS]
                env["_JAVA_OPTIONS"] = " ".join(vm)
        for k, v in overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd, env

    def start(self) -> None:
        """Spawns on a fresh data dir and port, then waits for the first Metadata answer."""
        self.starts += 1
        self.port = free_port()
        self.data_dir = self.data_root / (self.label if self.starts == 1 else f"{self.label}-{self.starts}")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        cmd, env = self.command()
        spawn_epoch_ms = int(time.time() * 1000)
        self.proc, _ = spawn(cmd, self.log_path, env=env)
        say(f"{self.label}: started pid {self.proc.pid} on {self.bootstrap}, data in {self.data_dir}")
        out = self.run_dir / f"{self.label}-startup{self.sfx}.json" if self.starts == 1 else \
            self.run_dir / "logs" / f"{self.label}-startup{self.sfx}-{self.starts}.json"
        rc, secs = run_logged(
            bench_cmd(self, out, "wait-ready", "--since-epoch-ms", str(spawn_epoch_ms),
                      "--timeout-s", str(READY_TIMEOUT_S)),
            self.run_dir / "logs" / f"{self.label}-wait-ready{self.sfx}.log", READY_TIMEOUT_S + 30)
        if rc != 0 or not self.alive():
            why = "exited" if not self.alive() else ("timed out" if rc is None else f"wait-ready exit {rc}")
            raise BrokerDown(f"{self.label} not ready ({why}); its log:\n{log_tail(self.log_path, 25)}")
        # fjord-bench's own figure (first Metadata answer minus spawn); ours is an upper bound.
        ready_ms = (read_result(out).get("metrics") or {}).get("ready_ms")
        startup_s = ready_ms / 1000 if ready_ms else time.time() - spawn_epoch_ms / 1000
        say(f"{self.label}: ready {startup_s:.2f} s after spawn (first Metadata answer)")
        if self.starts == 1:
            # The run's facts (startup, idle RSS) are round 1's; every round's are in the
            # result files, which the report takes the median of.
            first_round = "startup_s" not in self.info
            if first_round:
                self.info["startup_s"] = round(startup_s, 3)
                self.info["pid"] = self.proc.pid
            cpu_before = cpu_seconds(self.proc.pid)
            time.sleep(IDLE_SETTLE_S)
            rss = rss_bytes(self.proc.pid)
            cpu_after = cpu_seconds(self.proc.pid)
            idle_cpu_s = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
            if first_round:
                self.info["idle_rss_bytes"] = rss
                self.info["idle_cpu_s"] = idle_cpu_s
            say(f"{self.label}: idle RSS {rss / 2**20:.0f} MiB after {IDLE_SETTLE_S} s" if rss else
                f"{self.label}: idle RSS unreadable")
            if self.label == "kafka" and first_round:
                self.info["jvm"] = jvm_flags(self.proc.pid)
                say(f"kafka: JVM {self.info['jvm']}")
            if rss is None:
                return  # the broker is gone; the scenario loop restarts it and says so
            # In fjord-bench's result shape (bench/src/result.rs), so `report` tabulates it like
            # the rest: `broker` gives the RSS and CPU rows of its default table.
            write_json(self.run_dir / f"{self.label}-idle{self.sfx}.json", {
                "scenario": "idle", "label": self.label,
                "params": {"after_ready_s": IDLE_SETTLE_S},
                "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                "duration_s": IDLE_SETTLE_S,
                "broker": {"cpu_s": round(idle_cpu_s or 0.0, 3), "rss_max_bytes": rss,
                           "rss_avg_bytes": rss, "rss_start_bytes": rss, "rss_end_bytes": rss, "samples": 1},
                "metrics": {"idle_rss_bytes": float(rss)}})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.alive():
            start = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(STOP_TIMEOUT_S)
                self.info.setdefault("shutdown", []).append(
                    {"exit": rc, "seconds": round(time.monotonic() - start, 2)})
                say(f"{self.label}: SIGTERM -> exit {rc} in {fmt_s(time.monotonic() - start)}")
            except subprocess.TimeoutExpired:
                self.info.setdefault("shutdown", []).append({"exit": None, "seconds": STOP_TIMEOUT_S})
                say(f"{self.label}: still running {STOP_TIMEOUT_S} s after SIGTERM: SIGKILL")
        else:
            self.info.setdefault("shutdown", []).append({"exit": self.proc.returncode, "seconds": 0})
        reap(self.proc)
        self.proc = None


class BrokerDown(Exception):
    pass


def jvm_flags(pid: int) -> dict:
    """The heap and JIT settings the Kafka JVM really runs with, from jcmd."""
    try:
        out = subprocess.run(["jcmd", str(pid), "VM.flags"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {"error": "jcmd failed"}
    flags = dict(re.findall(r"-XX:[+-]?(\w+)=(\S+)", out))
    return {k: flags.get(k) for k in ("InitialHeapSize", "MaxHeapSize", "TieredStopAtLevel", "MaxGCPauseMillis")
            } | {"G1": "+UseG1GC" in out}


def bench_cmd(broker: Broker | None, out: Path, command: str, *args: str) -> list[str]:
    cmd = [str(FJORD_BENCH_BIN)]
    if broker is not None:
        cmd += ["--bootstrap", broker.bootstrap, "--label", broker.label]
        if broker.proc is not None:
            cmd += ["--broker-pid", str(broker.proc.pid)]
    return cmd + ["--out", str(out), command, *args]


def write_json(path: Path, obj: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def read_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


#: The scenario-specific numbers worth a progress line (all are in the result file).
HEADLINE_METRICS = {
    "produce_mb_per_s": lambda v: f"backlog written at {v:.1f} MB/s",
    "create_s": lambda v: f"created in {v:.2f} s",
    "visible_s": lambda v: f"visible in Metadata after {v:.2f} s",
    "delete_s": lambda v: f"deleted in {v:.2f} s",
    "rss_per_partition_bytes": lambda v: f"{v / 1024:.1f} KiB RSS per partition",
    "connections_open": lambda v: f"{v:,.0f} connections held",
    "rss_per_connection_bytes": lambda v: f"{v / 1024:.1f} KiB RSS per connection",
}


def headline(result: dict) -> str:
    """One line from a result document (bench/src/result.rs): its rate, its latency, its trouble."""
    parts = []
    lat = result.get("latency_ms")
    if isinstance(lat, dict):
        parts.append(f"p50 {lat.get('p50', 0):.2f} ms, p99 {lat.get('p99', 0):.2f} ms, "
                     f"p99.9 {lat.get('p99_9', 0):.2f} ms")
    if result.get("mb_per_s"):
        parts.append(f"{result['mb_per_s']:.1f} MB/s, {result.get('records_per_s', 0):,.0f} records/s")
    broker = result.get("broker")
    if isinstance(broker, dict) and broker.get("cpu_s"):
        parts.append(f"broker CPU {broker['cpu_s']:.1f} s, RSS max {broker.get('rss_max_bytes', 0) / 2**20:.0f} MiB")
    metrics = result.get("metrics") or {}
    for key, show in HEADLINE_METRICS.items():
        if key in metrics:
            parts.append(show(metrics[key]))
    if result.get("errors"):
        parts.append(f"{result['errors']} errors")
    return "; ".join(parts)


def run_broker(label: str, chosen: list[Scenario], run_dir: Path, data_root: Path,
               outcomes: dict, brokers_info: dict, keep_data: bool, sfx: str = "") -> None:
    broker = Broker(label, run_dir, data_root, sfx)
    broker.info = brokers_info.setdefault(label, broker.info)
    say(f"===== {label}{' round ' + sfx.removeprefix('-r') if sfx else ''} =====")

    def record(name: str, outcome: dict) -> None:
        # Over rounds, a failure stays visible: a later success does not overwrite it.
        prev = outcomes[label].get(name)
        if prev is None or prev["status"] == "ok":
            outcomes[label][name] = outcome

    try:
        try:
            broker.start()
        except BrokerDown as e:
            say(f"{label}: FAILED to start: {e}")
            for s in chosen:
                record(s.name, {"status": "failed", "reason": "broker did not start", "seconds": 0})
            return
        for s in chosen:
            if not broker.alive():
                say(f"{label}: broker is gone (exit {broker.proc.returncode if broker.proc else '?'}); "
                    f"restarting on a fresh data dir")
                broker.stop()
                try:
                    broker.start()
                except BrokerDown as e:
                    say(f"{label}: FAILED to restart: {e}")
                    record(s.name, {"status": "failed", "reason": "broker did not restart", "seconds": 0})
                    continue
            record(s.name, run_scenario(broker, s, run_dir))
    finally:
        broker.stop()
        if not keep_data and broker.data_dir is not None:
            for d in data_root.glob(f"{label}*"):
                shutil.rmtree(d, ignore_errors=True)
        # The next broker should not pay for this one's dirty pages.
        os.sync()


def params(args: tuple[str, ...]) -> dict:
    """`--record-size 1024 --idempotent` -> {"record_size": 1024, "idempotent": true}: the shape of
    a result's `params`, for the result file of a scenario that wrote none."""
    out: dict = {}
    i = 0
    while i < len(args):
        key = args[i].removeprefix("--").replace("-", "_")
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            out[key] = int(value) if value.isdigit() else value
            i += 2
        else:
            out[key] = True
            i += 1
    return out


def run_scenario(broker: Broker, s: Scenario, run_dir: Path) -> dict:
    out = run_dir / f"{broker.label}-{s.name}{broker.sfx}.json"
    log = run_dir / "logs" / f"{broker.label}-{s.name}{broker.sfx}.log"
    # Each scenario starts with no dirty pages from the one before.
    sync_start = time.monotonic()
    os.sync()
    sync_s = time.monotonic() - sync_start
    say(f"{broker.label} {s.name}: {s.command} {' '.join(s.args)}"
        + (f" (sync took {fmt_s(sync_s)})" if sync_s > 1 else ""))
    cmd = bench_cmd(broker, out, s.command, *s.args)
    cmd[1:1] = ["--max-s", str(max(10, s.timeout_s - MAX_S_MARGIN_S))]
    rc, secs = run_logged(cmd, log, s.timeout_s)
    died = "" if broker.alive() else \
        f"the broker exited ({broker.proc.returncode if broker.proc else '?'}) during the scenario"
    if rc is None:
        reason = f"timed out after {s.timeout_s} s" + (f"; {died}" if died else "")
    elif rc != 0:
        reason = f"fjord-bench exit {rc}" + (f"; {died}" if died else "")
    elif died:
        reason = died
    elif not out.exists():
        reason = "no result file written"
    else:
        result = read_result(out)
        status = "skipped" if result.get("skipped") else "ok"
        say(f"{broker.label} {s.name}: {status} in {fmt_s(secs)}: {headline(result)}")
        for note in result.get("notes") or []:
            print(f"      note: {note}", flush=True)
        return {"status": status, "seconds": round(secs, 1), "errors": int(result.get("errors") or 0)}
    say(f"{broker.label} {s.name}: FAILED in {fmt_s(secs)}: {reason}")
    if not broker.alive():
        print(log_tail(broker.log_path), flush=True)
    # The report shows a failed scenario as failed rather than missing: a result file saying so,
    # unless fjord-bench wrote its own (it may record a partial result with its error).
    if not out.exists():
        write_json(out, {"scenario": s.command, "label": broker.label, "params": params(s.args),
                         "errors": 1, "notes": [f"failed: {reason}"], "failed": True})
    return {"status": "failed", "reason": reason, "seconds": round(secs, 1)}


# --------------------------------------------------------------------------------------------
# Report and BENCHMARKS.md
# --------------------------------------------------------------------------------------------

BENCHMARKS_INTRO = f"""# Benchmarks: Fjord and Apache Kafka

What is measured: the same Kafka clients against a single-node Fjord and a single-node Apache
Kafka 4.4 in KRaft mode, one broker at a time, on one machine. Two load generators: librdkafka,
through `fjord-bench`, for throughput, end-to-end latency at fixed rates, reading a backlog, keyed
idempotent produce, compressed log shipping, creating 5,000 partitions, 1,000 idle connections,
startup time and memory; and Kafka's own `kafka-producer-perf-test` and `kafka-consumer-perf-test`
(the Java client) for producing, reading a backlog and producer latency at a fixed rate. Both brokers
run with their default flush settings (no forced fsync), Kafka with a fixed 1 GiB heap.

Run it with `make bench`: about 5 minutes on a 2-core machine once everything is built, about 25
on a fresh one (see [bench/README.md](bench/README.md)). Every ratio below comes from one run on
the machine it describes: rerun on yours before you quote one.

{BEGIN_MARKER}
{END_MARKER}
"""


def align_failed_params(run_dir: Path, chosen: list[Scenario], labels: list[str], sfxs: list[str]) -> None:
    """`report` groups results by their params, and a result file run.py wrote for a killed
    scenario only knows the flags it was given, not fjord-bench's defaults. Copy the params of
    another run of the same scenario, so all land in one table."""
    for s in chosen:
        files = {(label, sfx): run_dir / f"{label}-{s.name}{sfx}.json" for label in labels for sfx in sfxs}
        docs = {label: read_result(path) for label, path in files.items()}
        real = next((d for d in docs.values() if d and not d.get("failed") and d.get("params")), None)
        if real is None:
            continue
        for label, doc in docs.items():
            if doc.get("failed") and doc.get("params") != real["params"]:
                doc["params"] = real["params"]
                write_json(files[label], doc)


def splice(section_md: Path) -> None:
    section = section_md.read_text().strip("\n")
    section = relink(section, section_md.parent)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else BENCHMARKS_INTRO
    if BEGIN_MARKER not in text or END_MARKER not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN_MARKER}\n{END_MARKER}\n"
    head, rest = text.split(BEGIN_MARKER, 1)
    _, tail = rest.split(END_MARKER, 1)
    BENCHMARKS_MD.write_text(f"{head}{BEGIN_MARKER}\n{section}\n{END_MARKER}{tail}")


def relink(markdown: str, base: Path) -> str:
    """Rewrites relative links that point at files next to the section (bench/results/<run>/)
    so they still resolve from BENCHMARKS.md at the repository root."""
    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return m.group(0)
        here = (base / target).resolve()
        if here.exists() and not (REPO / target).exists():
            return f"{m.group(1)}{os.path.relpath(here, REPO)})"
        return m.group(0)
    return re.sub(r"(\]\()([^)\s]+)\)", fix, markdown)


def add_run_facts(section: Path, manifest: dict) -> None:
    """What the report cannot know: which run this was and how the brokers were set up. Goes
    right under the report's first heading."""
    m = manifest.get("machine", {})
    info = manifest.get("brokers_info", {})
    jvm = info.get("kafka", {}).get("jvm") or {}
    lines = [
        f"Run `{manifest['run']}` ({'quick: ~1/10 sizes, a smoke test, not a result' if manifest['quick'] else 'full'}), "
        f"{fmt_s(manifest.get('wall_s', 0))} wall time"
        + (f" of which {fmt_s(manifest['build_s'])} building" if "build_s" in manifest else "")
        + ", by `bench/run.py`; "
        f"Fjord `{m.get('fjord_git', '?')}`, Apache Kafka {m.get('kafka', '?')} (KRaft, one node: broker + controller), "
        f"{m.get('java', 'java ?')}.",
        "",
        "- Flush: both brokers on their defaults, which are the same: no forced fsync "
        "(`log.flush.interval.messages` = Long.MAX_VALUE, `log.flush.interval.ms` unset).",
        f"- Kafka JVM: `{manifest['settings']['kafka_heap_opts']}` and kafka-run-class.sh's default G1 flags"
        + ("; set through `_JAVA_OPTIONS`, over the test flags of compat-tests/reference/kafka-as-fjord"
           if manifest["settings"].get("kafka_jvm_opts_through") == "_JAVA_OPTIONS" else "")
        + (f"; checked with jcmd: max heap {int(jvm['MaxHeapSize']) >> 20} MiB, "
           f"TieredStopAtLevel {jvm.get('TieredStopAtLevel')} (C2 on)" if jvm.get("MaxHeapSize") else "") + ".",
        f"- Client: `fjord-bench` (librdkafka) on the same machine, with `GLIBC_TUNABLES={CLIENT_GLIBC_TUNABLES}`"
        " (its allocator keeps freed memory and never maps a buffer of its own; the brokers run without it);"
        f" for the `java-*` scenarios, Kafka {KAFKA_VERSION}'s kafka-producer-perf-test and kafka-consumer-perf-test"
        " (`-Xmx512M` and kafka-run-class.sh's G1 flags, as their scripts run them), children of `fjord-bench`, whose"
        " client CPU includes them.",
        "- Socket buffers: each broker on its own defaults, which differ: Kafka's `socket.send.buffer.bytes` and "
        "`socket.receive.buffer.bytes` are 102400; Fjord's are 262144 and -1 (the kernel's autotuning).",
        "- Each broker: fresh data dir, then every scenario in turn, one broker at a time; "
        "`sync` between scenarios."
        + (" The page cache emptied before the first round (the brokers' programs and the JDK read back), so "
           "that the first broker does not write into a cache full of other files." if
           manifest.get("page_cache", {}).get("dropped") else "")
        + (f" {manifest['rounds']} rounds, the brokers' order reversed each round (fjord, kafka, kafka, fjord, ...),"
           " the machine's limits measured at the start of each; every figure is the median over the rounds."
           if manifest.get("rounds", 1) > 1 else ""),
    ]
    for label in manifest.get("brokers", []):
        bi = info.get(label, {})
        if bi.get("idle_rss_bytes"):
            lines.append(f"- {label}: ready {bi.get('startup_s', '?')} s after spawn, "
                         f"idle RSS {bi['idle_rss_bytes'] / 2**20:.0f} MiB {IDLE_SETTLE_S} s later.")
    failed = [f"{label} {name} ({o.get('reason', o['status'])})"
              for label, per in manifest.get("outcomes", {}).items()
              for name, o in per.items() if o["status"] == "failed"]
    if failed:
        lines.append(f"- Failed: {'; '.join(failed)}.")
    text = section.read_text()
    first, _, rest = text.partition("\n")
    if not first.startswith("#"):
        first, rest = "", text
    section.write_text((first + "\n\n" if first else "") + "\n".join(lines) + "\n" + rest)


def publish(run_dir: Path) -> None:
    """bench/results/latest/ becomes a copy of this run's JSON and Markdown (no logs)."""
    tmp = RESULTS_ROOT / ".latest.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for p in run_dir.iterdir():
        if p.is_file() and p.suffix in (".json", ".md"):
            shutil.copy2(p, tmp / p.name)
    (tmp / "RUN").write_text(run_dir.name + "\n")
    shutil.rmtree(LATEST, ignore_errors=True)
    tmp.rename(LATEST)


# --------------------------------------------------------------------------------------------

def main() -> int:
    global KAFKA_VERSION, KAFKA_LIB
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1/10 of every size: a ~5 minute smoke run")
    ap.add_argument("--only", choices=["fjord", "kafka"], help="one broker only")
    ap.add_argument("--scenarios", help="comma-separated names or families (e.g. produce,latency-10k)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries and jars already there")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                    help=f"where brokers keep data (default {DEFAULT_DATA_ROOT.relative_to(REPO)})")
    ap.add_argument("--keep-data", action="store_true", help="keep the brokers' data dirs")
    ap.add_argument("--rounds", type=int,
                    help="rounds of every broker, order reversed each round (default: 2 for a full run, else 1)")
    ap.add_argument("--run-name", help="results go to bench/results/<run-name> (default: UTC time)")
    pub = ap.add_mutually_exclusive_group()
    pub.add_argument("--publish", dest="publish", action="store_true", default=None,
                     help="update BENCHMARKS.md, bench/charts and bench/results/latest even for a "
                          "quick or partial run")
    pub.add_argument("--no-publish", dest="publish", action="store_false",
                     help="only write bench/results/<run>/")
    ap.add_argument("--kafka-version", default=KAFKA_VERSION,
                    help=f"the reference Kafka and its load tools (default {KAFKA_VERSION}; e.g. 4.1.1)")
    ap.add_argument("--list", action="store_true", help="print the scenarios and exit")
    args = ap.parse_args()
    KAFKA_VERSION, KAFKA_LIB = args.kafka_version, kafka_lib(args.kafka_version)
    # kafka-as-fjord and setup.sh read it from the environment.
    os.environ["FJORD_KAFKA_VERSION"] = KAFKA_VERSION

    chosen = select(scenarios(args.quick), args.scenarios)
    if args.list:
        for s in chosen:
            print(f"{s.name:20} {s.command} {' '.join(s.args)}  (timeout {s.timeout_s} s)")
        return 0
    labels = [args.only] if args.only else ["fjord", "kafka"]
    full = not args.quick and not args.only and not args.scenarios
    do_publish = full if args.publish is None else args.publish
    rounds = max(1, args.rounds if args.rounds is not None else (2 if full else 1))
    sfxs = [""] + [f"-r{r}" for r in range(2, rounds + 1)]

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(kill_all)
    raise_fd_limit()

    run_name = args.run_name or (dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                                 + ("-quick" if args.quick else ""))
    run_dir = RESULTS_ROOT / run_name
    if run_dir.exists():
        sys.exit(f"bench/run.py: {run_dir} exists; pick another --run-name")
    (run_dir / "logs").mkdir(parents=True)
    data_root = args.data_root.resolve() / run_name
    say(f"run {run_name}: {'quick' if args.quick else 'full'}, brokers {', '.join(labels)}, "
        f"{len(chosen)} scenarios; results in {run_dir.relative_to(REPO)}")

    outcomes: dict[str, dict[str, dict]] = {label: {} for label in labels}
    brokers_info: dict[str, dict] = {}
    manifest = {
        "run": run_name, "quick": args.quick, "brokers": labels, "rounds": rounds,
        "scenarios": [{"name": s.name, "command": s.command, "args": list(s.args)} for s in chosen],
        "settings": {
            "flush": "both defaults: log.flush.interval.messages=Long.MAX_VALUE, log.flush.interval.ms "
                     "unset (no forced fsync; the OS writes back)",
            "kafka_heap_opts": os.environ.get("KAFKA_HEAP_OPTS", KAFKA_HEAP_OPTS),
            "kafka_jvm_performance_opts": os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS",
                                                         KAFKA_JVM_PERFORMANCE_OPTS),
            "kafka_jvm_opts_through": "KAFKA_HEAP_OPTS" if kafka_supports_heap_opts() else "_JAVA_OPTIONS",
        },
        "outcomes": outcomes, "brokers_info": brokers_info,
    }
    failed_build = False
    # The Java tools come with the reference broker's jars.
    need_kafka = "kafka" in labels or any(s.command.startswith("java-") for s in chosen)
    try:
        if args.no_build:
            say("build: skipped (--no-build)")
        else:
            manifest["build_s"] = round(build(run_dir / "logs", need_kafka=need_kafka), 1)
        for path, what in ((FJORD_BENCH_BIN, "fjord-bench"), (FJORD_BIN, "fjord")):
            if not path.exists():
                failed_build = True
                sys.exit(f"bench/run.py: {what} not found at {path}")
        if need_kafka and not KAFKA_LIB.is_dir():
            sys.exit(f"bench/run.py: no Kafka jars in {KAFKA_LIB}: run "
                     f"`FJORD_COMPAT_REFERENCE=1 FJORD_KAFKA_VERSION={KAFKA_VERSION} bash compat-tests/setup.sh`")

        data_root.mkdir(parents=True, exist_ok=True)
        # Data of runs that were killed before they could clean up: gigabytes, and ours.
        for stale in args.data_root.resolve().iterdir():
            if stale.is_dir() and stale.name != run_name and not args.keep_data:
                say(f"removing stale data dir {stale}")
                shutil.rmtree(stale, ignore_errors=True)
        free = shutil.disk_usage(data_root).free
        if not args.quick and free < MIN_FREE_BYTES_FULL:
            say(f"WARNING: only {free / GiB:.1f} GiB free under {data_root}; a full run may need "
                f"{MIN_FREE_BYTES_FULL / GiB:.0f} GiB")
        warm = [FJORD_BIN, FJORD_BENCH_BIN] + ([KAFKA_LIB] if need_kafka else [])
        jdk = java_home()
        if need_kafka and jdk is not None:
            warm.append(jdk / "lib")
        manifest["page_cache"] = drop_page_cache(warm)
        say("page cache: " + (f"dropped, then {manifest['page_cache']['warmed_bytes'] / GiB:.2f} GiB of programs "
                              "read back" if manifest["page_cache"]["dropped"]
                              else f"not dropped ({manifest['page_cache']['reason']}); the first broker may run "
                                   "in a cache full of other files"))
        manifest["machine"] = machine(data_root)
        say("machine: {cpu}, {cores} cores, {mem:.1f} GiB, {fs} on {dev}".format(
            cpu=manifest["machine"]["cpu"], cores=manifest["machine"]["cores"],
            mem=manifest["machine"]["memory_bytes"] / GiB,
            fs=manifest["machine"]["data_filesystem"]["fstype"],
            dev=manifest["machine"]["data_filesystem"]["device"]))
        say("flush: both brokers on their defaults, no forced fsync (log.flush.interval.messages="
            "Long.MAX_VALUE); Kafka heap " + manifest["settings"]["kafka_heap_opts"])
        if "kafka" in labels and not kafka_supports_heap_opts():
            say("note: kafka-as-fjord ignores KAFKA_HEAP_OPTS; its test tuning (-Xmx768m, C1 only) is "
                "overridden through _JAVA_OPTIONS")
        warn_if_busy()

        limits_bytes = LIMITS_BYTES // 10 if args.quick else LIMITS_BYTES
        for r, sfx in enumerate(sfxs):
            say(f"limits{sfx}: fjord-bench limits --dir {data_root} --bytes {limits_bytes}")
            rc, secs = run_logged(bench_cmd(None, run_dir / f"limits{sfx}.json", "limits", "--dir", str(data_root),
                                            "--bytes", str(limits_bytes)),
                                  run_dir / "logs" / f"limits{sfx}.log", LIMITS_TIMEOUT_S)
            manifest["limits" + sfx] = {"status": "ok" if rc == 0 else "failed", "exit": rc,
                                        "seconds": round(secs, 1)}
            say(f"limits{sfx}: {'ok' if rc == 0 else 'FAILED (exit %s)' % rc} in {fmt_s(secs)}")
            # fjord, kafka in odd rounds; kafka, fjord in even ones.
            for label in (labels if r % 2 == 0 else labels[::-1]):
                write_json(run_dir / "run.json", manifest)
                run_broker(label, chosen, run_dir, data_root, outcomes, brokers_info, args.keep_data, sfx)
    except Interrupted as e:
        say(f"interrupted by {e}: stopping brokers")
        manifest["interrupted"] = str(e)
        kill_all()
        write_json(run_dir / "run.json", manifest)
        return 130
    finally:
        kill_all()
        if not args.keep_data:
            shutil.rmtree(data_root, ignore_errors=True)
        manifest["wall_s"] = round(time.monotonic() - T0, 1)
        if not failed_build:
            write_json(run_dir / "run.json", manifest)

    # Report
    section = run_dir / "section.md"
    charts = CHARTS if do_publish else run_dir / "charts"
    say(f"report: fjord-bench report -> {section.relative_to(REPO)}, charts in {charts.relative_to(REPO)}")
    align_failed_params(run_dir, chosen, labels, sfxs)
    rc, _ = run_logged([str(FJORD_BENCH_BIN), "report", "--results", str(run_dir), "--markdown", str(section),
                        "--charts-dir", str(charts)], run_dir / "logs" / "report.log", 300)
    if rc != 0 or not section.exists():
        say(f"report FAILED (exit {rc}); see {run_dir / 'logs' / 'report.log'}")
        return 1
    add_run_facts(section, manifest)
    if do_publish:
        splice(section)
        publish(run_dir)
        say(f"published: {BENCHMARKS_MD.relative_to(REPO)} updated, {LATEST.relative_to(REPO)} = {run_name}")
    else:
        say("not published (quick or partial run; --publish to force): BENCHMARKS.md untouched")

    say("summary:")
    names = [s.name for s in chosen]
    print(f"      {'scenario':20}" + "".join(f"{label:>28}" for label in labels))
    for name in names:
        cells = []
        for label in labels:
            o = outcomes[label].get(name, {"status": "not run", "seconds": 0})
            cell = o["status"]
            if o["status"] == "ok":
                cell += f" {fmt_s(o['seconds'])}" + (f", {o['errors']} errors" if o.get("errors") else "")
            cells.append(cell)
        print(f"      {name:20}" + "".join(f"{c:>28}" for c in cells))
    for label in labels:
        info = brokers_info.get(label, {})
        rss = info.get("idle_rss_bytes")
        print(f"      {label}: startup {info.get('startup_s', '?')} s, idle RSS "
              + (f"{rss / 2**20:.0f} MiB" if rss else "unknown"))
    failures = [(label, name, o["reason"]) for label in labels for name, o in outcomes[label].items()
                if o["status"] != "ok"]
    for label, name, reason in failures:
        say(f"failed: {label} {name}: {reason}")
    say(f"done in {fmt_s(time.monotonic() - T0)}; Markdown: {section.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
