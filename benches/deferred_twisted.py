"""Twisted's side of the Deferred benchmark (benches/deferred.sh).

The four workloads of src/bin/deferred_bench.rs and three more, on
twisted.internet.defer.Deferred:

  chain           one Deferred, N callbacks that each add 1, fired with 0 -> N
                  (callbacks per second)
  single          create a Deferred, add one callback (+1), fire it, read the
                  result (Deferreds per second)
  steal           one Deferred, N callbacks that each return succeed(x + 1),
                  i.e. an already-fired Deferred whose result the chain takes
                  over -> N (callbacks per second)
  nested          N Deferreds, each fired and waiting on the next (its
                  callback returns an unfired Deferred, then it adds 1); the
                  innermost is fired last with 0 -> N - 1 at the outermost
                  (Deferreds per second)
  gather          N unfired Deferreds, gatherResults over them, each fired
                  with its index -> [0, 1, .., N - 1] (unit "gathers": whole
                  gathers of N Deferreds per second, not Deferreds per second;
                  N is --size)
  coroutine       ensureDeferred(coro(d)) where coro is
                  `async def coro(d): v = await d; return v + 1` and d is an
                  already-fired succeed(1): the coroutine completes at once
                  -> 2 (unit "round_trips": coroutines run to their result
                  per second; --single-batch of them per call)
  coroutine_wait  the same, but d is an unfired Deferred: the coroutine waits,
                  then d is fired with 1 -> 2 (round_trips per second)

--workloads picks some of them, comma-separated (default: all seven).

Every result is checked. Each workload is calibrated so that one repetition
lasts about --rep-time seconds, then timed --reps times with
time.perf_counter (monotonic); the median and best repetitions are printed
as one machine-readable line per workload:

  RESULT impl=twisted workload=chain n=1000 unit=callbacks ops_per_s=...
         best_ops_per_s=... reps=5 iters=...
"""

import argparse
import gc
import sys
import time

from twisted import __version__ as twisted_version
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed


def _add1(x):
    return x + 1


def _succeed_add1(x):
    return succeed(x + 1)


def _return(_, d):
    return d


def chain(n):
    d = Deferred()
    for _ in range(n):
        d.addCallback(_add1)
    d.callback(0)
    r = d.result
    if r != n:
        raise AssertionError(f"chain: got {r!r}, expected {n}")


def single(n):
    for i in range(n):
        d = Deferred()
        d.addCallback(_add1)
        d.callback(i)
        r = d.result
        if r != i + 1:
            raise AssertionError(f"single: got {r!r}, expected {i + 1}")


def steal(n):
    d = Deferred()
    for _ in range(n):
        d.addCallback(_succeed_add1)
    d.callback(0)
    r = d.result
    if r != n:
        raise AssertionError(f"steal: got {r!r}, expected {n}")


def nested(n):
    innermost = Deferred()
    cur = innermost
    for _ in range(n - 1):
        outer = Deferred()
        outer.addCallback(_return, cur)
        outer.addCallback(_add1)
        outer.callback(None)
        cur = outer
    if n > 1 and not isinstance(cur.result, Deferred):
        raise AssertionError("nested: the outermost Deferred is not waiting")
    innermost.callback(0)
    r = cur.result
    if r != n - 1:
        raise AssertionError(f"nested: got {r!r}, expected {n - 1}")


def gather(n):
    ds = [Deferred() for _ in range(n)]
    g = gatherResults(ds)
    for i, d in enumerate(ds):
        d.callback(i)
    r = g.result
    if r != list(range(n)):
        raise AssertionError(f"gather: got {r!r:.80}, expected [0, .., {n - 1}]")


async def _await_add1(d):
    v = await d
    return v + 1


def coroutine(n):
    for _ in range(n):
        r = ensureDeferred(_await_add1(succeed(1))).result
        if r != 2:
            raise AssertionError(f"coroutine: got {r!r}, expected 2")


def coroutine_wait(n):
    for _ in range(n):
        d = Deferred()
        c = ensureDeferred(_await_add1(d))
        if c.called:
            raise AssertionError("coroutine_wait: the coroutine did not wait")
        d.callback(1)
        r = c.result
        if r != 2:
            raise AssertionError(f"coroutine_wait: got {r!r}, expected 2")


def _all(n):
    return n


def _one(n):
    return 1


# name -> (function, unit, the option giving n, operations per call of
# function(n)).
WORKLOADS = {
    "chain": (chain, "callbacks", "size", _all),
    "single": (single, "deferreds", "single_batch", _all),
    "steal": (steal, "callbacks", "size", _all),
    "nested": (nested, "deferreds", "size", _all),
    "gather": (gather, "gathers", "size", _one),
    "coroutine": (coroutine, "round_trips", "single_batch", _all),
    "coroutine_wait": (coroutine_wait, "round_trips", "single_batch", _all),
}


def measure(fn, n, ops, reps, rep_time):
    """Returns (median, best) operations per second, ops operations per
    call of fn(n), and the calls per repetition."""
    fn(n)  # warm-up, and a first check
    iters = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(n)
        dt = time.perf_counter() - t0
        if dt >= rep_time or iters >= 1 << 30:
            break
        iters = max(iters * 2, int(iters * rep_time / max(dt, 1e-9) * 1.1) + 1)
    rates = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(n)
        dt = time.perf_counter() - t0
        rates.append(iters * ops / dt)
    rates.sort()
    mid = len(rates) // 2
    median = rates[mid] if len(rates) % 2 else (rates[mid - 1] + rates[mid]) / 2
    return median, rates[-1], iters


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1000,
                   help="chain length / nesting depth / Deferreds per gather")
    p.add_argument("--single-batch", type=int, default=1000,
                   help="Deferreds (single) or round trips (coroutine, "
                        "coroutine_wait) per call")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rep-time", type=float, default=0.1, help="seconds per repetition")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated, from: " + ", ".join(WORKLOADS))
    p.add_argument("--round", default="1")
    a = p.parse_args()
    if a.size < 1 or a.single_batch < 1 or a.reps < 1:
        p.error("--size, --single-batch and --reps must be >= 1")
    names = a.workloads.split(",")
    for name in names:
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")

    print(f"INFO impl=twisted twisted_version={twisted_version} "
          f"python={sys.version.split()[0]}", flush=True)
    for name in names:
        fn, unit, size_option, ops_per_call = WORKLOADS[name]
        n = getattr(a, size_option)
        median, best, iters = measure(fn, n, ops_per_call(n), a.reps, a.rep_time)
        print(f"RESULT impl=twisted round={a.round} workload={name} n={n} unit={unit} "
              f"ops_per_s={median:.1f} best_ops_per_s={best:.1f} reps={a.reps} iters={iters}",
              flush=True)


if __name__ == "__main__":
    main()
