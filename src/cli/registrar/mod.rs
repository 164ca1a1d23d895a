//! `brski registrar init|serve|list|approve|deny`: the BRSKI registrar and domain EST CA.

mod agent;
mod target;

use anyhow::Context;
use clap::{Args, Subcommand};
use registrar::list_pledges;
use registrar::Announcement;
use registrar::{init, open, open_store, InitOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
pub(super) use target::Where;

#[derive(Debug, Subcommand)]
pub(super) enum RegistrarCommand {
    /// Create a registrar: domain CA, registrar certificate (cmcRA), commented registrar.toml.
    Init(InitArgs),
    /// Run the registrar (BRSKI + EST on one TLS port).
    Serve(ServeArgs),
    /// List pledges with their state, voucher and enrollment status.
    List(Where),
    /// Approve a pledge (also pre-approves a serial not seen yet).
    Approve(Decide),
    /// Deny a pledge.
    Deny(Decide),
    /// Agent issuance administration: owner grants and revocation.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
}

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// State directory to create.
    #[arg(long)]
    state: PathBuf,
    /// Subject of the domain CA.
    #[arg(long, default_value = "CN=brski Domain CA")]
    domain_subject: String,
    /// DNS names / IP addresses the registrar is reached by (repeatable).
    #[arg(long = "name", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
    names: Vec<String>,
    /// Listen address for the config.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Trusted manufacturer as NAME=ANCHORS.pem (repeatable).
    #[arg(long = "manufacturer", value_parser = parse_manufacturer)]
    manufacturers: Vec<(String, PathBuf)>,
    /// Enable agent issuance for this trust domain (writes agent-policy.toml).
    #[arg(long)]
    trust_domain: Option<String>,
    /// Make the domain CA with this key URI (e.g. an RFC 7512 `pkcs11:` URI) instead of a new
    /// domain-ca.key; written to registrar.toml as `domain_ca_key`.
    #[arg(long, value_name = "URI")]
    domain_ca_key: Option<String>,
    /// Issue the registrar's TLS certificate for this key URI (e.g. an RFC 7512 `pkcs11:` URI)
    /// instead of a new registrar.key; written to registrar.toml as `registrar_key`.
    #[arg(long, value_name = "URI")]
    registrar_key: Option<String>,
}

fn parse_manufacturer(s: &str) -> Result<(String, PathBuf), String> {
    let (n, f) = s.split_once('=').ok_or("expected NAME=FILE")?;
    Ok((n.to_string(), PathBuf::from(f)))
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    at: Where,
    /// Listen address (overrides the config's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Do not announce the registrar by mDNS (`_brski-registrar._tcp`), whatever the config's
    /// `mdns` says.
    #[arg(long)]
    no_mdns: bool,
}

#[derive(Debug, Args)]
pub(super) struct Decide {
    /// The pledge's serial number.
    serial: String,
    #[command(flatten)]
    at: Where,
}

/// Runs a registrar command.
pub(super) fn run(cmd: RegistrarCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match cmd {
            RegistrarCommand::Init(a) => run_init(a),
            RegistrarCommand::Serve(a) => serve(a).await,
            RegistrarCommand::List(w) => list(w).await,
            RegistrarCommand::Approve(d) => decide(d, true).await,
            RegistrarCommand::Deny(d) => decide(d, false).await,
            RegistrarCommand::Agent(c) => agent::run(c).await,
        }
    })
}

fn run_init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let o = InitOptions {
        dir: a.state.clone(),
        domain_subject: a.domain_subject,
        names: a.names,
        listen: a.listen,
        manufacturers: a.manufacturers,
        trust_domain: a.trust_domain.clone(),
        domain_ca_key: a.domain_ca_key.clone(),
        registrar_key: a.registrar_key.clone(),
    };
    let config = init(&o)?;
    println!("registrar created in {}", a.state.display());
    for f in ["domain-ca.pem", "domain-ca.key", "registrar.pem", "registrar.key"] {
        if (f == "domain-ca.key" && a.domain_ca_key.is_some())
            || (f == "registrar.key" && a.registrar_key.is_some())
        {
            continue;
        }
        println!("  {}", a.state.join(f).display());
    }
    if a.trust_domain.is_some() {
        println!("  {} (agent issuance policy)", a.state.join("agent-policy.toml").display());
    }
    println!("  {} (edit it, then: brski registrar serve --config {})", config.display(), config.display());
    Ok(ExitCode::SUCCESS)
}

async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let path = a.at.path()?;
    let reg = Arc::new(open(&path, a.listen).await?);
    let listen = reg.config().listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    println!(
        "brski registrar on https://{} (BRSKI /.well-known/brski, EST /.well-known/est)",
        listener.local_addr()?
    );
    println!("  domain CA: {}", reg.domain_ca().tbs_certificate().subject());
    println!("  approval:  {:?}", reg.config().approval);
    let announcement = announce(&reg, listener.local_addr()?, a.no_mdns);
    let result = tokio::select! {
        r = reg.serve(listener) => r.map_err(anyhow::Error::from),
        s = shutdown_signal() => s.map_err(anyhow::Error::from),
    };
    if let Some(a) = announcement {
        a.stop().await;
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Starts the mDNS announcement unless `--no-mdns` or `mdns = false`; a failure to announce is
/// reported but not fatal (pledges with a configured URL still work).
fn announce(reg: &registrar::Registrar, local: SocketAddr, no_mdns: bool) -> Option<Announcement> {
    let cfg = &reg.config().mdns;
    if no_mdns || !cfg.enabled {
        let why = if no_mdns { "--no-mdns" } else { "mdns = false in the config" };
        println!("  mDNS:      not announced ({why})");
        return None;
    }
    let plan = registrar::announcement_plan(cfg, local, &registrar::system_hostname());
    match Announcement::start(plan) {
        Ok(a) => {
            let p = a.plan();
            println!(
                "  mDNS:      announcing \"{}\" {} port {} (host {})",
                p.instance,
                registrar::SERVICE_TYPE,
                p.port,
                p.hostname
            );
            Some(a)
        }
        Err(e) => {
            eprintln!("warning: {e}; pledges need the registrar URL");
            None
        }
    }
}

/// Resolves on SIGINT or SIGTERM, so the announcement can be withdrawn before exiting.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    println!("brski registrar: shutting down");
    Ok(())
}

async fn list(w: Where) -> anyhow::Result<ExitCode> {
    let store = open_store(&w.path()?).await?;
    let all = list_pledges(store.as_ref()).await?;
    if all.is_empty() {
        println!("no pledges yet");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<15} {:<14} {:<8} {:<8} UPDATED / REASON",
        "SERIAL", "STATE", "MANUFACTURER", "VOUCHER", "ENROLL"
    );
    for r in all {
        let st = |s: &Option<shared::brski::StatusReport>| {
            s.as_ref().map_or("-", |s| if s.status { "ok" } else { "failed" })
        };
        println!(
            "{:<20} {:<15} {:<14} {:<8} {:<8} {}{}",
            r.serial,
            r.state().name(),
            r.manufacturer.as_deref().unwrap_or("-"),
            st(&r.voucher_status),
            st(&r.enroll_status),
            r.updated,
            r.reason.map(|x| format!("  {x}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(d: Decide, approve: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(&d.at.path()?).await?;
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let r = registrar::decide_pledge(store.as_ref(), &d.serial, approve, &operator).await?;
    println!("pledge {} is now {}", r.serial, r.state().name());
    Ok(ExitCode::SUCCESS)
}
