//! An in-process BRSKI lab on loopback: a reference MASA and a registrar as real TLS servers
//! on free ports, state under one directory, and pledges minted on demand. Used by
//! `brski demo`, `brski bench brski|agent` and the cross-role suites (`e2e`). It sits above the
//! roles because it is the one place that holds several of them at once.

use masa::Masa;
use masa::Owner;
use pledge::{Idevid, PledgeConfig};
use registrar::Registrar;
use registrar::{init, open, InitOptions};
use registrar::{Approval, AuditLogPolicy, CONFIG_FILE};
use shared::conf::toml_string;
use shared::signed::Format;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How to set the lab up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Registrar approval policy.
    pub approval: Approval,
    /// Registrar audit-log policy.
    pub audit_log: AuditLogPolicy,
    /// Record each pledge as owned by the registrar's domain at the MASA (otherwise the MASA
    /// runs with allow-any-owner).
    pub claim_ownership: bool,
    /// Seconds a pending pledge is told to wait.
    pub retry_after_secs: u64,
    /// The agent issuance policy (TOML text of `agent-policy.toml`); no agent endpoints
    /// without it. Paths in it should be absolute.
    pub agent_policy: Option<String>,
    /// The registrar's `store` (e.g. a `postgres://` URL); default: its SQLite file.
    pub store_url: Option<String>,
    /// The domain CA key URI for a new lab (e.g. `pkcs11:...`); default: a key file.
    pub domain_ca_key: Option<String>,
    /// The registrar's TLS key URI for a new lab (e.g. `pkcs11:...`); default: a key file.
    pub registrar_key: Option<String>,
    /// The MASA voucher-signing key URI for a new lab (e.g. `pkcs11:...`); default: a key file.
    pub voucher_signer_key: Option<String>,
    /// Where [`Lab::pledge`] puts the minted devices' state directories (they stand for
    /// separate devices, so their storage need not be the servers'); default: `pledges/`
    /// under the lab directory.
    pub pledge_dir: Option<PathBuf>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            approval: Approval::Auto,
            audit_log: AuditLogPolicy::Enforce,
            claim_ownership: true,
            retry_after_secs: 1,
            agent_policy: None,
            store_url: None,
            domain_ca_key: None,
            registrar_key: None,
            voucher_signer_key: None,
            pledge_dir: None,
        }
    }
}

/// A running lab. Dropping it stops the servers.
pub struct Lab {
    /// The state directory.
    pub dir: PathBuf,
    /// The MASA.
    pub masa: Arc<Masa>,
    /// The registrar.
    pub registrar: Arc<Registrar>,
    /// `https://127.0.0.1:<port>` of the registrar.
    pub registrar_url: String,
    /// Address of the MASA.
    pub masa_addr: SocketAddr,
    options: LabOptions,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A lab failure, as text (it is a harness).
pub type LabError = String;

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Lab {
    /// Starts a MASA and a registrar under `dir`. A directory holding an earlier lab is
    /// reused (same CAs, keys, pledges and records) on new loopback ports.
    pub async fn start(dir: &Path, options: LabOptions) -> Result<Lab, LabError> {
        std::fs::create_dir_all(dir).map_err(s)?;
        let masa_listener = TcpListener::bind("127.0.0.1:0").await.map_err(s)?;
        let masa_addr = masa_listener.local_addr().map_err(s)?;
        let masa_dir = dir.join("masa");
        let masa = Arc::new(open_masa(&masa_dir, masa_addr, &options).await?);
        let reg_listener = TcpListener::bind("127.0.0.1:0").await.map_err(s)?;
        let reg_addr = reg_listener.local_addr().map_err(s)?;
        let reg_dir = dir.join("registrar");
        let config = reg_dir.join(CONFIG_FILE);
        if !config.exists() {
            init(&InitOptions {
                dir: reg_dir.clone(),
                domain_subject: "CN=brski lab Domain CA".into(),
                names: vec!["127.0.0.1".into(), "localhost".into()],
                listen: reg_addr,
                manufacturers: vec![("lab".into(), masa_dir.join(masa::CA_CERT_FILE))],
                trust_domain: None,
                domain_ca_key: options.domain_ca_key.clone(),
                registrar_key: options.registrar_key.clone(),
            })
            .map_err(s)?;
        }
        set_policy(&config, &options, masa_addr)?;
        let registrar = Arc::new(open(&config, Some(reg_addr)).await.map_err(s)?);
        let m = masa.clone();
        let masa_task = tokio::spawn(async move {
            if let Err(e) = masa::serve(m, masa_listener).await {
                tracing::error!(error = %e, "lab MASA stopped");
            }
        });
        let r = registrar.clone();
        let reg_task = tokio::spawn(async move {
            if let Err(e) = r.serve(reg_listener).await {
                tracing::error!(error = %e, "lab registrar stopped");
            }
        });
        Ok(Lab {
            dir: dir.to_path_buf(),
            masa,
            registrar,
            registrar_url: format!("https://{reg_addr}"),
            masa_addr,
            options,
            tasks: vec![masa_task, reg_task],
        })
    }

    /// Starts a second registrar on the lab's configuration (same CA, keys and store), opened
    /// again with its own store connections as a second process would, serving on a new
    /// loopback port; returns it and its `https://127.0.0.1:<port>`. With a PostgreSQL
    /// `store_url`, both registrars enroll pledges into one database.
    pub async fn start_replica(&mut self) -> Result<(Arc<Registrar>, String), LabError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(s)?;
        let addr = listener.local_addr().map_err(s)?;
        let config = self.dir.join("registrar").join(CONFIG_FILE);
        let registrar = Arc::new(open(&config, Some(addr)).await.map_err(s)?);
        let r = registrar.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = r.serve(listener).await {
                tracing::error!(error = %e, "lab registrar replica stopped");
            }
        }));
        Ok((registrar, format!("https://{addr}")))
    }

    /// Mints a device `serial` at the MASA (claimed for this domain unless allow-any-owner),
    /// writes its IDevID files under `<pledge dir>/<serial>` ([`LabOptions::pledge_dir`],
    /// default `dir/pledges`), and returns a pledge
    /// configuration pointing at the registrar.
    pub async fn pledge(&self, serial: &str, format: Format) -> Result<(PledgeConfig, Idevid), LabError> {
        let out = match &self.options.pledge_dir {
            Some(d) => d.join(serial),
            None => self.dir.join("pledges").join(serial),
        };
        self.masa.mint_idevid_to(serial, &out).await.map_err(s)?;
        if self.options.claim_ownership {
            let owner = Owner::DomainCa(self.registrar.domain_ca().clone());
            self.masa.claim(serial, owner, None).await.map_err(s)?;
        }
        let mut cfg = PledgeConfig::in_dir(&out);
        cfg.registrar = Some(self.registrar_url.clone());
        cfg.format = format;
        cfg.max_attempts = 1;
        let id = Idevid::load(&cfg).map_err(s)?;
        Ok((cfg, id))
    }
}

/// Creates the lab MASA, or reopens an earlier one moved to `addr`.
async fn open_masa(masa_dir: &Path, addr: SocketAddr, options: &LabOptions) -> Result<Masa, LabError> {
    let path = masa_dir.join(masa::CONFIG_FILE);
    if !path.exists() {
        let mut opts = masa::InitOptions::new(&addr.to_string());
        opts.listen = addr;
        opts.voucher_signer_key = options.voucher_signer_key.clone();
        drop(Masa::init(masa_dir, &opts).await.map_err(s)?);
    }
    let text = std::fs::read_to_string(&path).map_err(s)?;
    let any = if options.claim_ownership { "false" } else { "true" };
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("listen = ") || l.starts_with("url = ") {
                let key = l.split(' ').next().unwrap_or_default();
                format!("{key} = {}\n", toml_string(&addr.to_string()))
            } else if l.starts_with("allow_any_owner = ") {
                format!("allow_any_owner = {any}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&path, text).map_err(s)?;
    Masa::load(masa_dir).await.map_err(s)
}

/// Writes the lab's approval and audit-log policy into the registrar config.
fn set_policy(config: &Path, o: &LabOptions, masa: SocketAddr) -> Result<(), LabError> {
    let text = std::fs::read_to_string(config).map_err(s)?;
    // A reused lab: start from the lines `init` wrote, then apply this run's options.
    let text: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("agent_policy = ") && !l.starts_with("masa_url = ") && !l.starts_with("store = ")
        })
        .map(|l| {
            let reset = [
                ("approval = ", "approval = \"auto\""),
                ("audit_log = ", "audit_log = \"enforce\""),
                ("retry_after_secs = ", "retry_after_secs = 5"),
            ];
            let line = reset.iter().find(|(p, _)| l.starts_with(p)).map_or(l, |(_, d)| d);
            format!("{line}\n")
        })
        .collect();
    // The MASA moved to a new port: the registrar reaches it through the override (IDevIDs
    // minted earlier name the old port).
    let text = text.replace("name = \"lab\"\n", &format!("name = \"lab\"\nmasa_url = \"https://{masa}\"\n"));
    let approval = match o.approval {
        Approval::Auto => "auto",
        Approval::Allowlist => "allowlist",
        Approval::Manual => "manual",
    };
    let audit = match o.audit_log {
        AuditLogPolicy::Enforce => "enforce",
        AuditLogPolicy::Warn => "warn",
        AuditLogPolicy::Ignore => "ignore",
    };
    let text = text
        .replace("approval = \"auto\"", &format!("approval = \"{approval}\""))
        .replace("audit_log = \"enforce\"", &format!("audit_log = \"{audit}\""))
        .replace("retry_after_secs = 5", &format!("retry_after_secs = {}", o.retry_after_secs))
        // The lab never announces (nothing in it calls `announce`); say so in its config too.
        .replace("mdns = true", "mdns = false");
    let text = match &o.agent_policy {
        Some(policy) => {
            let file = config.with_file_name("agent-policy.toml");
            std::fs::write(&file, policy).map_err(s)?;
            // Top-level keys go before the [[manufacturer]] tables.
            format!("agent_policy = \"agent-policy.toml\"\n{text}")
        }
        None => text,
    };
    let text = match &o.store_url {
        Some(url) => format!("store = {}\n{text}", toml_string(url)),
        None => text,
    };
    std::fs::write(config, text).map_err(s)
}
