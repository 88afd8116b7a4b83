#!/usr/bin/env bash
# Profiles one HTTP or WebSocket server of the suite under http_loadgen:
# where its CPU time goes (perf), its instructions (callgrind) or its heap
# allocations (dhat), per request.
#   bash benches/profile.sh EXAMPLE [TOOL] [DEPTH] [-- LOADGEN_ARGS..]
#   bash benches/profile.sh twill_http_hello                 # perf, depth 16
#   bash benches/profile.sh hyper_hello callgrind 1
#   bash benches/profile.sh twill_ws_echo dhat 1 -- --ws --size 64
#   SERVER_ARGS=--session bash benches/profile.sh twill_ws_echo callgrind 16 -- --ws
# EXAMPLE is a twill-bench example (twill_http_hello, hyper_hello,
# twill_ws_echo, tungstenite_echo), built in release mode first. TOOL is
# perf (the default: `perf record --call-graph dwarf` for 4 s of a 6 s
# run, then the top functions, inclusive), callgrind or dhat (the server
# runs inside valgrind for 4 s of load, then the totals are divided by the
# requests http_loadgen counted). DEPTH is the requests in flight on each
# of 64 connections (default 16). The raw profile stays in a temporary
# folder, printed at the end, for perf report or callgrind_annotate.
# SERVER_ARGS, if set, are the server's arguments after its address.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target_dir="${CARGO_TARGET_DIR:-target}/release"

usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    usage
    exit 2
fi
example="$1"
tool="${2:-perf}"
depth="${3:-16}"
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = -- ] && shift
case "$tool" in
    perf|callgrind|dhat) ;;
    *) echo "profile.sh: unknown tool $tool (perf, callgrind or dhat)" >&2; exit 2 ;;
esac
needs=valgrind
[ "$tool" = perf ] && needs=perf
if ! command -v "$needs" >/dev/null 2>&1; then
    echo "profile.sh: $needs is not installed" >&2
    exit 2
fi

cargo build --release -p twill-bench --example "$example" --bin http_loadgen >&2
server_bin="$target_dir/examples/$example"
read -ra server_args <<<"${SERVER_ARGS:-}"
work="$(mktemp -d)"
server_log="$work/server.log"

case "$tool" in
    perf) "$server_bin" 127.0.0.1:0 "${server_args[@]}" 2>"$server_log" & ;;
    callgrind) valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$server_bin" 127.0.0.1:0 "${server_args[@]}" 2>"$server_log" & ;;
    dhat) valgrind --tool=dhat --dhat-out-file="$work/dhat.json" \
        "$server_bin" 127.0.0.1:0 "${server_args[@]}" 2>"$server_log" & ;;
esac
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT

addr=""
for _ in $(seq 1 150); do
    addr="$(grep -o 'listening on [0-9.:]*' "$server_log" | awk '{print $3}' || true)"
    [ -n "$addr" ] && break
    sleep 0.2
done
if [ -z "$addr" ]; then
    echo "profile.sh: $example did not say where it listens; its output:" >&2
    cat "$server_log" >&2
    exit 1
fi

load() {
    "$target_dir/http_loadgen" --addr "$addr" --conns 64 --inflight "$depth" "$@"
}

if [ "$tool" = perf ]; then
    load --duration 6 --warmup 0.5 "$@" >"$work/load.log" &
    load_pid=$!
    sleep 1
    perf record -F 999 --call-graph dwarf,16384 -p "$server_pid" -o "$work/perf.data" \
        -- sleep 4 >/dev/null 2>&1
    wait "$load_pid"
    grep RESULT "$work/load.log"
    perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep '%' | head -5
    perf report -i "$work/perf.data" --children --percent-limit 2.5 --stdio -g none 2>/dev/null \
        | grep '%' | head -50
else
    load --duration 4 --warmup 0 "$@" >"$work/load.log"
    # twill's reactor stops on SIGTERM; valgrind writes its output either way.
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    requests="$(grep -o 'total_msgs=[0-9]*' "$work/load.log" | cut -d= -f2)"
    echo "requests answered: $requests"
    if [ "$tool" = callgrind ]; then
        total="$(callgrind_annotate "$work/callgrind.out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
        echo "instructions per request: $(( total / requests ))"
        callgrind_annotate --inclusive=yes "$work/callgrind.out" | sed -n '/file:function/,$p' | head -45
    else
        grep -E 'Total:' "$server_log"
        blocks="$(grep -E 'Total:' "$server_log" | awk '{gsub(",", "", $6); print $6}')"
        echo "heap blocks per request: $(( blocks / requests ))"
    fi
fi
echo "profile.sh: raw profile in $work" >&2
