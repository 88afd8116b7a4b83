#!/usr/bin/env bash
# twill's benchmark suite: one command builds and runs all of it.
#   bash benches/run.sh                  # the whole suite, ~35 min
#   bash benches/run.sh --smoke          # every part, tiny and quick: CI's check
#   bash benches/run.sh PART [ARGS..]    # one part, ARGS passed on
# PART is one of:
#   echo      echo servers side by side under loadgen (echo_bench)
#   fanout    broadcast fan-out to 200 clients (fanout_bench)
#   idle      resident memory per idle connection, 10,000 open (idle_bench)
#   micro     call_later, decoders (cargo bench --bench micro)
#   deferred  Deferred callbacks against Twisted's (deferred.sh)
#   executor  !Send futures: LocalExecutor against an async-task queue (executor_bench)
#   tls       TLS echo, bulk and handshakes: twill, tokio-rustls, asyncio ssl (tls_bench)
#   udp       UDP echo, 64 B and 1,200 B datagrams: twill, tokio, std, asyncio, uvloop (udp_bench)
#   unix      stream echo over Unix sockets against TCP: twill, tokio (unix_bench)
#   http      hello-world HTTP/1.1, keep-alive, with and without pipelining:
#             twill, hyper, Twisted Web, aiohttp (http_bench)
#   ws        WebSocket echo of 64 B messages: twill, tokio-tungstenite (ws_bench)
#   group     several cores: placement balance, echo and fan-out on a ReactorGroup
#             against one reactor and tokio's multi-thread runtime (group_bench)
#   sendfile  a 1 GiB file to one client: twill's send_file (sendfile(2)) against
#             its read-and-write FileSender and tokio (sendfile_bench; --size MIB)
# It creates the Python virtualenv with Twisted, uvloop and aiohttp (benches/venv.sh)
# and builds every server in release mode first. Everything runs on
# loopback and stops by itself. benches/README.md explains the output.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target_dir="${CARGO_TARGET_DIR:-target}/release"

usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

part=all
smoke=()
case "${1:-}" in
    echo|fanout|idle|micro|deferred|executor|tls|udp|unix|http|ws|group|sendfile) part="$1"; shift ;;
    --smoke) smoke=(--smoke); shift ;;
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
esac
if [ "$part" = all ] && [ $# -gt 0 ]; then
    echo "run.sh: arguments are for one part: bash benches/run.sh PART ARGS.." >&2
    exit 2
fi

# Python servers: without the venv they are skipped with a warning.
if python="$(bash benches/venv.sh)"; then
    export TWILL_BENCH_PYTHON="$python"
else
    echo "run.sh: warning: no Python virtualenv; the asyncio, uvloop, Twisted and aiohttp servers are skipped" >&2
fi

cargo build --release --example echo_server --example async_echo --example broadcast_server --example udp_echo
cargo build --release --features tls --example tls_echo_server
cargo build --release -p twill-protocols --example frame_echo_server
cargo build --release -p twill-bench --bins --examples

run_echo() { "$target_dir/echo_bench" --target-dir "$target_dir" "$@"; }
run_fanout() { "$target_dir/fanout_bench" --target-dir "$target_dir" "$@"; }
run_idle() { "$target_dir/idle_bench" --target-dir "$target_dir" "$@"; }
run_micro() { cargo bench -p twill-bench --bench micro -- "$@"; }
run_deferred() { bash benches/deferred.sh "$@"; }
run_executor() { "$target_dir/executor_bench" "$@"; }
run_tls() { "$target_dir/tls_bench" --target-dir "$target_dir" "$@"; }
run_udp() { "$target_dir/udp_bench" --target-dir "$target_dir" "$@"; }
run_unix() { "$target_dir/unix_bench" --target-dir "$target_dir" "$@"; }
run_http() { "$target_dir/http_bench" --target-dir "$target_dir" "$@"; }
run_ws() { "$target_dir/ws_bench" --target-dir "$target_dir" "$@"; }
run_group() { "$target_dir/group_bench" --target-dir "$target_dir" "$@"; }
run_sendfile() { "$target_dir/sendfile_bench" --target-dir "$target_dir" "$@"; }

if [ "$part" != all ]; then
    "run_$part" "$@"
    exit
fi

status=0
for p in echo fanout idle micro deferred executor tls udp unix http ws group sendfile; do
    echo
    echo "# $p"
    if [ "$p" = echo ] && [ ${#smoke[@]} = 0 ]; then
        "run_$p" --rounds 5 || status=1
    else
        "run_$p" "${smoke[@]}" || status=1
    fi
done
exit $status
