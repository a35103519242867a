#!/usr/bin/env bash
# What logging costs per task: instructions (callgrind) of a release
# `warren work --per-dot 0s` draining N no-op tasks, with the default filter
# (info: the task span and the sleep handler's two lines; JSON to a pipe, the
# default off a terminal, and text) and with WARREN_LOG=warn (no span, no lines).
#
#   scripts/log-profile.sh [WARREN_BIN] [N=5000]
#
# Counters are zeroed once the worker is ready and dumped when the N tasks
# are acked, so start-up and the drain at exit are not counted; every
# thread is (the log writer's too). Needs valgrind and the broker at
# 127.0.0.1:5672 (or WARREN_PROFILE_AMQP_URL). Results, and the callgrind
# files for callgrind_annotate, go to target/log-profile/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$root/target/release/warren}"
n="${2:-5000}"
url="${WARREN_PROFILE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
out="$root/target/log-profile"
mkdir -p "$out"
seq 1 "$n" | sed 's/^/task /' > "$out/tasks.txt"

acked() {
    curl -fs "http://$1/metrics" 2>/dev/null |
        awk '/^warren_tasks_total\{outcome="acked"\}/ { print $2 }'
}

# profile LABEL WARREN_LOG FORMAT: prints "LABEL instructions-per-task".
profile() {
    local label="$1" filter="$2" format="$3" queue="profile.logs.$$.$1" port
    port=$((20000 + RANDOM % 20000))
    rm -f "$out/callgrind.$label".*
    WARREN_LOG="$filter" WARREN_LOG_FORMAT="$format" WARREN_SERVER_LISTEN="127.0.0.1:$port" \
        valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$label.%p" \
        "$bin" work --amqp-url "$url" --queue "$queue" --per-dot 0s \
        2> >(cat > "$out/stderr.$label") &
    local pid=$!
    until curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; do sleep 0.5; done
    callgrind_control -z "$pid" > /dev/null 2>&1
    "$bin" publish --amqp-url "$url" --queue "$queue" --file "$out/tasks.txt" > /dev/null
    until [ "$(acked "127.0.0.1:$port")" = "$n" ]; do sleep 0.5; done
    callgrind_control -d "$pid" > /dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" || true
    # The dump taken at -d is the file with a ".1" part: the drain alone.
    local ir
    ir=$(awk '/^summary:/ { print $2 }' "$out"/callgrind."$label".*.1)
    echo "$label $((ir / n))"
}

json=$(profile info-json "info,lapin=off" json)
text=$(profile info-text "info,lapin=off" text)
warn=$(profile warn "warn" json)
{
    echo "binary: $bin, $n tasks, instructions per task (all threads)"
    echo "$json"
    echo "$text"
    echo "$warn"
    echo "logging at info: JSON +$(( ${json#* } - ${warn#* } )), text +$(( ${text#* } - ${warn#* } )) per task"
} | tee "$out/latest.txt"
