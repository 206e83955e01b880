//! `report A.json [B.json …] --html out.html`: one self-contained HTML page (inline CSS and SVG,
//! no scripts) with, per report, its summary tables and charts of throughput and latency
//! percentiles over time (from the `timeseries` of the scenario section).

use std::fmt::Write as _;

use anyhow::Context as _;
use serde_json::Value;

use crate::cli::ReportArgs;
use crate::merge::read;

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.reports {
        reports.push((path.display().to_string(), read(path)?));
    }
    let html = render(&reports);
    std::fs::write(&args.html, html).with_context(|| format!("writing {}", args.html.display()))?;
    println!("wrote {}", args.html.display());
    Ok(())
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        }),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_summary(v: &Value) -> bool {
    v.get("p50_us").is_some()
}

pub fn render(reports: &[(String, Value)]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>starling-loadtest report</title><style>\
body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}\
svg{background:#fafafa;border:1px solid #ddd;margin:.5em 1em .5em 0}.legend span{margin-right:1em}</style></head><body>\n<h1>starling-loadtest report</h1>\n",
    );
    for (name, report) in reports {
        let scenario = report["run"]["scenario"].as_str().unwrap_or("?");
        let _ = writeln!(out, "<h2>{} — {}</h2>", esc(name), esc(scenario));
        let _ = writeln!(
            out,
            "<p>server {} · {} {} · started {} (unix)</p>",
            esc(&scalar(&report["run"]["server"]).unwrap_or_default()),
            esc(&scalar(&report["run"]["tool"]).unwrap_or_default()),
            esc(&scalar(&report["run"]["version"]).unwrap_or_default()),
            esc(&scalar(&report["run"]["started_unix_seconds"]).unwrap_or_default())
        );
        let Value::Object(sections) = report else { continue };
        for (section, body) in sections {
            if matches!(section.as_str(), "run" | "options" | "usage" | "merged_from") {
                continue;
            }
            let Value::Object(fields) = body else { continue };
            let _ = writeln!(out, "<h3>{}</h3>\n<table><tr><th>field</th><th>value</th></tr>", esc(section));
            for (key, value) in fields {
                if let Some(text) = scalar(value) {
                    let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(key), esc(&text));
                }
            }
            out.push_str("</table>\n");
            let summaries: Vec<(&String, &Value)> = fields.iter().filter(|(_, v)| is_summary(v)).collect();
            if !summaries.is_empty() {
                out.push_str("<table><tr><th>latency (ms)</th><th>n</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
                for (key, s) in summaries {
                    let ms = |k: &str| format!("{:.2}", s[k].as_f64().unwrap_or(0.0) / 1000.0);
                    let _ = writeln!(
                        out,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(key),
                        s["count"],
                        ms("p50_us"),
                        ms("p90_us"),
                        ms("p99_us"),
                        ms("p999_us"),
                        ms("max_us")
                    );
                }
                out.push_str("</table>\n");
            }
            if let Some(Value::Array(points)) = fields.get("timeseries") {
                let xs: Vec<f64> = points.iter().map(|p| p["second"].as_f64().unwrap_or(0.0)).collect();
                let count: Vec<f64> = points.iter().map(|p| p["count"].as_f64().unwrap_or(0.0)).collect();
                let pct = |k: &str| points.iter().map(|p| p["latency"][k].as_f64().unwrap_or(0.0) / 1000.0).collect::<Vec<f64>>();
                out.push_str(&chart("throughput (events/s)", &xs, &[("per second", "#1f77b4", count)]));
                out.push_str(&chart(
                    "latency (ms)",
                    &xs,
                    &[("p50", "#2ca02c", pct("p50_us")), ("p90", "#ff7f0e", pct("p90_us")), ("p99", "#d62728", pct("p99_us")), ("max", "#7f7f7f", pct("max_us"))],
                ));
            }
        }
        if let Some(Value::Array(sources)) = sections.get("merged_from") {
            out.push_str("<h3>merged from</h3><table><tr><th>file</th><th>first_user</th><th>users</th></tr>\n");
            for s in sources {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&scalar(&s["file"]).unwrap_or_default()),
                    s["first_user"],
                    s["users"]
                );
            }
            out.push_str("</table>\n");
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// An axis label with as many decimals as the axis's range needs.
fn tick(v: f64, max: f64) -> String {
    if max >= 20.0 { format!("{v:.0}") } else if max >= 2.0 { format!("{v:.1}") } else { format!("{v:.2}") }
}

/// A line chart as inline SVG: x in seconds, one polyline per series.
fn chart(title: &str, xs: &[f64], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, left, bottom, top, right) = (640.0, 260.0, 60.0, 30.0, 24.0, 16.0);
    let x_max = xs.iter().copied().fold(1.0f64, f64::max);
    let y_max = series.iter().flat_map(|s| s.2.iter().copied()).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let px = |x: f64| left + x / x_max * (w - left - right);
    let py = |y: f64| h - bottom - y / y_max * (h - bottom - top);
    let mut svg = format!("<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>");
    let _ = write!(svg, "<text x='{left}' y='16' font-size='13'>{}</text>", esc(title));
    let _ = write!(svg, "<line x1='{left}' y1='{}' x2='{}' y2='{}' stroke='#888'/>", h - bottom, w - right, h - bottom);
    let _ = write!(svg, "<line x1='{left}' y1='{top}' x2='{left}' y2='{}' stroke='#888'/>", h - bottom);
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(svg, "<text x='{}' y='{:.1}' font-size='10' text-anchor='end'>{}</text>", left - 4.0, py(y) + 3.0, tick(y, y_max));
        let x = x_max * f64::from(i) / 4.0;
        let _ = write!(svg, "<text x='{:.1}' y='{}' font-size='10' text-anchor='middle'>{}s</text>", px(x), h - bottom + 14.0, tick(x, x_max));
    }
    for (n, (label, colour, ys)) in series.iter().enumerate() {
        let points: Vec<String> = xs.iter().zip(ys).map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(svg, "<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{}'/>", points.join(" "));
        let _ = write!(svg, "<text x='{:.1}' y='16' font-size='11' fill='{colour}'>{}</text>", w - right - 60.0 * (series.len() - n) as f64, esc(label));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_self_contained_page() {
        let report = serde_json::json!({
            "run": {"scenario": "presence", "server": "127.0.0.1:5222", "tool": "t", "version": "1", "started_unix_seconds": 1},
            "presence": {"deliveries": 10, "note": "<b>",
                "latency": {"count": 10, "p50_us": 1000, "p90_us": 2000, "p99_us": 3000, "p999_us": 3000, "max_us": 3000},
                "timeseries": [{"second": 0, "count": 4, "latency": {"p50_us": 900, "p90_us": 1000, "p99_us": 1100, "max_us": 1200}},
                               {"second": 1, "count": 6, "latency": {"p50_us": 1000, "p90_us": 1000, "p99_us": 1500, "max_us": 1600}}]},
        });
        let html = render(&[("a.json".into(), report)]);
        assert!(html.contains("<svg"));
        assert!(html.contains("polyline"));
        assert!(html.contains("&lt;b&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://") || html.matches("http://").all(|_| html.contains("xmlns='http://www.w3.org/2000/svg'")));
    }
}
