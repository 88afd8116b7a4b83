#!/usr/bin/env bash
# Builds the echo servers and the load generator in release mode, then runs
# the side-by-side echo benchmark. Arguments go to echo_bench, e.g.
#   bash benches/run.sh                 # 64x16x1 and 64x16x16, 3 rounds of 5 s
#   bash benches/run.sh --smoke         # one 1 s round, for CI
#   bash benches/run.sh --scenario all --rounds 5
# Everything runs on loopback and stops by itself.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target_dir="${CARGO_TARGET_DIR:-target}/release"

if ! cargo build --release --example echo_server; then
    echo "run.sh: warning: could not build twill's echo_server example;" \
         "the twill column is skipped (or uses a stale binary if one is left in $target_dir/examples)" >&2
fi
cargo build --release -p twill-bench

exec "$target_dir/echo_bench" --target-dir "$target_dir" "$@"
