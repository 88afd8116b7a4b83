#!/usr/bin/env bash
# twill's Deferred against Twisted's, same workloads, same run:
#   bash benches/deferred.sh              # 5 rounds, each side alternately
#   bash benches/deferred.sh --rounds 3
#   bash benches/deferred.sh --smoke      # tiny sizes, one round, for CI
#
# Creates the suite's virtualenv in target/twisted-venv (benches/venv.sh),
# builds deferred_bench in release mode, runs deferred_bench (twill) and
# benches/deferred_twisted.py (Twisted) alternately, then prints a markdown
# table: median ops/s over rounds per side, and the ratio.
# With --smoke, a venv or pip failure only skips the Twisted side.
# The run stops by itself: each side's run has a time limit, and no new round
# starts after ~100 s.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

command="bash benches/deferred.sh${*:+ $*}"
smoke=0
rounds=5
usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --rounds)
            [ $# -ge 2 ] || { echo "deferred.sh: --rounds needs a value" >&2; exit 2; }
            rounds="$2"
            shift
            ;;
        --rounds=*) rounds="${1#--rounds=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "deferred.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$rounds" in
    ''|*[!0-9]*|0) echo "deferred.sh: --rounds must be a positive integer" >&2; exit 2 ;;
esac

target="${CARGO_TARGET_DIR:-target}"
venv="$target/twisted-venv"
bin="$target/release/deferred_bench"
sizes=()
if [ "$smoke" = 1 ]; then
    rounds=1
    sizes=(--size 10 --single-batch 10 --reps 1 --rep-time 0)
fi
side_timeout=30   # seconds for one side's run of all seven workloads
deadline=100      # no new round starts after this many seconds

# --- Twisted in a virtualenv --------------------------------------------------
setup_twisted() {
    bash benches/venv.sh >/dev/null
}

twisted=1
if ! setup_twisted; then
    if [ "$smoke" = 1 ]; then
        echo "deferred.sh: warning: could not set up twisted in $venv; smoke run of the twill side only" >&2
        twisted=0
    else
        echo "deferred.sh: error: could not create $venv with twisted" \
             "(python3 -m venv and pip install twisted); on Debian, apt-get install python3-venv" >&2
        exit 1
    fi
fi

# --- twill --------------------------------------------------------------------
cargo build --release -p twill-bench --bin deferred_bench

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

run_twill() {
    timeout "$side_timeout" "$bin" --round "$1" "${sizes[@]}" | tee -a "$results"
}
run_twisted() {
    timeout "$side_timeout" "$venv/bin/python" benches/deferred_twisted.py \
        --round "$1" "${sizes[@]}" | tee -a "$results"
}

start=$SECONDS
done_rounds=0
for ((r = 1; r <= rounds; r++)); do
    if [ "$r" -gt 1 ] && [ $((SECONDS - start)) -ge "$deadline" ]; then
        echo "deferred.sh: warning: ${deadline} s passed; stopping after $done_rounds round(s)" >&2
        break
    fi
    echo "## round $r/$rounds"
    # Alternate which side goes first, so slow drifts of the machine hit both.
    if [ "$twisted" = 1 ] && [ $((r % 2)) = 0 ]; then
        run_twisted "$r"
        run_twill "$r"
    else
        run_twill "$r"
        if [ "$twisted" = 1 ]; then run_twisted "$r"; fi
    fi
    done_rounds=$r
done

# --- the table ----------------------------------------------------------------
cpu="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || true)"
versions="$(grep '^INFO impl=twisted' "$results" | head -n1 | sed 's/^INFO impl=twisted //' || true)"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- nproc: $(nproc) (${cpu:-unknown CPU}; $(uname -sr))"
echo "- command: $command"
echo "- $(rustc --version); ${versions:-Twisted not run}"
echo "- $done_rounds round(s); per side and round, the median of the timed repetitions;" \
     "below, the median over rounds; ratio = twill / Twisted"
echo
"$bin" summarize "$results"
