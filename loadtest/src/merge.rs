//! `merge`: combines the JSON reports of several harness processes that split the user space
//! (`--first-user`) into one report of the same shape.
//!
//! Rules, applied recursively to the scenario sections: integers (counts) are summed; a latency
//! summary (an object with `hdr`) is rebuilt from the merged histograms, so its percentiles are
//! exact; fields named `*per_second*` and `*_bytes` are summed; other floats (seconds) take the
//! maximum; arrays merge element by element (time series line up by second); strings and booleans
//! keep the first report's value (`true` wins for booleans). `run` and `options` come from the
//! first report; `merged_from` lists every input with its user range; `usage` becomes a list of
//! each process's usage.

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Map, Value};

use crate::cli::MergeArgs;
use crate::report::write_json;
use crate::stats::Latency;

pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.reports {
        reports.push((path.clone(), read(path)?));
    }
    let merged = merge_reports(reports.iter().map(|(p, v)| (p.display().to_string(), v.clone())).collect())?;
    write_json(&args.output, &merged)?;
    println!("merged {} reports into {}", reports.len(), args.output.display());
    Ok(())
}

pub fn read(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn merge_reports(reports: Vec<(String, Value)>) -> anyhow::Result<Value> {
    let mut iter = reports.into_iter();
    let (first_name, first) = iter.next().context("no reports")?;
    let scenario = first["run"]["scenario"].clone();
    let source = |name: &str, v: &Value| {
        serde_json::json!({
            "file": name,
            "first_user": v["options"]["first_user"],
            "users": v["options"]["users"],
            "started_unix_seconds": v["run"]["started_unix_seconds"],
        })
    };
    let mut sources = vec![source(&first_name, &first)];
    let mut usage = vec![first["usage"].clone()];
    let mut merged = first;
    for (name, report) in iter {
        if report["run"]["scenario"] != scenario {
            anyhow::bail!("{name} is a {} report, the first is {}", report["run"]["scenario"], scenario);
        }
        sources.push(source(&name, &report));
        usage.push(report["usage"].clone());
        let (Value::Object(into), Value::Object(from)) = (&mut merged, report) else { anyhow::bail!("{name}: not a JSON object") };
        for (key, value) in from {
            if matches!(key.as_str(), "run" | "options" | "usage") {
                continue;
            }
            match into.get_mut(&key) {
                Some(existing) => merge_value(&key, existing, value)?,
                None => {
                    into.insert(key, value);
                }
            }
        }
    }
    if let Value::Object(object) = &mut merged {
        object.insert("usage".into(), Value::Array(usage));
        object.insert("merged_from".into(), Value::Array(sources));
    }
    Ok(merged)
}

fn merge_value(key: &str, into: &mut Value, from: Value) -> anyhow::Result<()> {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) if a.contains_key("hdr") && b.contains_key("hdr") => merge_summary(a, &b),
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge_value(&k, existing, v)?,
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in b.into_iter().enumerate() {
                match a.get_mut(i) {
                    Some(existing) => merge_value(key, existing, v)?,
                    None => a.push(v),
                }
            }
            Ok(())
        }
        // A point of a time series: the second is a position, not a count.
        (a @ Value::Number(_), b @ Value::Number(_)) if key == "second" => {
            if a != &b {
                anyhow::bail!("time series points do not line up");
            }
            Ok(())
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            let sum_floats = key.contains("per_second") || key.ends_with("_bytes");
            let Value::Number(an) = &*a else { unreachable!() };
            *a = match (an.as_u64(), b.as_u64(), an.as_i64(), b.as_i64()) {
                (Some(x), Some(y), _, _) => Value::from(x.saturating_add(y)),
                (_, _, Some(x), Some(y)) => Value::from(x.saturating_add(y)),
                _ => {
                    let (x, y) = (an.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                    Value::from(if sum_floats { x + y } else { x.max(y) })
                }
            };
            Ok(())
        }
        (Value::Bool(a), Value::Bool(b)) => {
            *a |= b;
            Ok(())
        }
        (a @ Value::Null, b) => {
            *a = b;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn merge_summary(into: &mut Map<String, Value>, from: &Map<String, Value>) -> anyhow::Result<()> {
    let decode = |m: &Map<String, Value>| Latency::decode(m["hdr"].as_str().unwrap_or_default()).context("undecodable latency histogram");
    let mut a = decode(into)?;
    a.merge(&decode(from)?);
    let Value::Object(summary) = serde_json::to_value(a.summary())? else { anyhow::bail!("summary is not an object") };
    *into = summary;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(first_user: u64, values: &[u64], sent: u64) -> Value {
        let mut latency = Latency::new();
        for &v in values {
            latency.record_micros(v);
        }
        serde_json::json!({
            "run": {"scenario": "chat", "started_unix_seconds": 1},
            "options": {"first_user": first_user, "users": 10},
            "chat": {"sent": sent, "received": sent, "elapsed_seconds": first_user as f64,
                     "throughput_per_second": 10.0, "latency": latency.summary(),
                     "errors": {"x": {"count": 1, "example": "e"}}},
            "usage": {"harness": {}},
        })
    }

    #[test]
    fn merges_counts_and_histograms_exactly() {
        let a: Vec<u64> = (1..5000).map(|i| i * 37 % 100_000 + 1).collect();
        let b: Vec<u64> = (1..3000).map(|i| i * 91 % 2_000_000 + 1).collect();
        let merged = merge_reports(vec![("a".into(), report(1, &a, 5)), ("b".into(), report(11, &b, 7))]).expect("merges");
        let mut all = Latency::new();
        for &v in a.iter().chain(&b) {
            all.record_micros(v);
        }
        let want = serde_json::to_value(all.summary()).expect("json");
        assert_eq!(merged["chat"]["latency"], want);
        assert_eq!(merged["chat"]["sent"], 12);
        assert_eq!(merged["chat"]["received"], 12);
        assert_eq!(merged["chat"]["elapsed_seconds"], 11.0);
        assert_eq!(merged["chat"]["throughput_per_second"], 20.0);
        assert_eq!(merged["chat"]["errors"]["x"]["count"], 2);
        assert_eq!(merged["options"]["first_user"], 1);
        assert_eq!(merged["merged_from"][1]["first_user"], 11);
        assert_eq!(merged["usage"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn refuses_mixed_scenarios() {
        let mut b = report(11, &[1], 1);
        b["run"]["scenario"] = "connect".into();
        assert!(merge_reports(vec![("a".into(), report(1, &[1], 1)), ("b".into(), b)]).is_err());
    }
}
