"""Helpers for the application tiers, test_streams.py and test_connect.py: Kafka Streams and Kafka
Connect (4.4.0, from java/pom.xml) run as JVM subprocesses against the test's broker.

Both log through slf4j-simple, which `mvn package` copies to java/target/lib/logging/ alone (the
CLIs' `target/lib/*` class path keeps slf4j-nop); their log goes to a file in the test's tmp_path,
whose tail a failing test prints (`logs_on_failure`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from clientlib import COMPAT_DIR, JAVA_CLASSPATH, ClientError
from eoslib import LineProc, read_confluent

#: The JVM for a Streams app or a Connect worker: C1 only (start-up counts, the data is small),
#: serial GC, a small heap, slf4j-simple chosen explicitly (slf4j-nop is on the class path too).
APP_JAVA = [
    "java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xms64m", "-Xmx384m",
    "-cp", f"{JAVA_CLASSPATH}:{COMPAT_DIR}/java/target/lib/logging/*",
    "-Dslf4j.provider=org.slf4j.simple.SimpleServiceProvider",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
    # Every client's configuration dump is long and says nothing new; what the clients do (group
    # joins, assignments, offsets found or reset) stays at INFO.
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.consumer.ConsumerConfig=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.producer.ProducerConfig=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.admin.AdminClientConfig=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.utils.internals.AppInfoParser=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.metrics=warn",
]

LOG_TAIL_LINES = 120


def check_built(jar_glob: str, what: str):
    """Fails with the fix when setup.sh has not yet copied `jar_glob` into java/target/lib."""
    lib = COMPAT_DIR / "java" / "target" / "lib"
    if not list(lib.glob(jar_glob)) or not list((lib / "logging").glob("slf4j-simple-*.jar")):
        raise ClientError(f"{what} not installed ({lib}/{jar_glob}): run compat-tests/setup.sh")


class LoggedLineProc(LineProc):
    """A LineProc (JSON lines on stdout) whose stderr, the JVM's log, also goes to `log_path`."""

    def __init__(self, cmd: list[str], name: str, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "a", buffering=1)
        self._log.write(f"===== {time.strftime('%H:%M:%S')} {name}: {' '.join(cmd)}\n")
        super().__init__(cmd, name)

    def _read_err(self):
        for l in self.proc.stderr:
            self.stderr.append(l)
            del self.stderr[:-200]
            self._log.write(l)
        self._log.write(f"===== {time.strftime('%H:%M:%S')} {self.name}: exited {self.proc.wait()}\n")


class JavaProc:
    """A JVM whose stdout and stderr go to `log_path`; killed with its process group."""

    def __init__(self, cmd: list[str], name: str, log_path: Path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            log.write(f"===== {time.strftime('%H:%M:%S')} {name}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (the JVM's shutdown hooks run), SIGKILL after `timeout_s`."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    close = kill9


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"----- {path}: no log -----"
    return "\n".join([f"----- {path}, last {min(lines, len(text))} of {len(text)} lines -----", *text[-lines:]])


@contextlib.contextmanager
def logs_on_failure(*paths: Path):
    """Prints the tail of each log when the block fails (pytest shows it as captured stdout)."""
    try:
        yield
    except BaseException:
        for p in paths:
            print(log_tail(p))
        raise


def latest_committed(bootstrap: str, topic: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Everything read_committed (confluent-kafka) from the start: the latest value per key, and
    every value per key in offset order (one key lives in one partition)."""
    history: dict[str, list[str]] = {}
    for r in sorted(read_confluent(bootstrap, topic, "read_committed"), key=lambda r: (r.partition, r.offset)):
        history.setdefault(r.key, []).append(r.value)
    return {k: v[-1] for k, v in history.items()}, history


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (low watermark, high watermark), from ListOffsets (confluent-kafka)."""
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{uuid.uuid4().hex[:8]}"})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False) for p in parts}
    finally:
        c.close()


def topic_configs(bootstrap: str, topic: str) -> dict[str, str | None]:
    """DescribeConfigs of one topic (confluent-kafka AdminClient): name -> value."""
    from adminlib import ConfluentAdmin

    return {k: v.value for k, v in ConfluentAdmin(bootstrap).describe_configs(topic).items()}
