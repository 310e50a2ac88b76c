#!/usr/bin/env bash
# Installs what Fjord's compat tests need; quick and quiet when everything is already there.
#
#   compat-tests/setup.sh                              kcat, Docker, <repo>/.venv, the Java CLI (with
#                                                      Kafka Streams and Connect)
#   FJORD_COMPAT_REFERENCE=1 compat-tests/setup.sh     also Apache Kafka (4.4; FJORD_KAFKA_VERSION=4.1.1 for another) as a stand-in broker
#
# Then: .venv/bin/pytest compat-tests -n 2
# Needs: Debian (apt-get, as root, for kcat and Docker), python3 >= 3.10 with venv, Java 17 + Maven (both
# installed from apt when missing), and the package registries (PyPI, Maven Central, Debian).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

say() { printf 'compat-tests/setup.sh: %s\n' "$*"; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- Prometheus and promtool (Debian's): test_monitoring_prometheus.py runs a real Prometheus ---
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    apt_install prometheus
fi

# --- chromium (Debian's) and a font: test_status_page.py drives the status page headless ------
if ! command -v chromium >/dev/null; then
    apt_install chromium fonts-dejavu-core
fi

# --- kcat (Debian's: 1.7.1 on librdkafka 2.0.2) ---------------------------------------------
if command -v kcat >/dev/null; then
    say "kcat: $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ ]*\).*/\1 (librdkafka \2)/p')"
else
    apt_install kcat
fi

# --- Docker (test_docker.py): Debian's engine (docker.io 20.10) and docker-compose 1.29, and ------
# debootstrap, which makes the base images (nothing is pulled from a registry). The tests start
# dockerd themselves when `docker info` fails, and build the images (compat-tests/dockerlib.py).
DOCKER_PKGS=()
command -v dockerd >/dev/null || DOCKER_PKGS+=(docker.io)
command -v docker-compose >/dev/null || DOCKER_PKGS+=(docker-compose)
command -v debootstrap >/dev/null || DOCKER_PKGS+=(debootstrap)
command -v objcopy >/dev/null || DOCKER_PKGS+=(binutils)
if [ "${#DOCKER_PKGS[@]}" -gt 0 ]; then
    apt_install "${DOCKER_PKGS[@]}"
fi

# --- Java 17 and Maven ---------------------------------------------------------------------
if ! command -v java >/dev/null || ! command -v javac >/dev/null; then
    apt_install openjdk-17-jdk-headless
fi
if ! command -v mvn >/dev/null; then
    apt_install maven
fi

# --- Python venv -----------------------------------------------------------------------------
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || { say "need python3 >= 3.10 (set PYTHON=...)"; exit 1; }
REQ_STAMP="$VENV/.fjord-compat-requirements.sha256"
REQ_HASH="$(hash_of "$HERE/requirements.txt")"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$REQ_STAMP" 2>/dev/null)" = "$REQ_HASH" ]; then
    say "venv $VENV: up to date"
else
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating venv $VENV with $("$PYTHON" --version)"
        "$PYTHON" -m venv "$VENV"
    fi
    say "pip install -r compat-tests/requirements.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
    echo "$REQ_HASH" > "$REQ_STAMP"
fi

# --- The Java CLI (java/) ----------------------------------------------------------------------
# build_maven dir what sentinel files...: `mvn package` in dir unless the sentinel exists and the
# files hash as they did then. MVN_ARGS (extra -D options) and LIB_DIR (the jars it copies, emptied
# first) default to none and dir/target/lib.
build_maven() {
    local dir="$1" what="$2" sentinel="$3"; shift 3
    local lib="${LIB_DIR:-$dir/target/lib}"
    local stamp="$lib.fjord-compat-build.sha256" h
    h="$(hash_of "$@")"
    if [ -e "$sentinel" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$h" ]; then
        say "$what: up to date"
        return
    fi
    say "$what: mvn -q -B package ${MVN_ARGS:-}(in ${dir#"$REPO"/})"
    rm -rf "$lib"  # no stale jars from an older dependency version
    # Maven prints colour codes even with -q -B; keep its output for when it fails.
    local log="$dir/target/mvn-build.log"
    mkdir -p "$dir/target"
    # shellcheck disable=SC2086 # MVN_ARGS is a list of -D options
    if ! (cd "$dir" && mvn -q -B ${MVN_ARGS:-} package) >"$log" 2>&1; then
        cat "$log"
        say "$what: Maven build failed"
        exit 1
    fi
    echo "$h" > "$stamp"
}
# Also Kafka Streams and Kafka Connect (4.4.0, with RocksDB and the FileStream connectors; about
# 100 MB of jars) for test_streams.py and test_connect.py.
build_maven "$HERE/java" "Java CLI" "$HERE/java/target/classes/dev/fjord/compat/Cli.class" \
    "$HERE/java/pom.xml" "$HERE"/java/src/main/java/dev/fjord/compat/*.java \
    "$HERE"/java/src/main/java/org/apache/kafka/common/utils/*.java

# --- The Java 3.x client (java3/): kafka-clients 3.9.2, for test_java3_client.py ----------------
# Its own module, as Spring Kafka's below: a class path holds one kafka-clients.
build_maven "$HERE/java3" "Java 3.x client" "$HERE/java3/target/classes/dev/fjord/compat3/Java3.class" \
    "$HERE/java3/pom.xml" "$HERE"/java3/src/main/java/dev/fjord/compat3/*.java \
    "$HERE"/java3/src/main/resources/*

# --- Spring Kafka (spring/): 4.0.9 (Spring 7.0.11, kafka-clients 4.1.2), for test_spring_kafka.py --
build_maven "$HERE/spring" "Spring Kafka app" \
    "$HERE/spring/target/classes/dev/fjord/compat/spring/SpringKafkaApp.class" \
    "$HERE/spring/pom.xml" "$HERE"/spring/src/main/java/dev/fjord/compat/spring/*.java \
    "$HERE"/spring/src/main/resources/*

# --- The Go clients (go/): franz-go, sarama, kafka-go from the Go module proxy (go.mod pins them) --
# bin/rebalance drives franz-go through a rebalance (test_fetch_sessions.py); bin/clients is every
# client family's produce/consume/group/admin/transaction calls (test_go_clients.py).
GO_DIR="$HERE/go"
GO_STAMP="$GO_DIR/bin/.fjord-compat-build.sha256"
if command -v go >/dev/null; then
    GO_HASH="$(hash_of "$GO_DIR/go.mod" "$GO_DIR/go.sum" "$GO_DIR"/rebalance/*.go "$GO_DIR"/clients/*.go)"
    if [ -x "$GO_DIR/bin/rebalance" ] && [ -x "$GO_DIR/bin/clients" ] \
        && [ "$(cat "$GO_STAMP" 2>/dev/null)" = "$GO_HASH" ]; then
        say "Go clients: up to date"
    else
        say "Go clients: go build (in compat-tests/go)"
        mkdir -p "$GO_DIR/bin"
        (cd "$GO_DIR" && go build -o bin/ ./rebalance ./clients)
        echo "$GO_HASH" > "$GO_STAMP"
    fi
else
    say "Go clients: go not installed; their tests are skipped"
fi

# --- The JavaScript clients (js/): KafkaJS and @confluentinc/kafka-javascript from npm ---------
# `npm ci` (package-lock.json pins them) when the package files changed. Their native addons are
# built here from the packages' own source, not downloaded (their install scripts would fetch
# prebuilt binaries from GitHub, out of reach here): librdkafka inside
# @confluentinc/kafka-javascript (2-4 minutes on 2 cores), linked against Debian's zlib, OpenSSL
# and zstd (CKJS_LINKING=dynamic; its default static build downloads their sources instead), and
# lz4 and zstd-napi for KafkaJS's codecs. Without node and npm, test_js_clients.py is skipped.
JS_DIR="$HERE/js"
JS_STAMP="$JS_DIR/node_modules/.fjord-compat-npm.sha256"
if command -v node >/dev/null && command -v npm >/dev/null; then
    JS_HASH="$(hash_of "$JS_DIR/package.json" "$JS_DIR/package-lock.json")"
    if [ "$(cat "$JS_STAMP" 2>/dev/null)" = "$JS_HASH" ]; then
        say "JavaScript clients: up to date"
    else
        JS_PKGS=()
        command -v g++ >/dev/null && command -v make >/dev/null || JS_PKGS+=(build-essential)
        command -v python3 >/dev/null || JS_PKGS+=(python3)  # node-gyp
        command -v pkg-config >/dev/null || JS_PKGS+=(pkg-config)
        for pkg in zlib1g-dev libssl-dev libzstd-dev; do
            dpkg -s "$pkg" >/dev/null 2>&1 || JS_PKGS+=("$pkg")
        done
        if [ "${#JS_PKGS[@]}" -gt 0 ]; then
            apt_install "${JS_PKGS[@]}"
        fi
        say "JavaScript clients: npm ci (in compat-tests/js; builds librdkafka, a few minutes)"
        JS_LOG="${TMPDIR:-/tmp}/fjord-compat-npm-ci.log"
        if ! (cd "$JS_DIR" && CKJS_LINKING=dynamic npm_config_build_from_source=true \
                npm ci --no-audit --no-fund) >"$JS_LOG" 2>&1; then
            tail -n 60 "$JS_LOG"
            say "JavaScript clients: npm ci failed (whole log: $JS_LOG)"
            exit 1
        fi
        echo "$JS_HASH" > "$JS_STAMP"
    fi
else
    say "JavaScript clients: node/npm not installed; test_js_clients.py is skipped"
fi

if [ "${FJORD_COMPAT_REFERENCE:-0}" = 1 ]; then
    KAFKA_VERSION="${FJORD_KAFKA_VERSION:-4.4.0}"
    KAFKA_LIB="$HERE/reference/target/kafka-$KAFKA_VERSION"
    MVN_ARGS="-Dkafka.version=$KAFKA_VERSION " LIB_DIR="$KAFKA_LIB" \
        build_maven "$HERE/reference" "reference Kafka $KAFKA_VERSION" "$KAFKA_LIB" "$HERE/reference/pom.xml"
fi

say "ready: $VENV/bin/pytest compat-tests -n 2   (broker: \${FJORD_BIN:-$REPO/target/release/fjord})"
