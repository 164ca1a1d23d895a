//! Prometheus counters of the MASA (`GET /metrics`): vouchers issued and requests refused by
//! HTTP status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The MASA's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    issued: AtomicU64,
    refused: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    /// Counts an issued voucher.
    pub fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request by its status.
    pub fn refused(&self, status: u16) {
        if let Ok(mut m) = self.refused.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from("# HELP masa_vouchers_issued_total Vouchers issued.\n");
        out.push_str("# TYPE masa_vouchers_issued_total counter\n");
        out.push_str(&format!("masa_vouchers_issued_total {}\n", self.issued.load(Ordering::Relaxed)));
        out.push_str("# HELP masa_requests_refused_total Requests refused, by HTTP status.\n");
        out.push_str("# TYPE masa_requests_refused_total counter\n");
        if let Ok(m) = self.refused.lock() {
            for (status, n) in m.iter() {
                out.push_str(&format!("masa_requests_refused_total{{status=\"{status}\"}} {n}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.issued();
        m.refused(403);
        m.refused(403);
        let text = m.render();
        assert!(text.contains("masa_vouchers_issued_total 1"), "{text}");
        assert!(text.contains("masa_requests_refused_total{status=\"403\"} 2"), "{text}");
    }
}
