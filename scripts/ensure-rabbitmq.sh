#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers AMQP on
# ${WARREN_AMQP_HOST:-127.0.0.1}:${WARREN_AMQP_PORT:-5672}, for Warren's tests.
#
#   scripts/ensure-rabbitmq.sh                    check; install/start the local broker if needed (root)
#   scripts/ensure-rabbitmq.sh --stop-if-started  stop the broker only if this script started it
#
# Idempotent. When it starts the broker it writes target/.warren-started-rabbitmq,
# so that --stop-if-started never stops a broker it did not start.
set -euo pipefail

host="${WARREN_AMQP_HOST:-127.0.0.1}"
port="${WARREN_AMQP_PORT:-5672}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
marker="$root/target/.warren-started-rabbitmq"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { echo "ensure-rabbitmq: $*"; }
die() { echo "ensure-rabbitmq: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# Sends the AMQP 0-9-1 header; a broker replies with a Connection.Start frame,
# whose first byte (frame type) is 1.
amqp_answers() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1"
        printf "AMQP\x00\x00\x09\x01" >&3
        [ "$(head -c 1 <&3 | od -An -tx1 | tr -d " ")" = 01 ]
    ' "$host" "$port" 2>/dev/null
}

if [ "${1:-}" = --stop-if-started ]; then
    if [ ! -f "$marker" ]; then
        say "this script did not start RabbitMQ; leaving it alone"
        exit 0
    fi
    is_root || die "RabbitMQ was started by this script as root; run: sudo $0 --stop-if-started"
    rabbitmqctl -q stop || say "rabbitmqctl stop failed (already stopped?)"
    rm -f "$marker"
    say "stopped the RabbitMQ broker this script had started"
    exit 0
elif [ $# -gt 0 ]; then
    die "usage: $0 [--stop-if-started]"
fi

if amqp_answers; then
    say "RabbitMQ answers AMQP on $host:$port"
    exit 0
fi

case "$host" in
    127.0.0.1 | localhost | ::1) ;;
    *) die "nothing answers AMQP on $host:$port (not a local address, so not starting a broker)" ;;
esac

if ! command -v rabbitmq-server >/dev/null; then
    is_root || die "RabbitMQ is not installed; run: sudo apt-get install -y rabbitmq-server"
    say "installing rabbitmq-server"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
fi

is_root || die "nothing answers AMQP on $host:$port; start RabbitMQ as root: sudo $0"

# A running local node that does not answer on this port: report instead of
# starting a second one (it would fail on the node name anyway).
if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 || true # may still be booting
    if amqp_answers; then
        say "RabbitMQ (already running, just finished booting) answers AMQP on $host:$port"
        exit 0
    fi
    die "a RabbitMQ node is already running here but nothing answers AMQP on $host:$port;" \
        "check WARREN_AMQP_PORT and the listeners in /etc/rabbitmq/rabbitmq.conf" \
        "(rabbitmq-diagnostics listeners). Not starting a second broker."
fi

say "starting RabbitMQ: rabbitmq-server -detached"
rabbitmq-server -detached
mkdir -p "$(dirname "$marker")"
echo "started by scripts/ensure-rabbitmq.sh at $(date -Is)" >"$marker"

start=$SECONDS
until amqp_answers; do
    if [ $((SECONDS - start)) -ge 90 ]; then
        die "started RabbitMQ, but nothing answers AMQP on $host:$port after 90 s" \
            "(see /var/log/rabbitmq/; stop it with: $0 --stop-if-started)"
    fi
    sleep 1
done
say "started RabbitMQ; it answers AMQP on $host:$port after $((SECONDS - start)) s"
