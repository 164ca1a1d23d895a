//! Finding a registrar by DNS-SD over mDNS (RFC 6762/6763) when none is configured
//! (RFC 8995 §4: the registrar announces `_brski-registrar._tcp`).
//!
//! [`discover`] browses `_brski-registrar._tcp.local.` with an `mdns-sd` querier for a bounded
//! time: it stops a short settling time after the first registrar resolves (so that several
//! registrars on the link are all seen), or at the timeout, whichever comes first. Each
//! resolved instance becomes a [`Candidate`] with its URLs, IPv4 first (IPv6 link-local
//! addresses are left out: a URL cannot carry their zone). Instances whose TXT record names
//! another `rt` are skipped. The order of candidates is deterministic (IPv4 reachable ones
//! first, then by instance name) and [`crate::bootstrap`] tries them in that order; why each was
//! taken or skipped is logged.
//!
//! Candidates are only *where* to connect: the registrar is not trusted because it was found
//! here. The voucher's pinned domain certificate decides that, as for a configured URL.

use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The DNS-SD service type of a BRSKI registrar, with the mDNS domain.
pub(crate) const SERVICE_TYPE: &str = "_brski-registrar._tcp.local.";

/// How long to keep listening after the first registrar resolved, for others on the link.
pub(crate) const SETTLE: Duration = Duration::from_millis(1500);

/// How long stopping the querier may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A registrar found on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The instance name, e.g. `brski-registrar-vm`.
    pub instance: String,
    /// The host of its SRV record, e.g. `vm-brski.local.`.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `https://addr:port` for each usable address, IPv4 first.
    pub urls: Vec<String>,
    /// Its TXT record.
    pub txt: BTreeMap<String, String>,
}

impl Candidate {
    /// Whether it can be reached over IPv4 (such candidates are tried first).
    pub(crate) fn has_ipv4(&self) -> bool {
        self.urls.first().is_some_and(|u| !u.starts_with("https://["))
    }
}

/// Discovery could not run (not "found none": that is an empty list).
#[derive(Debug, thiserror::Error)]
#[error("mDNS discovery of {SERVICE_TYPE}: {0}")]
pub(crate) struct DiscoveryError(String);

/// Browses for registrars for at most `timeout`; see the module documentation.
pub(crate) async fn discover(timeout: Duration) -> Result<Vec<Candidate>, DiscoveryError> {
    let daemon = ServiceDaemon::new().map_err(|e| DiscoveryError(format!("starting the querier: {e}")))?;
    let found = browse(&daemon, timeout).await;
    if let Ok(rx) = daemon.shutdown() {
        let _ = tokio::time::timeout(STOP_TIMEOUT, rx.recv_async()).await;
    }
    let found = found?;
    let mut candidates: Vec<Candidate> = found.into_values().filter_map(candidate).collect();
    candidates.sort_by(|a, b| (!a.has_ipv4(), &a.instance).cmp(&(!b.has_ipv4(), &b.instance)));
    Ok(candidates)
}

/// Collects resolved instances by full name until the deadline.
async fn browse(
    daemon: &ServiceDaemon,
    timeout: Duration,
) -> Result<BTreeMap<String, ResolvedService>, DiscoveryError> {
    let events = daemon.browse(SERVICE_TYPE).map_err(|e| DiscoveryError(format!("browsing: {e}")))?;
    let started = Instant::now();
    let mut deadline = started + timeout;
    let mut found = BTreeMap::new();
    tracing::info!(service = SERVICE_TYPE, ?timeout, "no registrar URL configured: browsing by mDNS");
    loop {
        let event = match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Err(_) => break,
            Ok(Err(e)) => return Err(DiscoveryError(format!("the querier stopped: {e}"))),
            Ok(Ok(event)) => event,
        };
        match event {
            ServiceEvent::ServiceResolved(s) => {
                tracing::info!(
                    instance = %s.fullname,
                    host = %s.host,
                    port = s.port,
                    addresses = ?s.addresses.iter().map(|a| a.to_ip_addr()).collect::<Vec<_>>(),
                    txt = ?txt_map(&s),
                    after = ?started.elapsed(),
                    "mDNS: registrar resolved"
                );
                if found.is_empty() {
                    deadline = deadline.min(Instant::now() + SETTLE);
                }
                found.insert(s.fullname.clone(), *s);
            }
            ServiceEvent::ServiceRemoved(_, name) => {
                tracing::info!(instance = %name, "mDNS: registrar withdrew its announcement");
                found.remove(&name);
            }
            other => tracing::debug!(event = ?other, "mDNS browse event"),
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    tracing::info!(registrars = found.len(), after = ?started.elapsed(), "mDNS browsing done");
    Ok(found)
}

fn txt_map(s: &ResolvedService) -> BTreeMap<String, String> {
    s.txt_properties.iter().map(|p| (p.key().to_string(), p.val_str().to_string())).collect()
}

/// A candidate from a resolved instance, or `None` (logged) when it cannot be used.
fn candidate(s: ResolvedService) -> Option<Candidate> {
    let txt = txt_map(&s);
    if let Some(rt) = txt.get("rt").filter(|rt| rt.as_str() != "brski") {
        tracing::info!(instance = %s.fullname, %rt, "mDNS: skipped, its TXT rt is not \"brski\"");
        return None;
    }
    let addresses: Vec<IpAddr> = s.addresses.iter().map(|a| a.to_ip_addr()).collect();
    let urls = urls(&addresses, s.port);
    let instance = s.fullname.strip_suffix(&format!(".{SERVICE_TYPE}")).unwrap_or(&s.fullname).to_string();
    if urls.is_empty() || s.port == 0 {
        tracing::info!(%instance, ?addresses, port = s.port, "mDNS: skipped, no usable address and port");
        return None;
    }
    Some(Candidate { instance, host: s.host, port: s.port, urls, txt })
}

/// `https://addr:port` for each address: IPv4 (sorted) first, then IPv6 without link-local.
pub(crate) fn urls(addresses: &[IpAddr], port: u16) -> Vec<String> {
    let mut v4: Vec<_> =
        addresses.iter().filter_map(|a| if let IpAddr::V4(a) = a { Some(*a) } else { None }).collect();
    let mut v6: Vec<_> = addresses
        .iter()
        .filter_map(|a| if let IpAddr::V6(a) = a { Some(*a) } else { None })
        .filter(|a| !a.is_unicast_link_local())
        .collect();
    v4.sort();
    v6.sort();
    v4.iter()
        .map(|a| format!("https://{a}:{port}"))
        .chain(v6.iter().map(|a| format!("https://[{a}]:{port}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_comes_first_and_link_local_ipv6_is_left_out() {
        let a: Vec<IpAddr> =
            ["fe80::1", "2001:db8::5", "192.0.2.9", "10.0.0.1"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(
            urls(&a, 8443),
            ["https://10.0.0.1:8443", "https://192.0.2.9:8443", "https://[2001:db8::5]:8443"]
        );
        assert!(urls(&["fe80::1".parse().unwrap()], 1).is_empty());
    }
}
