//! Daily archive allowances (`[archive] max_sent_per_day` … `max_received_bytes_per_day`): no
//! single user fills the disk. Every archivable message a user sends is charged to the sender
//! (it stands for the sender's copy and the recipient's), and every one archived for a user is
//! charged to that user's received allowance. An allowance is a token bucket that refills over a
//! day, so a user who spent it gets a message's worth back every `86400 / max` seconds.
//!
//! The counts live in the user's actor, which stays in memory until they are half refilled (a
//! user cannot reset them by going away for a minute); a takeover by another node after a crash
//! starts them afresh, which bounds a day's writes by a small multiple, not by nothing.

use std::time::Instant;

use crate::allowance::Allowance;
use crate::state::UserState;

const DAY_SECONDS: f64 = 86_400.0;

#[derive(Clone, Copy)]
pub(super) enum Direction {
    Sent,
    Received,
}

/// One direction's allowances.
struct Daily {
    messages: Allowance,
    bytes: Allowance,
}

#[derive(Default)]
struct Quotas {
    sent: Option<Daily>,
    received: Option<Daily>,
}

/// Takes a message of `bytes` from the user's allowance in `direction`: `false`, and nothing
/// taken, when either the count or the bytes are spent.
pub(super) fn charge(state: &mut UserState, direction: Direction, bytes: usize, now: Instant) -> bool {
    let archive = &state.services().config.archive;
    let (messages, max_bytes) = match direction {
        Direction::Sent => (archive.max_sent_per_day, archive.max_sent_bytes_per_day),
        Direction::Received => (archive.max_received_per_day, archive.max_received_bytes_per_day),
    };
    // A limit of 0 refills at rate 0, which the allowance reads as no limit.
    let (messages, max_bytes) = (messages as f64, max_bytes as f64);
    let (message_rate, byte_rate) = (messages / DAY_SECONDS, max_bytes / DAY_SECONDS);
    let quotas = state.ext.get_or_insert_with(Quotas::default);
    let slot = match direction {
        Direction::Sent => &mut quotas.sent,
        Direction::Received => &mut quotas.received,
    };
    let daily = slot.get_or_insert_with(|| Daily { messages: Allowance::full(messages), bytes: Allowance::full(max_bytes) });
    let bytes = bytes as f64;
    if !(daily.messages.has(1.0, message_rate, messages, now) && daily.bytes.has(bytes, byte_rate, max_bytes, now)) {
        let refusals = &state.services().metrics.quota_refusals;
        match direction {
            Direction::Sent => refusals.sent_per_day.inc(),
            Direction::Received => refusals.received_per_day.inc(),
        }
        return false;
    }
    daily.messages.take_amount(1.0, message_rate, messages, now);
    daily.bytes.take_amount(bytes, byte_rate, max_bytes, now);
    let half_refilled = daily.messages.back_to(messages / 2.0, message_rate).max(daily.bytes.back_to(max_bytes / 2.0, byte_rate));
    state.keep_until(half_refilled);
    true
}
