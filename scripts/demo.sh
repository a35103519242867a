#!/usr/bin/env bash
# `make demo`: RabbitMQ tutorial 2 ("work queues") with Warren.
# Uses the broker on 127.0.0.1:5672 (starting/installing one if none answers),
# runs two workers like the tutorial's two worker.py consoles, publishes the
# tutorial's five tasks, shows them shared round-robin, then stops everything
# it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
url="${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
queue="${WARREN_DEMO_QUEUE:-task_queue}"
logs="$(mktemp -d)"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/ensure-rabbitmq.sh --stop-if-started || true
    rm -rf "$logs"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a RabbitMQ broker"
scripts/ensure-rabbitmq.sh

step "2. build warren"
cargo build --quiet
warren="$root/target/debug/warren"

step "3. two workers (like two worker.py consoles): concurrency 1, prefetch 1"
for name in A B; do
    WARREN_LOG_FORMAT=text "$warren" work --amqp-url "$url" --queue "$queue" \
        --concurrency 1 --prefetch 1 --listen 127.0.0.1:0 2> >(sed -u "s/^/[worker $name] /" | tee "$logs/$name.log" >&2) &
    pids+=($!)
done
for name in A B; do
    for _ in $(seq 1 300); do
        grep -q "consuming from" "$logs/$name.log" 2>/dev/null && break
        if grep -q "error:" "$logs/$name.log" 2>/dev/null; then exit 1; fi
        sleep 0.1
    done
    grep -q "consuming from" "$logs/$name.log" || { echo "worker $name did not start"; exit 1; }
done

step "4. publish the tutorial's five tasks (new_task.py = warren publish)"
for task in "First message." "Second message.." "Third message..." "Fourth message...." "Fifth message....."; do
    "$warren" publish --amqp-url "$url" --queue "$queue" "$task" | grep -v '^published'
done

step "5. the workers take turns (round-robin); one second of work per dot"
for _ in $(seq 1 300); do
    done_count=$(cat "$logs"/*.log | grep -c '\[x\] Done' || true)
    [ "$done_count" -ge 5 ] && break
    sleep 0.1
done
echo
for name in A B; do
    printf 'worker %s processed: %s\n' "$name" \
        "$(grep -o "Received '[^']*'" "$logs/$name.log" | sed "s/Received //" | paste -sd, -)"
done

step "6. the queue is empty (warren status = rabbitmqctl list_queues)"
"$warren" status --amqp-url "$url" --queue "$queue"

step "7. SIGTERM: the workers drain and exit"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do
    if wait "$pid"; then echo "worker (pid $pid) drained and exited 0"; else echo "worker (pid $pid) exited $?"; fi
done
pids=()
sleep 0.2
echo
echo "Done. Try: target/debug/warren work   (and in another shell)   target/debug/warren publish A task....."
