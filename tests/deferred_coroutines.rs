//! `Deferred::from_future` as Twisted's `ensureDeferred` (rules 1.9 and
//! 1.15): polled at once, resumed inside the `callback` that fires what it
//! awaits, runnable with only a `Clock`, and cancelled the way a Twisted
//! coroutine is — through what it awaits, innermost first, with the future
//! free to recover. Then the `futures` interplay: `select!`/`join!` on
//! Deferreds, `DeferredQueue` as a `Stream`, a oneshot from another thread,
//! and futures freed with the reactor.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::StreamExt;
use twill::defer::{
    fail, gather_stream, oneshot, succeed, CancelledError, Deferred, DeferredQueue, Failure,
    SenderDropped,
};
use twill::task::{defer_later, Clock};
use twill::testing::{assert_no_result, failure_result_of, success_result_of};
use twill::{Panicked, Reactor};

type Log = Rc<RefCell<Vec<&'static str>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

#[test]
fn a_future_that_does_not_wait_has_fired_when_from_future_returns() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let d = Deferred::from_future(async move {
        r.set(true);
        let a = succeed(20).await?;
        Ok(a + 1)
    });
    assert!(ran.get(), "polled at once");
    assert_eq!(success_result_of(&d), 21);
}

#[test]
fn with_only_a_clock_the_future_runs_as_its_deferreds_fire() {
    let clock = Clock::new();
    let (one, two) = (
        defer_later(&clock, Duration::from_secs(1), || Ok(1)),
        defer_later(&clock, Duration::from_secs(2), || Ok(2)),
    );
    let d = Deferred::from_future(async move { Ok(one.await? + two.await?) });
    clock.advance(Duration::from_secs(1));
    assert_no_result(&d);
    clock.advance(Duration::from_secs(1));
    assert_eq!(success_result_of(&d), 3);
}

#[test]
fn a_failure_awaited_is_the_same_failure_and_can_be_caught() {
    let failure = Failure::new("boom");
    let awaited: Deferred<i32> = fail(failure.clone());
    let d = Deferred::from_future(async move {
        match awaited.await {
            Err(f) if f.ptr_eq(&failure) => Ok(1),
            other => other,
        }
    });
    assert_eq!(success_result_of(&d), 1);
}

#[test]
fn a_panicking_future_fails_its_deferred() {
    let d: Deferred<()> = Deferred::from_future(async { panic!("in the future") });
    assert!(failure_result_of(&d).check::<Panicked>());
}

#[test]
fn the_future_sees_what_the_inner_canceller_gave() {
    #[derive(Debug)]
    struct Interrupted;
    impl std::fmt::Display for Interrupted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("interrupted")
        }
    }
    impl std::error::Error for Interrupted {}

    let by_value: Deferred<i32> = Deferred::with_canceller(|r| r.callback(99));
    let d = Deferred::from_future(async move { by_value.await.map(|n| n * 10) });
    d.cancel();
    assert_eq!(
        success_result_of(&d),
        990,
        "a canceller's value reaches the future"
    );

    let by_error: Deferred<i32> = Deferred::with_canceller(|r| r.errback(Interrupted));
    let d = Deferred::from_future(async move {
        match by_error.await {
            Err(f) if f.check::<Interrupted>() => Err(Failure::new("translated")),
            other => other,
        }
    });
    d.cancel();
    assert_eq!(failure_result_of(&d).to_string(), "translated");
}

#[test]
fn a_future_that_recovers_from_a_cancel_goes_on_and_can_be_cancelled_again() {
    // Twisted's test_AsynchronousCancellation: the coroutine catches the
    // cancel, awaits something else, and its Deferred waits for that.
    let first: Deferred<i32> = Deferred::new();
    let second: Deferred<i32> = Deferred::new();
    let third: Deferred<i32> = Deferred::new();
    let (fire_second, fire_third) = (second.resolver(), third.resolver());
    let d = Deferred::from_future(async move {
        let a = match first.await {
            Err(f) if f.check::<CancelledError>() => second.await?,
            other => other?,
        };
        let b = match third.await {
            Err(f) if f.check::<CancelledError>() => 1000,
            other => other?,
        };
        Ok(a + b)
    });
    d.cancel();
    assert_no_result(&d);
    assert!(!fire_second.called(), "the second await was not cancelled");
    fire_second.callback(6543);
    assert_no_result(&d);
    d.cancel();
    assert!(
        fire_third.called(),
        "the second cancel reached the third await"
    );
    assert_eq!(success_result_of(&d), 7543);
}

#[test]
fn nested_coroutines_cancel_innermost_first() {
    let order = log();
    let o = order.clone();
    let innermost: Deferred<i32> =
        Deferred::with_canceller(move |_| o.borrow_mut().push("innermost cancelled"));
    let o = order.clone();
    let middle = Deferred::from_future(async move {
        let got = innermost.await;
        o.borrow_mut().push("middle sees it");
        got
    });
    let o = order.clone();
    let outer = Deferred::from_future(async move {
        let got = middle.await;
        o.borrow_mut().push("outer sees it");
        got
    });
    outer.cancel();
    assert_eq!(
        *order.borrow(),
        ["innermost cancelled", "middle sees it", "outer sees it"]
    );
    assert!(failure_result_of(&outer).check::<CancelledError>());
}

#[test]
fn select_and_join_take_deferreds() {
    let (a, b) = (Deferred::<i32>::new(), Deferred::<i32>::new());
    let (fire_a, fire_b) = (a.resolver(), b.resolver());
    let joined = Deferred::from_future(async move {
        let (a, b) = futures::join!(a, b);
        Ok(a? + b?)
    });
    fire_b.callback(2);
    assert_no_result(&joined);
    fire_a.callback(1);
    assert_eq!(success_result_of(&joined), 3);

    let (mut fast, mut slow) = (Deferred::<&str>::new(), Deferred::<&str>::new());
    let (fire_fast, slow_control) = (fast.resolver(), slow.resolver());
    let first = Deferred::from_future(async move {
        futures::select! {
            f = fast => f,
            s = slow => s,
        }
    });
    fire_fast.callback("fast");
    assert_eq!(success_result_of(&first), "fast");
    assert!(!slow_control.called());
}

#[test]
fn cancelling_a_select_cancels_every_deferred_it_awaits() {
    let (mut a, mut b) = (Deferred::<i32>::new(), Deferred::<i32>::new());
    let (watch_a, watch_b) = (a.resolver(), b.resolver());
    let d = Deferred::from_future(async move {
        futures::select! {
            x = a => x,
            y = b => y,
        }
    });
    d.cancel();
    assert!(watch_a.called() && watch_b.called());
    assert!(failure_result_of(&d).check::<CancelledError>());
}

#[test]
fn a_deferred_queue_is_a_stream() {
    let queue = DeferredQueue::new();
    let mut stream = queue.clone();
    let d = Deferred::from_future(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(stream.next().await.expect("the stream never ends"));
        }
        Ok(got)
    });
    queue.put(1).unwrap();
    queue.put(2).unwrap();
    assert_no_result(&d);
    queue.put(3).unwrap();
    assert_eq!(success_result_of(&d), [1, 2, 3]);
}

#[test]
fn dropping_a_waiting_stream_leaves_no_get_behind() {
    let queue: DeferredQueue<i32> = DeferredQueue::new();
    let mut stream = queue.clone();
    let d = Deferred::from_future(async move { Ok(stream.next().await) });
    assert_eq!(queue.waiting(), 1);
    d.cancel(); // drops the future, and the stream with it
    assert_eq!(queue.waiting(), 0);
    queue.put(7).unwrap();
    assert_eq!(
        queue.pending(),
        1,
        "the value is kept, not handed to nobody"
    );
}

#[test]
fn a_stream_of_deferreds_is_gathered_in_order() {
    let clock = Clock::new();
    let deferreds = vec![
        defer_later(&clock, Duration::from_secs(2), || Ok("a")),
        defer_later(&clock, Duration::from_secs(1), || Ok("b")),
    ];
    let all = gather_stream(futures::stream::iter(deferreds));
    assert_no_result(&all);
    clock.advance(Duration::from_secs(2));
    assert_eq!(success_result_of(&all), ["a", "b"]);
}

#[test]
fn a_oneshot_fires_from_another_thread_through_the_reactor() {
    let reactor = Reactor::new().unwrap();
    let (d, sender) = oneshot::<String>();
    let worker = std::thread::spawn(move || sender.send(Ok("from a thread".to_owned())));
    let (dropped, dropped_sender) = oneshot::<u8>();
    drop(dropped_sender);
    let both = twill::defer::gather_results(vec![
        d.then(|s| Ok(s.len())),
        dropped.then(|n| Ok(usize::from(n))),
    ]);
    let result = Rc::new(RefCell::new(None));
    let sink = result.clone();
    both.add_both(move |r| {
        *sink.borrow_mut() = Some(r);
        twill::stop();
        Ok(Vec::new())
    });
    twill::call_later(Duration::from_secs(10), twill::stop);
    reactor.run().unwrap();
    worker.join().unwrap().unwrap();
    let failure = result.borrow_mut().take().expect("fired").unwrap_err();
    let first = failure.downcast_ref::<twill::defer::FirstError>().unwrap();
    assert_eq!(first.index, 1);
    assert!(first.failure.check::<SenderDropped>());
}

#[test]
fn cancelling_a_oneshot_tells_the_sender() {
    let _reactor = Reactor::new().unwrap();
    let (d, sender) = oneshot::<u8>();
    assert!(!sender.is_canceled());
    d.cancel();
    assert!(sender.is_canceled());
    assert!(failure_result_of(&d).check::<CancelledError>());
}

#[test]
fn a_finished_future_is_freed_at_once() {
    let token = Rc::new(());
    let weak = Rc::downgrade(&token);
    let awaited = Deferred::new();
    let fire = awaited.resolver();
    let d = Deferred::from_future(async move {
        let _token = token;
        awaited.await
    });
    assert!(weak.upgrade().is_some());
    fire.callback(1);
    assert_eq!(success_result_of(&d), 1);
    assert!(weak.upgrade().is_none());
}

/// Twisted's cycle Deferred → canceller → task → future → Deferred would
/// keep a pending future alive for ever; here the reactor's end frees it.
#[test]
fn a_pending_future_nobody_holds_is_freed_with_the_reactor() {
    let reactor = Reactor::new().unwrap();
    let weak: Weak<()>;
    let spawned_weak: Weak<()>;
    {
        let token = Rc::new(());
        weak = Rc::downgrade(&token);
        // Awaits a Deferred nobody can fire any more, and a timer.
        let never: Deferred<()> = Deferred::new();
        let d = Deferred::from_future(async move {
            let _token = token;
            let _ = never.await;
            async_io_sleep().await;
            Ok(())
        });
        drop(d);
        let spawned = Rc::new(());
        spawned_weak = Rc::downgrade(&spawned);
        twill::spawn(async move {
            let _spawned = spawned;
            futures::future::pending::<()>().await;
        });
    }
    reactor.call_later(Duration::from_millis(1), twill::stop);
    reactor.run().unwrap();
    assert!(weak.upgrade().is_some(), "pending while the reactor lives");
    assert!(spawned_weak.upgrade().is_some());
    drop(reactor);
    assert!(weak.upgrade().is_none(), "freed with the reactor");
    assert!(spawned_weak.upgrade().is_none());
}

async fn async_io_sleep() {
    futures::future::pending::<()>().await;
}

/// Wakes its waker at once and waits one poll, as `yield_now` does.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[test]
fn a_future_woken_by_something_else_than_a_deferred_runs_on_the_reactor() {
    let reactor = Reactor::new().unwrap();
    let yielded = Deferred::from_future(async {
        YieldOnce(false).await;
        YieldOnce(false).await;
        Ok("after two yields")
    });
    let inner = Deferred::from_future(async {
        let n = twill::defer::defer_to_thread(|| Ok(20)).await?;
        YieldOnce(false).await;
        Ok(n + 1)
    });
    let outer = Deferred::from_future(async move {
        let text = yielded.await?;
        Ok((text, inner.await? * 2))
    });
    outer.add_both(|result| {
        twill::stop();
        result
    });
    twill::call_later(Duration::from_secs(10), twill::stop);
    reactor.run().unwrap();
    assert_eq!(success_result_of(&outer), ("after two yields", 42));
}

#[test]
fn cancelling_a_future_that_reads_a_queue_stream_ends_the_stream() {
    let queue: DeferredQueue<i32> = DeferredQueue::new();
    let mut stream = queue.clone();
    let d = Deferred::from_future(async move { Ok(stream.next().await.unwrap_or(-1)) });
    d.cancel();
    assert_eq!(success_result_of(&d), -1, "the future saw the stream end");
    assert_eq!(queue.waiting(), 0);
}

#[test]
fn a_value_that_reached_a_dropped_stream_goes_back_to_the_queue() {
    use futures::FutureExt;
    let queue = DeferredQueue::new();
    let mut stream = queue.clone();
    assert!(stream.next().now_or_never().is_none(), "it waits");
    queue.put(1).unwrap();
    queue.put(2).unwrap();
    drop(stream);
    assert_eq!(
        success_result_of(&queue.get().unwrap()),
        1,
        "first in line again"
    );
    assert_eq!(success_result_of(&queue.get().unwrap()), 2);
}
