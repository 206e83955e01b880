//! `--source-addresses`: the local addresses connections are spread over. One source address
//! offers only the ephemeral port range (~28k ports on Linux) toward one server address, so tens
//! of thousands of sessions need several (127.0.0.0/8 is all loopback on Linux).

use std::net::{IpAddr, Ipv4Addr};

use crate::cli::SourceAddresses;

/// Largest list accepted, so a typo like `127.0.0.1-127.255.0.0` fails instead of allocating.
const MAX_ADDRESSES: u32 = 65_536;

/// Parses `A-B` IPv4 ranges, single addresses and comma-separated mixes of both.
pub fn parse_source_addresses(text: &str) -> Result<SourceAddresses, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => {
                let from: Ipv4Addr = from.trim().parse().map_err(|_| format!("{from:?} is not an IPv4 address"))?;
                let to: Ipv4Addr = to.trim().parse().map_err(|_| format!("{to:?} is not an IPv4 address"))?;
                let (from, to) = (u32::from(from), u32::from(to));
                if to < from {
                    return Err(format!("range {part:?} ends before it starts"));
                }
                if to - from >= MAX_ADDRESSES || out.len() as u64 + u64::from(to - from) >= u64::from(MAX_ADDRESSES) {
                    return Err(format!("more than {MAX_ADDRESSES} source addresses"));
                }
                out.extend((from..=to).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => out.push(part.parse::<IpAddr>().map_err(|_| format!("{part:?} is not an IP address"))?),
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(SourceAddresses(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists() {
        let parsed = parse_source_addresses("127.0.0.2-127.0.0.4, 127.0.1.1").expect("valid");
        let expected: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1"]
            .iter()
            .map(|a| a.parse().expect("literal"))
            .collect();
        assert_eq!(parsed.0, expected);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_source_addresses("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_source_addresses("localhost").is_err());
        assert!(parse_source_addresses("").is_err());
        assert!(parse_source_addresses("127.0.0.0-127.255.255.255").is_err());
    }
}
