#!/usr/bin/env bash
# Regenerates kafka-protocol's message types from the schemas of one Kafka release.
#
#   bash vendor/regenerate.sh 4.4.0
#
# The schemas are the `common/message/*.json` files inside that release's kafka-clients jar
# (fetched with Maven). kafka-protocol-codegen/ is kafka-protocol's own generator, reading a
# directory instead of cloning apache/kafka; ignorable_checks.py then applies Fjord's encoder
# checks. From Kafka 4.1.0's jar this reproduces vendor/kafka-protocol byte for byte as
# kafka-protocol 0.18.0 shipped it (plus the checks), so moving to a newer Kafka is this one
# command, a build, and the handlers' version caps.
set -euo pipefail
version=${1:?usage: regenerate.sh <kafka version, e.g. 4.4.0>}
here=$(cd "$(dirname "$0")" && pwd)
jar=$HOME/.m2/repository/org/apache/kafka/kafka-clients/$version/kafka-clients-$version.jar
[ -f "$jar" ] || mvn -q dependency:get -Dartifact="org.apache.kafka:kafka-clients:$version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unzip -q "$jar" 'common/message/*.json' -d "$work"
CARGO_TARGET_DIR=${CODEGEN_TARGET_DIR:-$work/target} \
    cargo run -q --release --manifest-path "$here/kafka-protocol-codegen/Cargo.toml" -- \
    "$work/common/message" "$here/kafka-protocol/src/messages"
rustfmt --edition 2021 "$here/kafka-protocol/src/messages.rs"
python3 "$here/ignorable_checks.py" --jar "$jar"
echo "$version" > "$here/kafka-protocol/KAFKA_VERSION"
python3 "$here/../protocol/tests/messages/generate.py" --jar "$jar"
