//! Per-address connection limits (`[c2s] max_connections_per_address`,
//! `connection_rate_per_address`, `connection_burst_per_address`): how many connections one IP
//! address may hold open, and open a second. A connection over either limit gets a stream and,
//! right after our header, a `policy-violation` stream error saying which (RFC 6120 §4.9.3.14),
//! so a client knows why rather than seeing a reset. Off by default: one address is often many
//! people (a mobile carrier's NAT holds thousands behind one) and a load harness, and a default
//! tight enough to matter would lock them out; the per-connection read shaper and the per-user
//! message rate are on by default instead. Addresses holding nothing are forgotten once the table
//! is large.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub(crate) struct Admission {
    max_open: u32,
    /// New connections a second, and at once.
    rate: f64,
    burst: f64,
    table: Mutex<HashMap<IpAddr, Address>>,
}

struct Address {
    open: u32,
    tokens: f64,
    at: Instant,
}

/// Addresses kept before idle ones are swept, bounding the table under many addresses.
const SWEEP_AT: usize = 100_000;

impl Admission {
    pub(crate) fn new(max_open: u32, rate: u32, burst: u32) -> Admission {
        Admission { max_open, rate: f64::from(rate), burst: f64::from(burst.max(1)), table: Mutex::new(HashMap::new()) }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Address>> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a new connection from `address`, or says why it may not have one. An admitted
    /// connection is [`release`](Self::release)d when it ends.
    pub(crate) fn admit(&self, address: IpAddr) -> Result<(), &'static str> {
        if self.max_open == 0 && self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.table();
        if table.len() > SWEEP_AT {
            let (rate, burst) = (self.rate, self.burst);
            table.retain(|_, entry| entry.open > 0 || entry.tokens + now.saturating_duration_since(entry.at).as_secs_f64() * rate < burst);
        }
        let entry = table.entry(address).or_insert(Address { open: 0, tokens: self.burst, at: now });
        if self.max_open > 0 && entry.open >= self.max_open {
            return Err("too many connections from your address");
        }
        if self.rate > 0.0 {
            entry.tokens = (entry.tokens + now.saturating_duration_since(entry.at).as_secs_f64() * self.rate).min(self.burst);
            entry.at = now;
            if entry.tokens < 1.0 {
                return Err("too many new connections from your address: try again later");
            }
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        Ok(())
    }

    pub(crate) fn release(&self, address: IpAddr) {
        if let Some(entry) = self.table().get_mut(&address) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_connections_and_opens_at_most_its_rate() {
        let ip: IpAddr = [192, 0, 2, 1].into();
        let open = Admission::new(2, 0, 0);
        assert!(open.admit(ip).is_ok() && open.admit(ip).is_ok());
        assert!(open.admit(ip).is_err(), "a third at once");
        assert!(open.admit([192, 0, 2, 2].into()).is_ok(), "another address is not affected");
        open.release(ip);
        assert!(open.admit(ip).is_ok(), "one ended: room for one more");

        let rate = Admission::new(0, 1, 3);
        assert_eq!((0..5).filter(|_| rate.admit(ip).is_ok()).count(), 3, "the burst, then the rate");
        assert!(Admission::new(0, 0, 0).admit(ip).is_ok(), "off");
    }
}
