//! `BroadcastGroup`: who gets a message, and what happens to a member that
//! falls behind, against in-memory transports and a hand-advanced clock.
//! The same over real sockets is in `backpressure.rs`.

use std::rc::Rc;
use std::time::Duration;

use twill::broadcast::{BroadcastGroup, SlowClient, DEFAULT_GRACE, DEFAULT_MAX_BUFFER};
use twill::task::Clock;
use twill::testing::StringTransport;

const HIGH: usize = twill::transport::DEFAULT_HIGH_WATERMARK;
const LOW: usize = twill::transport::DEFAULT_LOW_WATERMARK;
/// How long a member behind is watched before its progress is judged while
/// senders wait: a twentieth of the grace time.
const PROBE: Duration = Duration::from_millis(100);

fn group(policy: SlowClient, clock: &Clock) -> BroadcastGroup {
    BroadcastGroup::new(policy).clock(Rc::new(clock.clone()))
}

fn members(group: &BroadcastGroup, n: usize) -> Vec<StringTransport> {
    (0..n)
        .map(|_| {
            let member = StringTransport::new();
            assert!(group.add(&member.transport()));
            member
        })
        .collect()
}

#[test]
fn a_message_goes_to_every_member_but_the_sender() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 3);
    assert_eq!(group.broadcast_except(&m[0].transport(), "hi"), 2);
    assert_eq!(m[0].value(), b"");
    assert_eq!(m[1].value(), b"hi");
    assert_eq!(m[2].value(), b"hi");
    assert_eq!(group.broadcast("all"), 3);
    assert_eq!(m[0].value(), b"all");
}

#[test]
fn a_sender_outside_the_group_reaches_every_member() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    let outsider = StringTransport::new();
    assert_eq!(group.broadcast_except(&outsider.transport(), "x"), 2);
    assert_eq!(m[1].value(), b"x");
}

#[test]
fn membership_is_by_connection() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    assert!(!group.add(&m[0].transport()), "a second add is refused");
    assert_eq!(group.len(), 2);
    assert!(group.contains(&m[1].transport()));
    assert!(group.remove(&m[1].transport()));
    assert!(!group.remove(&m[1].transport()));
    assert!(!group.contains(&m[1].transport()));
    assert_eq!(group.broadcast("x"), 1);
    assert_eq!(m[1].value(), b"");
}

#[test]
fn a_member_that_is_closing_is_skipped_and_taken_out() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    m[0].transport().lose_connection();
    assert_eq!(group.broadcast("x"), 1);
    assert_eq!(m[0].value(), b"");
    assert_eq!(group.len(), 1);
}

#[test]
fn an_unwritable_member_gets_every_message_within_the_grace_time() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    m[1].set_write_buffer_size(HIGH + 1);
    assert_eq!(group.broadcast("a"), 2);
    clock.advance(DEFAULT_GRACE - Duration::from_millis(1));
    assert_eq!(group.broadcast("b"), 2);
    assert_eq!(m[1].value(), b"ab");
    assert_eq!(group.dropped(&m[1].transport()), Some(0));
    assert!(!group.is_lagging(&m[1].transport()));
}

#[test]
fn drop_messages_skips_a_member_behind_for_the_grace_time_whenever_it_is_behind() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    let slow = m[1].transport();
    m[1].set_write_buffer_size(HIGH + 1);
    group.broadcast("a");
    clock.advance(DEFAULT_GRACE);
    assert_eq!(group.broadcast("b"), 1, "only the attentive member");
    assert_eq!(group.broadcast("c"), 1);
    assert!(group.is_lagging(&slow));
    assert_eq!(group.dropped(&slow), Some(2));
    assert_eq!(group.total_dropped(), 2);
    assert_eq!(m[0].value(), b"abc");
    assert_eq!(m[1].value(), b"a");
    assert!(!m[1].disconnecting(), "dropping never closes");

    // Drained: it gets messages again, and the count of what it missed
    // stays.
    m[1].set_write_buffer_size(0);
    assert_eq!(group.broadcast("d"), 2);
    assert!(!group.is_lagging(&slow));
    assert_eq!(m[1].value(), b"ad");
    assert_eq!(group.dropped(&slow), Some(2));

    // Behind again: having fallen behind once, it gets no second grace
    // time, and nobody waits for it.
    m[1].set_write_buffer_size(HIGH + 1);
    assert!(group.is_writable());
    assert_eq!(group.broadcast("e"), 1);
    assert_eq!(group.dropped(&slow), Some(3));
    assert_eq!(m[1].value(), b"ad");
}

#[test]
fn a_member_behind_within_its_grace_time_makes_the_group_unwritable() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    assert!(group.is_writable());
    m[1].set_write_buffer_size(HIGH + 1);
    assert!(!group.is_writable());
    m[1].set_write_buffer_size(HIGH);
    assert!(!group.is_writable(), "still behind until the low watermark");
    m[1].set_write_buffer_size(LOW);
    assert!(group.is_writable());
}

#[test]
fn pause_while_behind_holds_a_sender_while_the_member_behind_catches_up() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 3);
    let sender = m[0].transport();
    group.broadcast_except(&sender, "a");
    group.pause_while_behind(&sender);
    assert!(!m[0].reading_paused(), "nobody is behind");

    m[2].set_write_buffer_size(200 << 10);
    group.broadcast_except(&sender, "b");
    group.pause_while_behind(&sender);
    assert!(m[0].reading_paused());
    // 50 KiB drained in a probe: on course to reach the low watermark
    // (134 KiB to go) well within the grace time.
    m[2].set_write_buffer_size(150 << 10);
    clock.advance(PROBE);
    assert!(m[0].reading_paused());
    m[2].set_write_buffer_size(100 << 10);
    clock.advance(PROBE);
    assert!(m[0].reading_paused());
    m[2].set_write_buffer_size(10);
    assert!(!m[0].reading_paused(), "resumed when the member drained");
    assert_eq!(m[2].value(), b"ab", "and it missed nothing");
    assert!(!group.is_lagging(&m[2].transport()));
    assert!(clock.delayed_calls().is_empty(), "no timer is left");
}

#[test]
fn broadcast_from_writes_and_holds_the_sender_in_one_call() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 3);
    let sender = m[0].transport();
    assert_eq!(group.broadcast_from(&sender, "a"), 2);
    assert!(!m[0].reading_paused());
    m[2].set_write_buffer_size(HIGH + 1);
    assert_eq!(group.broadcast_from(&sender, "b"), 2);
    assert!(m[0].reading_paused());
    assert_eq!((m[0].value(), m[1].value()), (b"".to_vec(), b"ab".to_vec()));
    m[2].set_write_buffer_size(LOW);
    assert!(!m[0].reading_paused());
}

#[test]
fn a_member_that_does_not_drain_holds_a_sender_for_one_probe() {
    let (clock, group, m) = sender_held_by_a_member_behind(SlowClient::DropMessages);
    let sender = m[0].transport();
    assert!(m[0].reading_paused());
    clock.advance(PROBE - Duration::from_millis(1));
    assert!(m[0].reading_paused());
    clock.advance(Duration::from_millis(1));
    assert!(!m[0].reading_paused(), "the silent member is given up on");
    assert!(group.is_lagging(&m[1].transport()));
    group.broadcast_except(&sender, "b");
    group.pause_while_behind(&sender);
    assert!(!m[0].reading_paused(), "a member given up on holds nobody");
}

#[test]
fn a_member_too_slow_to_catch_up_within_the_grace_time_is_given_up_on_at_a_probe() {
    let (clock, group, m) = sender_held_by_a_member_behind(SlowClient::DropMessages);
    // 8 KiB a probe: 48 KiB over the low watermark would take 6 probes.
    m[1].set_write_buffer_size(HIGH + 1 - (8 << 10));
    clock.advance(PROBE);
    assert!(m[0].reading_paused(), "on course so far");
    let mut left = HIGH + 1 - (8 << 10);
    let mut probes = 1;
    while m[0].reading_paused() {
        // From now on 1 KiB a probe: far too slow.
        left -= 1 << 10;
        m[1].set_write_buffer_size(left);
        clock.advance(PROBE);
        probes += 1;
        assert!(probes < 20, "held for the whole grace time");
    }
    assert_eq!(probes, 2);
    assert!(group.is_lagging(&m[1].transport()));
}

#[test]
fn a_member_on_course_that_does_not_make_it_is_given_up_on_at_the_grace_time() {
    let (clock, group, m) = sender_held_by_a_member_behind(SlowClient::DropMessages);
    const FULL: usize = 100 << 10;
    // Drains twice its excess over the low watermark every probe (so it
    // always looks on course), but is refilled as fast: it never gets
    // there.
    let drain_and_refill = || {
        for _ in 0..2 {
            m[1].set_write_buffer_size(LOW + 1);
            m[1].set_write_buffer_size(FULL);
        }
    };
    for probe in 1..20 {
        drain_and_refill();
        clock.advance(PROBE);
        assert!(m[0].reading_paused(), "released at probe {probe}");
    }
    drain_and_refill();
    clock.advance(PROBE);
    assert!(!m[0].reading_paused(), "held past the grace time");
    assert!(group.is_lagging(&m[1].transport()));
}

/// Two members: the first sends "a" and is held, because the second is
/// over its high watermark.
fn sender_held_by_a_member_behind(
    policy: SlowClient,
) -> (Clock, BroadcastGroup, Vec<StringTransport>) {
    let clock = Clock::new();
    let group = group(policy, &clock);
    let m = members(&group, 2);
    m[1].set_write_buffer_size(HIGH + 1);
    group.broadcast_except(&m[0].transport(), "a");
    group.pause_while_behind(&m[0].transport());
    (clock, group, m)
}

#[test]
fn a_silent_member_is_disconnected_without_a_broadcast_while_a_sender_waits() {
    let (clock, group, m) = sender_held_by_a_member_behind(SlowClient::Disconnect);
    clock.advance(DEFAULT_GRACE);
    assert!(m[1].aborted());
    assert_eq!(group.disconnected(), 1);
    assert!(!m[0].reading_paused());
}

#[test]
fn removing_the_member_behind_releases_the_senders() {
    let (_clock, group, m) = sender_held_by_a_member_behind(SlowClient::DropMessages);
    assert!(m[0].reading_paused());
    group.remove(&m[1].transport());
    assert!(!m[0].reading_paused());
}

#[test]
fn when_writable_runs_at_once_when_nobody_is_behind() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let _m = members(&group, 2);
    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = ran.clone();
    group.when_writable(move || flag.set(true));
    assert!(ran.get());
}

#[test]
fn a_message_past_the_maximum_applies_the_policy_at_once() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock).max_buffer(100);
    let m = members(&group, 2);
    m[1].set_write_buffer_size(96);
    assert_eq!(group.broadcast("four"), 2, "96 + 4 is not past 100");
    m[1].set_write_buffer_size(97);
    assert_eq!(group.broadcast("four"), 1);
    assert_eq!(group.dropped(&m[1].transport()), Some(1));
}

#[test]
fn the_default_maximum_lets_a_burst_through_and_stops_a_flood() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 1);
    m[0].set_write_buffer_size(DEFAULT_MAX_BUFFER - 1);
    assert_eq!(group.broadcast("x"), 1);
    m[0].set_write_buffer_size(DEFAULT_MAX_BUFFER);
    assert_eq!(group.broadcast("x"), 0);
}

#[test]
fn disconnect_aborts_a_member_behind_for_the_grace_time_and_takes_it_out() {
    let clock = Clock::new();
    let group = group(SlowClient::Disconnect, &clock);
    let m = members(&group, 2);
    m[1].set_write_buffer_size(HIGH + 1);
    assert_eq!(group.broadcast("a"), 2);
    clock.advance(DEFAULT_GRACE);
    assert_eq!(group.broadcast("b"), 1);
    assert!(m[1].aborted());
    let why = m[1].failure().unwrap();
    assert!(
        why.starts_with(&format!(
            "fell behind the broadcast: {} bytes unsent",
            HIGH + 1
        )),
        "{why}"
    );
    assert_eq!(group.len(), 1);
    assert_eq!(group.disconnected(), 1);
    assert_eq!(m[0].value(), b"ab");
    assert_eq!(m[1].value(), b"a");
}

#[test]
fn disconnect_past_the_maximum_does_not_wait_for_the_grace_time() {
    let clock = Clock::new();
    let group = group(SlowClient::Disconnect, &clock).max_buffer(1000);
    let m = members(&group, 1);
    m[0].set_write_buffer_size(999);
    assert_eq!(group.broadcast("xx"), 0);
    assert!(m[0].aborted());
}

#[test]
fn zero_grace_applies_the_policy_as_soon_as_a_member_is_unwritable() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock).grace(Duration::ZERO);
    let m = members(&group, 1);
    m[0].set_write_buffer_size(HIGH + 1);
    assert_eq!(group.broadcast("x"), 0);
}

#[test]
fn the_group_reports_what_its_members_hold() {
    let clock = Clock::new();
    let group = group(SlowClient::DropMessages, &clock);
    let m = members(&group, 2);
    m[0].set_write_buffer_size(10);
    m[1].set_write_buffer_size(32);
    assert_eq!(group.buffered(), 42);
    assert!(!group.is_empty());
}
