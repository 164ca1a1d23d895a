//! `brski registrar init|serve|list|approve|deny`: the BRSKI registrar and domain EST CA.

use anyhow::Context;
use clap::{Args, Subcommand};
use registrar::config::CONFIG_FILE;
use registrar::init::{init, open, open_store, InitOptions};
use registrar::pledges;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum RegistrarCommand {
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
}

#[derive(Debug, Args)]
pub struct InitArgs {
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
}

fn parse_manufacturer(s: &str) -> Result<(String, PathBuf), String> {
    let (n, f) = s.split_once('=').ok_or("expected NAME=FILE")?;
    Ok((n.to_string(), PathBuf::from(f)))
}

/// Which registrar: a config file, or a state directory holding registrar.toml.
#[derive(Debug, Args)]
pub struct Where {
    /// Configuration file.
    #[arg(long, conflicts_with = "state")]
    config: Option<PathBuf>,
    /// State directory (uses its registrar.toml).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl Where {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match (&self.config, &self.state) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(s)) => Ok(s.join(CONFIG_FILE)),
            _ => anyhow::bail!("give --config FILE or --state DIR"),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    at: Where,
    /// Listen address (overrides the config's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct Decide {
    /// The pledge's serial number.
    serial: String,
    #[command(flatten)]
    at: Where,
}

/// Runs a registrar command.
pub fn run(cmd: RegistrarCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match cmd {
            RegistrarCommand::Init(a) => run_init(a),
            RegistrarCommand::Serve(a) => serve(a).await,
            RegistrarCommand::List(w) => list(w).await,
            RegistrarCommand::Approve(d) => decide(d, true).await,
            RegistrarCommand::Deny(d) => decide(d, false).await,
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
    };
    let config = init(&o)?;
    println!("registrar created in {}", a.state.display());
    for f in ["domain-ca.pem", "domain-ca.key", "registrar.pem", "registrar.key"] {
        println!("  {}", a.state.join(f).display());
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
    reg.serve(listener).await?;
    Ok(ExitCode::SUCCESS)
}

async fn list(w: Where) -> anyhow::Result<ExitCode> {
    let store = open_store(&w.path()?).await?;
    let all = pledges::list(store.as_ref()).await?;
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
            r.state.name(),
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
    let r = pledges::decide(store.as_ref(), &d.serial, approve, &operator).await?;
    println!("pledge {} is now {}", r.serial, r.state.name());
    Ok(ExitCode::SUCCESS)
}
