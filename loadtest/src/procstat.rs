//! Process measurements: the server's RSS and CPU time from /proc (so any server on this machine
//! can be measured without cooperation), the harness's own usage from getrusage (so a run that
//! the harness, not the server, bounded is visible), and the fd limit.

use std::io;
use std::time::Duration;

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessSample {
    pub rss_bytes: Option<u64>,
    /// User + system CPU time.
    #[serde(serialize_with = "as_seconds")]
    pub cpu: Option<Duration>,
}

fn as_seconds<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Reads `/proc/PID/status` and `/proc/PID/stat`. Missing values (process gone, no permission)
/// are `None`: a measurement gap must not abort the run.
pub fn sample(pid: u32) -> ProcessSample {
    let rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| parse_vm_rss(&s));
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parse_stat_cpu(&s, clock_ticks()));
    ProcessSample { rss_bytes, cpu }
}

/// `VmRSS:   123456 kB` → bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts at field 3 (state); utime is field 14.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    if ticks_per_second == 0 {
        return None;
    }
    let ticks = utime + stime;
    Some(Duration::from_secs(ticks / ticks_per_second) + Duration::from_nanos((ticks % ticks_per_second) * 1_000_000_000 / ticks_per_second))
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().and_then(|t| u64::try_from(t).ok()).unwrap_or(100)
}

/// The harness's own resource usage.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SelfUsage {
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub max_rss_bytes: u64,
}

impl SelfUsage {
    pub fn now() -> SelfUsage {
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(usage) => {
                let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
                SelfUsage {
                    user_seconds: seconds(usage.user_time()),
                    system_seconds: seconds(usage.system_time()),
                    // Linux reports ru_maxrss in KiB.
                    max_rss_bytes: u64::try_from(usage.max_rss()).unwrap_or(0) * 1024,
                }
            }
            Err(_) => SelfUsage::default(),
        }
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.system_seconds
    }
}

/// Raises the soft fd limit to the hard limit: every session is a socket. Returns the new soft
/// limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tstarling\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn reads_cpu_after_odd_command_names() {
        let stat = "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 1000000 300";
        assert_eq!(parse_stat_cpu(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat_cpu("garbage", 100), None);
    }

    #[test]
    fn own_usage_is_readable() {
        let usage = SelfUsage::now();
        assert!(usage.max_rss_bytes > 0);
    }
}
