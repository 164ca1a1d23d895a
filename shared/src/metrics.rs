//! Prometheus metrics with one naming scheme for every role (`brski_*`, label `role`):
//! requests by route and status, refusals by reason, issuance counts and latency histograms,
//! and pending approvals. Each server owns a [`Metrics`] and serves [`Metrics::render`] on
//! `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `brski_requests_total` and `brski_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The serving role (`masa`, `registrar`, `est`, `proxy`, `gateway`).
    pub role: String,
    /// The route template (`/agent/v1/credentials`), never the raw path.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// HTTP status.
    pub status: u16,
}

/// Labels of `brski_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The role.
    pub role: String,
    /// The stable reason code.
    pub reason: String,
}

/// Labels of the issuance metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssueLabels {
    /// The role.
    pub role: String,
    /// What was issued (`voucher`, `ldevid`, `certificate`, `agent-credential`).
    pub kind: String,
}

/// Labels of gauges per role.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// The role.
    pub role: String,
}

/// One server's metrics.
pub struct Metrics {
    role: String,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
    refusals: Family<RefusalLabels, Counter>,
    issued: Family<IssueLabels, Counter>,
    issue_seconds: Family<IssueLabels, Histogram>,
    pending: Family<RoleLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("role", &self.role).finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// Metrics of a server in `role`.
    pub fn new(role: &str) -> Self {
        let mut registry = Registry::with_prefix("brski");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<RequestLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let refusals = Family::<RefusalLabels, Counter>::default();
        let issued = Family::<IssueLabels, Counter>::default();
        let issue_seconds =
            Family::<IssueLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let pending = Family::<RoleLabels, Gauge>::default();
        registry.register("requests", "HTTP requests answered", requests.clone());
        registry.register("request_duration_seconds", "Time to answer an HTTP request", durations.clone());
        registry.register("refusals", "Requests refused, by reason", refusals.clone());
        registry.register("issued", "Credentials and vouchers issued", issued.clone());
        registry.register("issuance_duration_seconds", "Time to issue, by kind", issue_seconds.clone());
        registry.register("pending_approvals", "Requests waiting for a person or an owner", pending.clone());
        Metrics {
            role: role.to_string(),
            registry,
            requests,
            durations,
            refusals,
            issued,
            issue_seconds,
            pending,
        }
    }

    /// Counts an answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let l = RequestLabels {
            role: self.role.clone(),
            route: route.to_string(),
            method: method.to_string(),
            status,
        };
        self.requests.get_or_create(&l).inc();
        self.durations.get_or_create(&l).observe(seconds);
    }

    /// Counts a refusal with its reason code.
    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&RefusalLabels { role: self.role.clone(), reason: reason.to_string() })
            .inc();
    }

    /// Counts an issuance of `kind` that took `seconds`.
    pub fn issued(&self, kind: &str, seconds: f64) {
        let l = IssueLabels { role: self.role.clone(), kind: kind.to_string() };
        self.issued.get_or_create(&l).inc();
        self.issue_seconds.get_or_create(&l).observe(seconds);
    }

    /// Sets the number of pending approvals.
    pub fn set_pending(&self, n: i64) {
        self.pending.get_or_create(&RoleLabels { role: self.role.clone() }).set(n);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Content-Type of [`Metrics::render`].
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_brski_names_with_the_role() {
        let m = Metrics::new("registrar");
        m.request("/agent/v1/credentials", "POST", 200, 0.002);
        m.refusal("nonce");
        m.issued("agent-credential", 0.001);
        m.set_pending(3);
        let text = m.render();
        for want in [
            "brski_requests_total{role=\"registrar\",route=\"/agent/v1/credentials\",method=\"POST\",status=\"200\"} 1",
            "brski_refusals_total{role=\"registrar\",reason=\"nonce\"} 1",
            "brski_issued_total{role=\"registrar\",kind=\"agent-credential\"} 1",
            "brski_pending_approvals{role=\"registrar\"} 3",
            "brski_issuance_duration_seconds_bucket",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
