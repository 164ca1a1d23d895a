//! `brski agent request`: an agent asks the local Identity Proxy for its identity. The key is
//! generated here and never leaves this process except into the 0600 key file; the request is
//! an ACR signed with it (proof of possession).

use ::agent::{
    build_acr, check_credential, save_bundle, save_credential, save_new_key, AgentApiClient, AgentFiles,
    Credential, Endpoint,
};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shared::agent::acr::ACR_MAX_LIFE_OFFLINE;
use shared::agent::jwt::unix_now;
use shared::agent::{verify_acr, CredentialSpec, Model};
use shared::keys::{load_key_file, Algorithm, Signer, SoftwareKey};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Environment variable naming the Agent API socket.
const SOCKET_ENV: &str = "BRSKI_AGENT_SOCKET";

#[derive(Debug, Subcommand)]
pub(super) enum AgentCommand {
    /// Get an agent credential (X.509 certificate and/or WIT) from the local Identity Proxy.
    #[command(after_help = REQUEST_EXAMPLES)]
    Request(RequestArgs),
}

const REQUEST_EXAMPLES: &str = "\
Examples:
  brski agent request --socket /var/lib/brski/pledge/agent.sock --id wimse://campus.example/agent/build-7 --out ./id
  brski agent request ... --owner mailto:alice@example.com --model server-mediated     (waits for the owner)
  brski agent request ... --renew --watch                                              (renew at half-life, forever)
Model 1 (the owner signs offline):
  brski agent request ... --owner mailto:alice@example.com --model agent-mediated --acr-out acr.jws
  brski owner sign --dir OWNER_DIR --acr acr.jws --out oa.jws                         (the owner, offline)
  brski agent request --socket ... --acr acr.jws --oa oa.jws --key ./id/agent.key --out ./id";

#[derive(Debug, Args)]
pub(super) struct RequestArgs {
    /// The Agent API socket (default: $BRSKI_AGENT_SOCKET).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Use the Agent API on loopback TCP instead of the socket.
    #[arg(long, conflicts_with = "socket")]
    tcp: Option<SocketAddr>,
    /// The agent id asked for, e.g. wimse://campus.example/agent/build-7.
    #[arg(long)]
    id: Option<String>,
    /// Requested lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Credential formats: x509, wit, or both (comma-separated).
    #[arg(long, default_value = "x509,wit", value_delimiter = ',')]
    formats: Vec<String>,
    /// The owner id, for a dual-identity credential (e.g. mailto:alice@example.com).
    #[arg(long)]
    owner: Option<String>,
    /// Issuance model: none, agent-mediated, owner-mediated or server-mediated (default: none
    /// without --owner).
    #[arg(long, value_parser = |s: &str| Model::parse(s).ok_or("none, agent-mediated, owner-mediated or server-mediated"))]
    model: Option<Model>,
    /// Key algorithm of a new agent key: es256 (P-256) or ed25519.
    #[arg(long, default_value = "es256", value_parser = ["es256", "ed25519"])]
    alg: String,
    /// Output directory: agent.key (0600), agent.pem, ca.pem, agent.wit, credential.json,
    /// bundle.json.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The agent key file (default: <out>/agent.key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Renew: use the existing key file (a renewal sends no owner approval).
    #[arg(long)]
    renew: bool,
    /// Model 1: write the ACR (no nonce, valid 10 minutes) to this file for the owner to sign,
    /// and stop.
    #[arg(long, conflicts_with_all = ["acr", "watch"])]
    acr_out: Option<PathBuf>,
    /// Model 1: submit this pre-made ACR (made with --acr-out) with --oa and --key.
    #[arg(long)]
    acr: Option<PathBuf>,
    /// Model 1: the owner approval over the ACR (with --acr).
    #[arg(long, requires = "acr")]
    oa: Option<PathBuf>,
    /// The trust domain, to write an ACR with --acr-out without asking the proxy.
    #[arg(long)]
    trust_domain: Option<String>,
    /// Longest wait for an owner decision, in seconds.
    #[arg(long, default_value_t = 600)]
    max_wait: u64,
    /// Timeout of each Agent API exchange, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Keep running and renew the credential at half its life.
    #[arg(long)]
    watch: bool,
}

/// Runs an agent command.
pub(super) fn run(cmd: AgentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Request(a) => tokio::runtime::Runtime::new()?.block_on(request(a)),
    }
}

fn endpoint(a: &RequestArgs) -> anyhow::Result<Endpoint> {
    if let Some(t) = a.tcp {
        if !t.ip().is_loopback() {
            bail!("--tcp {t}: the Agent API is only served on loopback addresses");
        }
        return Ok(Endpoint::Tcp(t));
    }
    match a.socket.clone().or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from)) {
        Some(p) => Ok(Endpoint::Unix(p)),
        None => bail!("give --socket PATH (the proxy's <state>/agent.sock) or set {SOCKET_ENV}"),
    }
}

fn spec(a: &RequestArgs) -> anyhow::Result<CredentialSpec> {
    let model = match (a.model, &a.owner) {
        (Some(m), _) => m,
        (None, None) => Model::None,
        (None, Some(_)) => bail!("--owner needs --model agent-mediated, owner-mediated or server-mediated"),
    };
    Ok(CredentialSpec {
        id: a.id.clone(),
        formats: a.formats.clone(),
        ttl: a.ttl,
        owner: a.owner.clone(),
        model,
    })
}

fn load_key(path: &Path) -> anyhow::Result<SoftwareKey> {
    load_key_file(path).with_context(|| format!("loading the agent key {}", path.display()))
}

/// `brski agent request`: the key, the signed request (made here, or a pre-made ACR and OA),
/// the credential (polling while an owner decides), checked and saved; with `--watch`, renewed.
async fn request(a: RequestArgs) -> anyhow::Result<ExitCode> {
    let files = AgentFiles::in_dir(&a.out, a.key.as_deref());
    if a.acr_out.is_some() {
        return write_offline_acr(&a, &files).await;
    }
    let api = AgentApiClient::new(endpoint(&a)?, Duration::from_secs(a.timeout));
    let bundle = api.bundle().await.context("asking the proxy for the trust bundle")?;
    let max_wait = Duration::from_secs(a.max_wait);
    let (key, new_key) = agent_key(&a, &files)?;
    let (acr, oa, spec) = match &a.acr {
        Some(path) => premade_request(&a, path, &bundle.issuance_uri, &key, &files)?,
        None => {
            let spec = spec(&a)?;
            let nonce = api.nonce().await.context("asking the proxy for a nonce")?;
            let acr =
                build_acr(&key, &bundle.issuance_uri, Some(nonce), spec.clone(), ::agent::ACR_LIFETIME)?;
            (acr, None, spec)
        }
    };
    let cred = obtain(&api, &acr, oa.as_deref(), max_wait).await?;
    check_credential(&cred, &key, &spec.formats)?;
    if new_key {
        save_new_key(&files.key, &key)?;
    }
    let mut written = save_credential(&files, &cred)?;
    written.push(save_bundle(&files, &bundle)?);
    report(&cred, &files, &written);
    if !a.watch {
        return Ok(ExitCode::SUCCESS);
    }
    watch(&api, &key, spec, &files, cred, max_wait).await
}

/// The agent's key and whether it is new: new (never replacing an existing one), or the
/// existing one for a renewal or a pre-made ACR.
fn agent_key(a: &RequestArgs, files: &AgentFiles) -> anyhow::Result<(SoftwareKey, bool)> {
    if a.renew || a.acr.is_some() {
        return Ok((load_key(&files.key)?, false));
    }
    if files.key.exists() {
        bail!(
            "{} exists; refusing to replace an agent key (use --renew to renew with it, or another --out/--key)",
            files.key.display()
        );
    }
    let alg = if a.alg == "ed25519" { Algorithm::EdDsa } else { Algorithm::Es256 };
    Ok((SoftwareKey::generate(alg)?, true))
}

/// A pre-made request: the ACR at `path` (checked against the issuance URI `aud` and signed with
/// `key`), the OA of `--oa` if given, and the spec the ACR asks for.
fn premade_request(
    a: &RequestArgs,
    path: &Path,
    aud: &str,
    key: &SoftwareKey,
    files: &AgentFiles,
) -> anyhow::Result<(String, Option<String>, CredentialSpec)> {
    let text = String::from_utf8(crate::cli::input::read_input(&path.display().to_string())?)
        .context("the ACR is not text")?
        .trim()
        .to_string();
    let checked =
        verify_acr(&text, aud, unix_now()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if checked.spki_der != key.public_key_der() {
        bail!("{} was not signed with {}", path.display(), files.key.display());
    }
    let oa = match &a.oa {
        Some(p) => Some(
            String::from_utf8(crate::cli::input::read_input(&p.display().to_string())?)
                .context("the OA is not text")?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let spec = checked.claims.req.clone();
    Ok((text, oa, spec))
}

async fn obtain(
    api: &AgentApiClient,
    acr: &str,
    oa: Option<&str>,
    max_wait: Duration,
) -> anyhow::Result<Credential> {
    let mut progress = |id: &str, wait: Duration, elapsed: Duration| {
        eprintln!(
            "request {id} pending (owner decision); polling again in {} s ({} s elapsed, at most {} s)",
            wait.as_secs(),
            elapsed.as_secs(),
            max_wait.as_secs()
        );
    };
    Ok(api.obtain(acr, oa, max_wait, &mut progress).await?)
}

fn report(c: &Credential, files: &AgentFiles, written: &[PathBuf]) {
    println!("agent:    {}", c.agent_id);
    match &c.owner {
        Some(o) => println!("owner:    {o} (model {})", c.model),
        None => println!("owner:    none"),
    }
    println!("expires:  {}", shared::rfc3339::format_unix(c.not_after));
    if let Some(g) = c.grant_exp {
        println!("grant:    until {}", shared::rfc3339::format_unix(g));
    }
    println!("key:      {}", files.key.display());
    for w in written {
        println!("wrote:    {}", w.display());
    }
}

/// Renews at half-life forever: a new ACR with the same key, no owner approval.
async fn watch(
    api: &AgentApiClient,
    key: &SoftwareKey,
    spec: CredentialSpec,
    files: &AgentFiles,
    mut cred: Credential,
    max_wait: Duration,
) -> anyhow::Result<ExitCode> {
    let mut received = unix_now();
    let mut backoff = Duration::from_secs(5);
    loop {
        let at = ::agent::renew_at(received, cred.not_after);
        eprintln!("renewing at {} (half of the remaining life)", shared::rfc3339::format_unix(at));
        // Look at the wall clock every 30 s: a sleeping host does not advance timers.
        while unix_now() < at {
            tokio::time::sleep(Duration::from_secs((at - unix_now()).clamp(1, 30) as u64)).await;
        }
        let renewed = async {
            let bundle = api.bundle().await?;
            let nonce = api.nonce().await?;
            let acr = build_acr(key, &bundle.issuance_uri, Some(nonce), spec.clone(), ::agent::ACR_LIFETIME)?;
            let c = obtain(api, &acr, None, max_wait).await?;
            check_credential(&c, key, &spec.formats)?;
            anyhow::Ok(c)
        }
        .await;
        match renewed {
            Ok(c) => {
                let written = save_credential(files, &c)?;
                report(&c, files, &written);
                cred = c;
                received = unix_now();
                backoff = Duration::from_secs(5);
            }
            Err(e) => {
                let left = cred.not_after - unix_now();
                eprintln!(
                    "renewal failed: {e:#}; retrying in {} s ({left} s of validity left)",
                    backoff.as_secs()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// Model 1: write the key and an ACR without nonce (valid 10 minutes) for the owner to sign.
async fn write_offline_acr(a: &RequestArgs, files: &AgentFiles) -> anyhow::Result<ExitCode> {
    let spec = spec(a)?;
    if spec.model != Model::AgentMediated {
        bail!("--acr-out is for model 1: give --owner and --model agent-mediated");
    }
    let audience = match &a.trust_domain {
        Some(td) => format!("wimse://{td}"),
        None => {
            let api = AgentApiClient::new(endpoint(a)?, Duration::from_secs(a.timeout));
            api.bundle()
                .await
                .context("asking the proxy for the issuance URI (or give --trust-domain)")?
                .issuance_uri
        }
    };
    let key = if a.renew {
        load_key(&files.key)?
    } else {
        let alg = if a.alg == "ed25519" { Algorithm::EdDsa } else { Algorithm::Es256 };
        let key = SoftwareKey::generate(alg)?;
        save_new_key(&files.key, &key)?;
        key
    };
    let acr = build_acr(&key, &audience, None, spec, ACR_MAX_LIFE_OFFLINE)?;
    let out = a.acr_out.as_ref().context("--acr-out")?;
    std::fs::write(out, format!("{acr}\n")).with_context(|| format!("writing {}", out.display()))?;
    println!("key:      {}", files.key.display());
    println!("ACR:      {} (valid {} minutes, no nonce)", out.display(), ACR_MAX_LIFE_OFFLINE / 60);
    println!("acr_hash: {}", shared::agent::jwt::jwt_hash(&acr));
    println!(
        "next: the owner signs an approval over it (brski owner sign --dir OWNER_DIR --acr {} --out oa.jws),\n\
         then: brski agent request --acr {} --oa oa.jws --key {} --out {}",
        out.display(),
        out.display(),
        files.key.display(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
