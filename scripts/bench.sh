#!/usr/bin/env bash
# make bench: Warren against a raw lapin consumer on the local broker
# (benches/drain.rs; docs/BENCHMARKS.md explains the table).
#
#   scripts/bench.sh [--scenario S1,S2,S3,P,X,I,PF] [--rounds N] [--quick]
#
# Ensures RabbitMQ answers on 127.0.0.1:5672 (unless WARREN_BENCH_AMQP_URL
# names another broker; a broker it had to start is stopped again), builds
# the release binary, runs the scenarios with the contenders alternating,
# and writes the tables to target/bench/latest.md. Progress goes to stderr.
# Takes about five minutes; --quick is a smoke run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/target/bench/latest.md"

if [ -z "${WARREN_BENCH_AMQP_URL:-}" ]; then
    bash scripts/ensure-rabbitmq.sh
    trap 'bash scripts/ensure-rabbitmq.sh --stop-if-started || true' EXIT
fi
cargo build --release
mkdir -p target/bench
if [ -z "${WARREN_BIN:-}" ]; then
    # A copy of its own, so a rebuild during the run cannot swap the binary.
    cp target/release/warren target/bench/warren
    export WARREN_BIN="$root/target/bench/warren"
fi

rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src Cargo.lock 2>/dev/null || rev="$rev + local changes"
{
    echo "## Throughput run $(date -u +%Y-%m-%dT%H:%MZ) ($rev)"
    echo
    cargo bench --bench drain -- "$@"
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
echo "bench: wrote $out" >&2
