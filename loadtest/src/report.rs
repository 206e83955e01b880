//! Parts of the report every scenario shares, and writing the JSON document.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use crate::procstat::{ProcessSample, SelfUsage, sample};

/// What ran, against what, when.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: &'static str,
    pub server: String,
    pub started_unix_seconds: u64,
}

impl RunInfo {
    pub fn new(scenario: &'static str, server: String) -> RunInfo {
        RunInfo {
            tool: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            scenario,
            server,
            started_unix_seconds: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        }
    }
}

/// Start and end readings of the harness and, with --server-pid, of the server, over one window
/// of the run.
pub struct Window {
    started: Instant,
    harness: SelfUsage,
    pid: Option<u32>,
    server: Option<ProcessSample>,
}

impl Window {
    pub fn start(pid: Option<u32>) -> Window {
        Window { started: Instant::now(), harness: SelfUsage::now(), pid, server: pid.map(sample) }
    }

    pub fn finish(&self) -> Usage {
        let wall = self.started.elapsed();
        let end = SelfUsage::now();
        let harness_cpu = (end.cpu_seconds() - self.harness.cpu_seconds()).max(0.0);
        let harness = HarnessUsage {
            wall_seconds: wall.as_secs_f64(),
            user_seconds: (end.user_seconds - self.harness.user_seconds).max(0.0),
            system_seconds: (end.system_seconds - self.harness.system_seconds).max(0.0),
            cpu_seconds: harness_cpu,
            cores_used: share(harness_cpu, wall),
            max_rss_bytes: end.max_rss_bytes,
        };
        let server = match (self.pid, self.server) {
            (Some(pid), Some(start)) => {
                let end = sample(pid);
                let cpu_seconds = match (start.cpu, end.cpu) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
                    _ => None,
                };
                Some(ServerUsage {
                    pid,
                    rss_start_bytes: start.rss_bytes,
                    rss_end_bytes: end.rss_bytes,
                    rss_delta_bytes: delta(start.rss_bytes, end.rss_bytes),
                    cpu_seconds,
                    cores_used: cpu_seconds.map(|c| share(c, wall)),
                })
            }
            _ => None,
        };
        Usage { harness, server }
    }
}

fn share(cpu_seconds: f64, wall: Duration) -> f64 {
    let wall = wall.as_secs_f64();
    if wall > 0.0 { (cpu_seconds / wall * 1000.0).round() / 1000.0 } else { 0.0 }
}

pub fn delta(start: Option<u64>, end: Option<u64>) -> Option<i64> {
    Some(i64::try_from(end?).ok()? - i64::try_from(start?).ok()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub harness: HarnessUsage,
    pub server: Option<ServerUsage>,
}

/// The harness's own cost: when `cores_used` nears the machine's core count, the harness and not
/// the server limited the run.
#[derive(Debug, Clone, Serialize)]
pub struct HarnessUsage {
    pub wall_seconds: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub cpu_seconds: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cores_used: f64,
    pub max_rss_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    pub rss_start_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_delta_bytes: Option<i64>,
    pub cpu_seconds: Option<f64>,
    pub cores_used: Option<f64>,
}

impl Usage {
    pub fn print(&self, what: &str) {
        let h = &self.harness;
        println!(
            "  harness during {what}: {:.2}s CPU ({:.2}s user, {:.2}s sys) over {:.2}s = {:.2} cores; peak RSS {}",
            h.cpu_seconds,
            h.user_seconds,
            h.system_seconds,
            h.wall_seconds,
            h.cores_used,
            mib(h.max_rss_bytes)
        );
        if let Some(s) = &self.server {
            let cpu = s.cpu_seconds.map(|c| format!("{c:.2}s CPU = {:.2} cores", s.cores_used.unwrap_or(0.0))).unwrap_or_else(|| "CPU n/a".into());
            let rss = match (s.rss_start_bytes, s.rss_end_bytes) {
                (Some(a), Some(b)) => format!("RSS {} -> {}", mib(a), mib(b)),
                _ => "RSS n/a".into(),
            };
            println!("  server (pid {}) during {what}: {cpu}; {rss}", s.pid);
        }
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Writes `report` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, report: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report).context("serialising the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_and_shares() {
        assert_eq!(delta(Some(10), Some(4)), Some(-6));
        assert_eq!(delta(None, Some(4)), None);
        assert_eq!(share(1.0, Duration::from_secs(2)), 0.5);
        assert_eq!(share(1.0, Duration::ZERO), 0.0);
    }

    #[test]
    fn window_measures_own_cpu() {
        let window = Window::start(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let usage = window.finish();
        assert!(usage.harness.wall_seconds > 0.0);
        let server = usage.server.as_ref().expect("own pid is readable");
        assert!(server.rss_end_bytes.is_some_and(|b| b > 0));
        let json = serde_json::to_value(&usage).expect("serialises");
        assert!(json["harness"]["cores_used"].is_number());
        assert!(json["server"]["rss_delta_bytes"].is_number());
    }
}
