//! What each request did, and the figures made of it.

use std::collections::BTreeMap;

use serde::Serialize;

/// One request: when it started and ended (µs since the run's start) and
/// its gRPC code name.
#[derive(Debug, Clone, Copy)]
pub struct Rec {
    pub start_us: u64,
    pub end_us: u64,
    pub code: &'static str,
}

impl Rec {
    pub fn ok(&self) -> bool {
        self.code == "OK"
    }

    pub fn latency_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// Counts by code name, and latency percentiles.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub requests: u64,
    pub codes: BTreeMap<String, u64>,
    /// OK ÷ requests, in percent (100 when there were none).
    pub success_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Tally {
    pub fn of<'a>(recs: impl IntoIterator<Item = &'a Rec>) -> Tally {
        let mut codes = BTreeMap::new();
        let mut lat = Vec::new();
        for r in recs {
            *codes.entry(r.code.to_string()).or_insert(0) += 1;
            lat.push(r.latency_us());
        }
        lat.sort_unstable();
        let requests = lat.len() as u64;
        let ok = codes.get("OK").copied().unwrap_or(0);
        Tally {
            requests,
            success_pct: if requests == 0 {
                100.0
            } else {
                100.0 * ok as f64 / requests as f64
            },
            p50_ms: percentile_ms(&lat, 50.0),
            p99_ms: percentile_ms(&lat, 99.0),
            max_ms: lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
            codes,
        }
    }

    pub fn count(&self, code: &str) -> u64 {
        self.codes.get(code).copied().unwrap_or(0)
    }

    /// Answers other than OK and the codes in `allowed`.
    pub fn others(&self, allowed: &[&str]) -> u64 {
        self.codes
            .iter()
            .filter(|(c, _)| c.as_str() != "OK" && !allowed.contains(&c.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// "OK 1234, UNAVAILABLE 56"
    pub fn codes_line(&self) -> String {
        if self.codes.is_empty() {
            return "none".into();
        }
        self.codes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Prints one line per phase: requests, the success rate when asked for,
/// p50, p99, max and the codes seen.
pub fn print_phases(phases: [(&str, &Tally); 4], with_success: bool) {
    for (name, t) in phases {
        let success = if with_success {
            format!(", success {:>8.3} %", t.success_pct)
        } else {
            String::new()
        };
        println!(
            "  {name:<7} {:>6} requests{success}, p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms: {}",
            t.requests,
            t.p50_ms,
            t.p99_ms,
            t.max_ms,
            t.codes_line()
        );
    }
}

/// The nearest-rank percentile of sorted µs values, in ms.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
