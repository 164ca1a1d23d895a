//! Announcing the registrar by DNS-SD over mDNS (RFC 6762/6763), so that pledges on the link
//! find it without a configured URL (RFC 8995 §4: `_brski-registrar._tcp`).
//!
//! The announcement is a PTR/SRV/TXT/A(AAAA) record set for one service instance:
//!
//! * type `_brski-registrar._tcp.local.`, instance `brski-registrar-<hostname>` (or the
//!   configured `mdns_instance`), host `<hostname>-brski.local.` (or `mdns_hostname`; a name of
//!   its own, so it never collides with the host record of an avahi daemon on the same machine);
//! * the port the registrar's TLS listener is bound to;
//! * TXT `rt=brski`, `path=/.well-known/brski` (BRSKI) and `est=/.well-known/est` (EST).
//!
//! Where it is announced follows from where the registrar can be reached ([`plan`]): a
//! registrar listening on a loopback address is announced on loopback only, one listening on a
//! specific address on the interface that holds it, one listening on `0.0.0.0` on every IPv4
//! interface with each interface's own addresses; `mdns_interface` restricts it to one interface.
//!
//! Deciding ([`plan`]) is a pure function; [`Announcement`] is the side effect: it runs an
//! `mdns-sd` responder thread until [`Announcement::stop`] sends the goodbye packets (TTL 0) and
//! shuts it down. Only `brski registrar serve` announces; [`crate::Registrar::serve`] and the
//! in-process lab never do, so tests do not send multicast out of the machine.

use crate::config::MdnsConfig;
use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The DNS-SD service type of a BRSKI registrar, with the mDNS domain.
pub const SERVICE_TYPE: &str = "_brski-registrar._tcp.local.";

/// How long [`Announcement::stop`] waits for the goodbye and for the responder to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Which addresses the address records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// The one address the registrar listens on.
    Fixed(IpAddr),
    /// The addresses of each interface announced on (the registrar listens on all of them);
    /// kept up to date when they change.
    Auto,
}

/// Which interfaces the responder runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Only the named interface.
    Named(String),
    /// Only loopback (the registrar listens on a loopback address).
    Loopback {
        /// The IPv6 loopback (`::1`) rather than the IPv4 one.
        v6: bool,
    },
    /// Only the interface that holds this address.
    Holding(IpAddr),
    /// Every IPv4 interface (the registrar listens on `0.0.0.0`).
    AllV4,
    /// Every interface.
    All,
}

/// What will be announced, decided from the configuration and the bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Service instance name (one DNS label).
    pub instance: String,
    /// Host name of the address records, ending in `.local.`.
    pub hostname: String,
    /// TCP port of the registrar.
    pub port: u16,
    /// Address records.
    pub addresses: Addresses,
    /// Interfaces.
    pub interfaces: Interfaces,
    /// TXT record key/value pairs.
    pub txt: Vec<(String, String)>,
}

impl Plan {
    /// The full service instance name, e.g. `brski-registrar-vm._brski-registrar._tcp.local.`.
    pub fn fullname(&self) -> String {
        format!("{}.{SERVICE_TYPE}", self.instance)
    }
}

/// Decides the announcement for a registrar bound to `local`, on a machine called
/// `system_hostname` (used for the default instance and host names).
pub fn plan(cfg: &MdnsConfig, local: SocketAddr, system_hostname: &str) -> Plan {
    let host = dns_label(system_hostname);
    let ip = local.ip();
    let (addresses, interfaces) = match (&cfg.interface, ip) {
        (Some(name), ip) if ip.is_unspecified() => (Addresses::Auto, Interfaces::Named(name.clone())),
        (Some(name), ip) => (Addresses::Fixed(ip), Interfaces::Named(name.clone())),
        (None, ip) if ip.is_loopback() => (Addresses::Fixed(ip), Interfaces::Loopback { v6: ip.is_ipv6() }),
        (None, IpAddr::V4(v4)) if v4.is_unspecified() => (Addresses::Auto, Interfaces::AllV4),
        (None, ip) if ip.is_unspecified() => (Addresses::Auto, Interfaces::All),
        (None, ip) => (Addresses::Fixed(ip), Interfaces::Holding(ip)),
    };
    Plan {
        instance: cfg.instance.clone().unwrap_or_else(|| format!("brski-registrar-{host}")),
        hostname: cfg.hostname.clone().unwrap_or_else(|| format!("{host}-brski.local.")),
        port: local.port(),
        addresses,
        interfaces,
        txt: vec![
            ("rt".into(), "brski".into()),
            ("path".into(), "/.well-known/brski".into()),
            ("est".into(), "/.well-known/est".into()),
        ],
    }
}

/// The machine's host name as one lower-case DNS label (letters, digits, '-'), or `registrar`.
pub fn system_hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    dns_label(&raw)
}

/// Turns `raw` (a host name, perhaps with a domain) into one DNS label of at most 40 bytes.
fn dns_label(raw: &str) -> String {
    let first = raw.trim().split('.').next().unwrap_or_default();
    let label: String = first
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "registrar".into()
    } else {
        label.to_string()
    }
}

/// The responder could not be started.
#[derive(Debug, thiserror::Error)]
#[error("mDNS announcement of {SERVICE_TYPE}: {0}")]
pub struct AnnounceError(String);

/// A running announcement. [`Announcement::stop`] withdraws it; dropping it without `stop`
/// still queues the withdrawal, but does not wait for it.
pub struct Announcement {
    daemon: Option<ServiceDaemon>,
    plan: Plan,
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement")
            .field("plan", &self.plan)
            .field("running", &self.daemon.is_some())
            .finish()
    }
}

impl Announcement {
    /// Starts an mDNS responder announcing `plan`. The responder probes the instance name,
    /// then announces; its events (announcements, name changes, errors) are logged.
    pub fn start(plan: Plan) -> Result<Announcement, AnnounceError> {
        let fail = |what: &str, e: mdns_sd::Error| AnnounceError(format!("{what}: {e}"));
        let daemon = ServiceDaemon::new().map_err(|e| fail("starting the responder", e))?;
        let this = Announcement { daemon: Some(daemon), plan };
        let daemon = this.daemon.as_ref().expect("just set");
        match &this.plan.interfaces {
            Interfaces::All => {}
            Interfaces::AllV4 => daemon.disable_interface(IfKind::IPv6).map_err(|e| fail("interfaces", e))?,
            only => {
                daemon.disable_interface(IfKind::All).map_err(|e| fail("interfaces", e))?;
                let kind = match only {
                    Interfaces::Named(name) => IfKind::Name(name.clone()),
                    Interfaces::Loopback { v6: false } => IfKind::LoopbackV4,
                    Interfaces::Loopback { v6: true } => IfKind::LoopbackV6,
                    Interfaces::Holding(ip) => IfKind::Addr(*ip),
                    Interfaces::All | Interfaces::AllV4 => unreachable!("handled above"),
                };
                daemon.enable_interface(kind).map_err(|e| fail("interfaces", e))?;
            }
        }
        match daemon.monitor() {
            Ok(events) => {
                let name = this.plan.fullname();
                let spawned = std::thread::Builder::new()
                    .name("mdns-monitor".into())
                    .spawn(move || log_events(&name, events));
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "mDNS events will not be logged");
                }
            }
            Err(e) => tracing::warn!(error = %e, "mDNS events will not be logged"),
        }
        let info = service_info(&this.plan).map_err(|e| fail("service record", e))?;
        daemon.register(info).map_err(|e| fail("registering", e))?;
        tracing::info!(
            instance = %this.plan.instance,
            host = %this.plan.hostname,
            port = this.plan.port,
            addresses = ?this.plan.addresses,
            interfaces = ?this.plan.interfaces,
            "announcing the registrar by mDNS"
        );
        Ok(this)
    }

    /// What is announced.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Withdraws the announcement (goodbye packets with TTL 0, so browsers drop it at once)
    /// and stops the responder, waiting at most a few seconds for each.
    pub async fn stop(mut self) {
        let Some(daemon) = self.daemon.take() else { return };
        let fullname = self.plan.fullname();
        match daemon.unregister(&fullname) {
            Ok(rx) => match tokio::time::timeout(STOP_TIMEOUT, rx.recv_async()).await {
                Ok(Ok(UnregisterStatus::OK)) => tracing::info!(%fullname, "mDNS announcement withdrawn"),
                Ok(Ok(status)) => tracing::warn!(%fullname, ?status, "mDNS announcement was not registered"),
                Ok(Err(e)) => tracing::warn!(%fullname, error = %e, "mDNS withdrawal: responder gone"),
                Err(_) => tracing::warn!(%fullname, "mDNS withdrawal not confirmed in {STOP_TIMEOUT:?}"),
            },
            Err(e) => tracing::warn!(%fullname, error = %e, "mDNS withdrawal failed"),
        }
        if let Ok(rx) = daemon.shutdown() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, rx.recv_async()).await;
        }
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            // Queued in order: the responder sends the goodbye, then exits.
            let _ = daemon.unregister(&self.plan.fullname());
            let _ = daemon.shutdown();
        }
    }
}

fn service_info(plan: &Plan) -> Result<ServiceInfo, mdns_sd::Error> {
    let fixed: Vec<IpAddr> = match plan.addresses {
        Addresses::Fixed(ip) => vec![ip],
        Addresses::Auto => Vec::new(),
    };
    let txt: Vec<(&str, &str)> = plan.txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let info =
        ServiceInfo::new(SERVICE_TYPE, &plan.instance, &plan.hostname, &fixed[..], plan.port, &txt[..])?;
    Ok(match plan.addresses {
        Addresses::Auto => info.enable_addr_auto(),
        Addresses::Fixed(_) => info,
    })
}

/// Logs the responder's events until it exits.
fn log_events(fullname: &str, events: mdns_sd::Receiver<DaemonEvent>) {
    while let Ok(event) = events.recv() {
        match event {
            DaemonEvent::Announce(name, interfaces) => {
                tracing::info!(%name, %interfaces, "mDNS: announced")
            }
            DaemonEvent::NameChange(c) => tracing::warn!(
                %fullname,
                original = %c.original,
                new = %c.new_name,
                "mDNS: name conflict on the link; the responder renamed the record"
            ),
            DaemonEvent::Error(e) => tracing::warn!(%fullname, error = %e, "mDNS responder error"),
            other => tracing::debug!(event = ?other, "mDNS responder event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MdnsConfig {
        MdnsConfig { enabled: true, interface: None, instance: None, hostname: None }
    }

    #[test]
    fn the_plan_follows_the_listen_address() {
        let p = plan(&cfg(), "127.0.0.1:8443".parse().unwrap(), "vm");
        assert_eq!(p.instance, "brski-registrar-vm");
        assert_eq!(p.hostname, "vm-brski.local.");
        assert_eq!(p.fullname(), "brski-registrar-vm._brski-registrar._tcp.local.");
        assert_eq!(p.port, 8443);
        assert_eq!(p.addresses, Addresses::Fixed("127.0.0.1".parse().unwrap()));
        assert_eq!(p.interfaces, Interfaces::Loopback { v6: false });
        assert!(p.txt.contains(&("rt".into(), "brski".into())));
        assert!(p.txt.contains(&("path".into(), "/.well-known/brski".into())));

        let p = plan(&cfg(), "0.0.0.0:9000".parse().unwrap(), "vm");
        assert_eq!((p.addresses, p.interfaces), (Addresses::Auto, Interfaces::AllV4));
        let p = plan(&cfg(), "[::]:9000".parse().unwrap(), "vm");
        assert_eq!((p.addresses, p.interfaces), (Addresses::Auto, Interfaces::All));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let p = plan(&cfg(), SocketAddr::new(ip, 1), "vm");
        assert_eq!((p.addresses, p.interfaces), (Addresses::Fixed(ip), Interfaces::Holding(ip)));
    }

    #[test]
    fn configured_names_and_interface_win() {
        let c = MdnsConfig {
            enabled: true,
            interface: Some("eth1".into()),
            instance: Some("Campus registrar".into()),
            hostname: Some("reg1.local.".into()),
        };
        let p = plan(&c, "0.0.0.0:8443".parse().unwrap(), "vm");
        assert_eq!((p.instance.as_str(), p.hostname.as_str()), ("Campus registrar", "reg1.local."));
        assert_eq!((p.addresses, p.interfaces), (Addresses::Auto, Interfaces::Named("eth1".into())));
        // The record itself is valid for mdns-sd.
        let p = plan(&c, "192.0.2.7:8443".parse().unwrap(), "vm");
        let info = service_info(&p).unwrap();
        assert_eq!(info.get_fullname(), "Campus registrar._brski-registrar._tcp.local.");
        assert_eq!(info.get_property_val_str("rt"), Some("brski"));
    }

    #[test]
    fn host_names_become_one_dns_label() {
        assert_eq!(dns_label("Build_Box.example.org\n"), "build-box");
        assert_eq!(dns_label(""), "registrar");
        assert_eq!(dns_label("--"), "registrar");
        assert_eq!(dns_label(&"a".repeat(80)).len(), 40);
    }
}
