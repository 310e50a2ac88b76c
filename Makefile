# Fjord: the two commands a new machine needs are `make run` and `make test`.
# Everything builds once, in the release profile (RocksDB's C++ build is the long part;
# ccache, through tools/cc, keeps a second build of it short).

SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
PYTEST := $(VENV)/bin/pytest
# The C/C++ compilers are set in .cargo/config.toml for every cargo build (tools/cc says why).

.PHONY: fault-schedule run build-deps-hint system-deps build setup test test-rust test-compat test-reference test-reference-4.1 bench bench-failover bench-replicated bench-cleaner-soak fmt lint clippy clean-data kafka-configs check-kafka-configs kafka-configs-build

## Run a single-node broker on PLAINTEXT://0.0.0.0:9092 with data in ./fjord-data.
run: build-deps-hint
	$(CARGO) run --release --bin fjord -- $(ARGS)

build-deps-hint:
	@command -v clang >/dev/null || { echo "installing build dependencies (clang for RocksDB bindings)"; $(MAKE) --no-print-directory system-deps; }

## System packages: clang/libclang (RocksDB bindgen), ccache, kcat (compat tests).
system-deps:
	@missing=""; \
	command -v clang >/dev/null || missing="$$missing clang libclang-dev"; \
	command -v ccache >/dev/null || missing="$$missing ccache"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

## Everything the tests need: system packages, Python clients in .venv, the Java client.
setup: system-deps
	bash compat-tests/setup.sh

build:
	$(CARGO) build --release --workspace --all-targets

## Every test: formatting and lints, unit, property and integration tests (the layering check
## among them), then real clients against real brokers, then the client-family tiers against
## Apache Kafka 4.4 itself (test-reference), which shows that the tests hold for Kafka too.
test: setup
	$(CARGO) fmt --all -- --check
	$(MAKE) --no-print-directory check-kafka-configs
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory clippy
	$(MAKE) --no-print-directory test-rust
	$(MAKE) --no-print-directory test-compat
	$(MAKE) --no-print-directory test-reference

test-rust:
	$(CARGO) test --release --workspace --no-fail-fast

test-compat:
	$(PYTEST) compat-tests -n 2 -q -p no:cacheprovider

# The compat suite against Apache Kafka itself (compat-tests/reference/kafka-as-fjord), to check the
# tests rather than the broker: every test must pass there (or skip, saying why).
REFERENCE_RUN := FJORD_BIN=$(CURDIR)/compat-tests/reference/kafka-as-fjord FJORD_READY_TIMEOUT_S=60
# The client-family tiers (a file not there yet is left out).
REFERENCE_TIERS := $(wildcard $(addprefix compat-tests/,test_go_clients.py test_js_clients.py test_java3_client.py \
  test_spring_kafka.py test_kafka_tools.py test_streams.py test_features.py test_streams_groups.py))

## The client-family tiers (Go, JavaScript, Java 3.x, Spring Kafka, Kafka's tools, Streams, features,
## streams groups) against Apache Kafka 4.4 as the reference broker (~5 min). PYTEST_ARGS adds to pytest's.
test-reference: system-deps
	FJORD_COMPAT_REFERENCE=1 FJORD_KAFKA_VERSION=4.4.0 bash compat-tests/setup.sh
	FJORD_KAFKA_VERSION=4.4.0 $(REFERENCE_RUN) $(PYTEST) $(REFERENCE_TIERS) -n 2 -q -p no:cacheprovider $(PYTEST_ARGS)

## The whole compat suite against Apache Kafka 4.1.1, the second reference: what only Kafka 4.4 does
## is skipped there (the kafka_min_version marker, conftest.py), with the reason.
test-reference-4.1: system-deps
	FJORD_COMPAT_REFERENCE=1 FJORD_KAFKA_VERSION=4.1.1 bash compat-tests/setup.sh
	FJORD_KAFKA_VERSION=4.1.1 $(REFERENCE_RUN) $(PYTEST) compat-tests -n 2 -q -p no:cacheprovider $(PYTEST_ARGS)

## Fjord against Apache Kafka 4.4 on this machine, librdkafka and Kafka's own perf tools (~18 min built;
## BENCH_ARGS=--quick for a few minutes, BENCH_ARGS=--kafka-version=4.1.1 for an older Kafka).
## Writes bench/results/<run>/ and, for a full run, the section in BENCHMARKS.md.
bench: build-deps-hint
	python3 bench/run.py $(BENCH_ARGS)

## Failover time of a 3-replica partition, Fjord then Kafka 4.4 on the same machine (compat-tests/
## failover_bench.py). FAILOVER_RUNS (10), FAILOVER_MODE (kill|stop), FAILOVER_TUNED (0|1); the
## results are appended to bench/results/failover.jsonl.
bench-failover: setup build
	FAILOVER_OUT=$(CURDIR)/bench/results/failover.jsonl $(PYTEST) compat-tests/failover_bench.py -p no:cacheprovider -q -s
	FJORD_BIN=$(CURDIR)/compat-tests/reference/kafka-as-fjord FJORD_READY_TIMEOUT_S=60 \
	  FAILOVER_OUT=$(CURDIR)/bench/results/failover.jsonl $(PYTEST) compat-tests/failover_bench.py -p no:cacheprovider -q -s

## The replicated benchmark: a 3-node cluster of Fjord, then of Kafka 4.4, replication factor 3,
## acks=all, min.insync.replicas=2; fjord-bench and Kafka's own perf tools (compat-tests/
## replicated_bench.py, ~25 min). REPLICATED_SCALE (1.0) sizes it; one JSON line per scenario is
## appended to bench/results/replicated.jsonl, and the run's table is printed at the end.
bench-replicated: setup build
	$(CARGO) build --release --manifest-path bench/Cargo.toml
	FJORD_COMPAT_REFERENCE=1 bash compat-tests/setup.sh
	run=$$(date -u +%Y%m%dT%H%M%SZ); \
	REPLICATED_RUN=$$run $(PYTEST) compat-tests/replicated_bench.py -p no:cacheprovider -q -s; \
	FJORD_BIN=$(CURDIR)/compat-tests/reference/kafka-as-fjord FJORD_READY_TIMEOUT_S=60 REPLICATED_RUN=$$run \
	  $(PYTEST) compat-tests/replicated_bench.py -p no:cacheprovider -q -s; \
	python3 compat-tests/replicated_bench.py summary bench/results/replicated.jsonl $$run

## The log cleaner under a steady load (compat-tests/cleaner_soak.py): Fjord with its cleaner,
## Fjord without it (the latency baseline), then Kafka 4.4 with its cleaner, SOAK_S seconds each
## (1200: about an hour in all). One JSON line per run is appended to bench/results/cleaner_soak.jsonl.
bench-cleaner-soak: setup build
	FJORD_COMPAT_REFERENCE=1 bash compat-tests/setup.sh
	SOAK_OUT=$(CURDIR)/bench/results/cleaner_soak.jsonl $(PYTEST) compat-tests/cleaner_soak.py -p no:cacheprovider -q -s
	SOAK_CLEANER=0 SOAK_OUT=$(CURDIR)/bench/results/cleaner_soak.jsonl $(PYTEST) compat-tests/cleaner_soak.py -p no:cacheprovider -q -s
	FJORD_BIN=$(CURDIR)/compat-tests/reference/kafka-as-fjord FJORD_READY_TIMEOUT_S=60 \
	  SOAK_OUT=$(CURDIR)/bench/results/cleaner_soak.jsonl $(PYTEST) compat-tests/cleaner_soak.py -p no:cacheprovider -q -s

## The seeded fault schedule against a 3-node cluster under real clients, with its checker
## (compat-tests/fault_schedule.py). FAULT_RUNS (1), FAULT_SEED (from the clock), FAULT_STEPS (5);
## one JSON line per run is appended to bench/results/faults.jsonl.
fault-schedule: setup build
	FAULT_OUT=$(CURDIR)/bench/results/faults.jsonl $(PYTEST) compat-tests/fault_schedule.py -p no:cacheprovider -q -s

## broker/src/kafka_configs.tsv: every broker and topic config key of Apache Kafka 4.4 with its type,
## default, validator, update mode and synonyms, generated from Kafka's own ConfigDefs by
## tools/kafka-configs (Java 17 + Maven, as `make setup` installs them; its README says more).
KAFKA_CONFIGS := tools/kafka-configs
KAFKA_CONFIGS_TSV := broker/src/kafka_configs.tsv
KAFKA_CONFIGS_RUN := java -cp '$(KAFKA_CONFIGS)/target/fjord-kafka-configs-0.1.0.jar:$(KAFKA_CONFIGS)/target/lib/*' dev.fjord.KafkaConfigs

kafka-configs: kafka-configs-build
	$(KAFKA_CONFIGS_RUN) > $(KAFKA_CONFIGS_TSV).tmp
	mv $(KAFKA_CONFIGS_TSV).tmp $(KAFKA_CONFIGS_TSV)

## Fails when the checked-in broker/src/kafka_configs.tsv is not what the generator prints.
check-kafka-configs: kafka-configs-build
	@tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	$(KAFKA_CONFIGS_RUN) > "$$tmp" && \
	if ! diff -u $(KAFKA_CONFIGS_TSV) "$$tmp"; then \
	  echo "$(KAFKA_CONFIGS_TSV) is stale: run make kafka-configs"; exit 1; \
	fi

# `mvn -q -B package` as compat-tests/setup.sh runs it: target/lib emptied first (no stale jars from
# an older Kafka), Maven's output kept in target/mvn-build.log and shown only when it fails.
kafka-configs-build:
	@command -v java >/dev/null && command -v mvn >/dev/null \
	  || { echo "kafka-configs: needs Java 17 and Maven (make setup installs them)"; exit 1; }
	@rm -rf $(KAFKA_CONFIGS)/target/lib && mkdir -p $(KAFKA_CONFIGS)/target
	@mvn -q -B -f $(KAFKA_CONFIGS)/pom.xml package >$(KAFKA_CONFIGS)/target/mvn-build.log 2>&1 \
	  || { cat $(KAFKA_CONFIGS)/target/mvn-build.log; echo "kafka-configs: Maven build failed"; exit 1; }

fmt:
	$(CARGO) fmt --all

## Same profile as the build, so the C++ of RocksDB is compiled once for both.
clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

lint:
	$(CARGO) fmt --all -- --check
	$(MAKE) --no-print-directory clippy

clean-data:
	rm -rf fjord-data
