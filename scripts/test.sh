#!/usr/bin/env bash
# `make test`: everything CI runs. Installs what is missing (rustfmt/clippy,
# RabbitMQ, Prometheus, a Python venv with pika, helm), then: format check,
# clippy with warnings as errors, unit and integration tests against a real
# broker, and the Helm chart / kustomize checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
trap 'scripts/ensure-rabbitmq.sh --stop-if-started || true' EXIT

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
scripts/ensure-rabbitmq.sh
scripts/python-env.sh >/dev/null
scripts/ensure-prometheus.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
# Not --all-targets: that would run the benchmark (harness = false) as a test.
cargo test --lib --bins --tests --examples
cargo test --doc
echo "== Helm chart and kustomize checks"
WARREN_BIN="$root/target/debug/warren" scripts/check-chart.sh
