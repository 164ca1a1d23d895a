//! `brski owner init|sign|respond|gateway`: the agent owner's tools (models 1, 2 and 3 of
//! docs/agent-issuance.md). The work is in the `owner` crate; this file parses flags, asks
//! the person and prints.

use clap::{Args, Subcommand};
use owner::OwnerIdentity;
use owner::{approval_summary as summary, review, sign, SignOptions};
use owner::{challenge_summary, respond, Decider, Decision, Outcome, OutcomeKind};
use owner::{init, InitOptions};
use owner::{GatewayOptions, PendingDir};
use shared::agent::challenge::Challenge;
use shared::agent::jwt::unix_now;
use shared::keys::Algorithm;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(super) enum OwnerCommand {
    /// Create an owner directory: owner.key (0600) or an existing key (--key URI), a
    /// self-signed owner.pem with the owner id as URI SAN, owner-public.pem and owner.toml;
    /// print the [[owner]] policy entry.
    Init(InitArgs),
    /// Model 1: review an agent's ACR and sign an owner approval (OA) over it.
    Sign(SignArgs),
    /// Model 3: answer the Identity Server's owner challenges (poll over mTLS).
    Respond(RespondArgs),
    /// Model 2: the owner gateway service and its approval queue.
    #[command(subcommand)]
    Gateway(GatewayCommand),
}

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// Owner directory (created).
    #[arg(long)]
    dir: PathBuf,
    /// Owner id, e.g. mailto:alice@example.com or https://gateway.example.org.
    #[arg(long)]
    id: String,
    /// Key id the Identity Server knows the key by (default: owner-<thumbprint prefix>).
    #[arg(long)]
    kid: Option<String>,
    /// Algorithm of the generated owner.key: p256 or ed25519.
    #[arg(long, default_value = "p256", value_parser = parse_alg)]
    alg: Algorithm,
    /// Use this existing P-256 or Ed25519 key instead of generating owner.key: a key URI,
    /// e.g. pkcs11:token=owner;object=owner-key;type=private?pin-source=file:/etc/brski/owner.pin
    /// (RFC 7512) or file:<path> (relative to the current directory). Written to owner.toml
    /// as `key`.
    #[arg(long, value_name = "URI", conflicts_with = "alg")]
    key: Option<String>,
    /// Trust domain, e.g. campus.example (written to owner.toml).
    #[arg(long)]
    trust_domain: Option<String>,
    /// Identity Server URL (written to owner.toml).
    #[arg(long)]
    server: Option<String>,
    /// Domain CA PEM file (written to owner.toml).
    #[arg(long)]
    domain_ca: Option<String>,
    /// Validity of owner.pem in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=3650))]
    days: u64,
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    match Algorithm::from_cli_name(s) {
        Some(a @ (Algorithm::Es256 | Algorithm::EdDsa)) => Ok(a),
        _ => Err("p256 or ed25519".into()),
    }
}

#[derive(Debug, Args)]
pub(super) struct SignArgs {
    /// Owner directory.
    #[arg(long)]
    dir: PathBuf,
    /// The agent's ACR (compact JWS) file, or - for stdin.
    #[arg(long)]
    acr: PathBuf,
    /// ACR audience (default: wimse://<trust_domain> from owner.toml).
    #[arg(long)]
    audience: Option<String>,
    /// Renewals with the same agent key reuse this approval for N days (max 30).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=30))]
    grant_days: u64,
    /// Largest credential lifetime allowed, in seconds.
    #[arg(long)]
    max_ttl: Option<u64>,
    /// Formats allowed (comma separated: x509,wit).
    #[arg(long, value_delimiter = ',')]
    formats: Option<Vec<String>>,
    /// Sign without asking.
    #[arg(long)]
    yes: bool,
    /// Write the OA here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct RespondArgs {
    /// Owner directory.
    #[arg(long)]
    dir: PathBuf,
    /// Identity Server URL (default: server in owner.toml).
    #[arg(long)]
    server: Option<String>,
    /// Domain CA PEM (default: domain_ca in owner.toml).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Keep polling.
    #[arg(long)]
    watch: bool,
    /// Polling interval in seconds with --watch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=300))]
    interval: u64,
    /// Stop watching after this many seconds.
    #[arg(long)]
    max_time: Option<u64>,
    /// Approve every challenge that verifies (a policy engine, not a person).
    #[arg(long, conflicts_with = "deny")]
    approve_all: bool,
    /// Answer none (each request fails when its challenge expires).
    #[arg(long)]
    deny: bool,
    /// Grant lifetime in days for approvals (max 30).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=30))]
    grant_days: u64,
    /// Largest credential lifetime allowed, in seconds.
    #[arg(long)]
    max_ttl: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(super) enum GatewayCommand {
    /// Serve the gateway (mTLS for proxies' LDevIDs).
    Serve(ServeArgs),
    /// List requests waiting for a decision.
    List(DirArgs),
    /// Approve a waiting request.
    Approve(DecideArgs),
    /// Deny a waiting request.
    Deny(DecideArgs),
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Owner directory (the gateway's identity and [gateway] rules).
    #[arg(long)]
    dir: PathBuf,
    /// Listen address (default: [gateway] listen).
    #[arg(long)]
    listen: Option<String>,
    /// Identity Server URL (default: server in owner.toml).
    #[arg(long)]
    server: Option<String>,
    /// Domain CA PEM (default: domain_ca in owner.toml).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Requests per second per proxy, e.g. 5 or 5/s.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u32>,
    /// Requests in flight or waiting, at most.
    #[arg(long)]
    queue: Option<usize>,
    /// Every request waits for `brski owner gateway approve|deny`.
    #[arg(long)]
    manual: bool,
}

fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.trim().trim_end_matches("/s").parse::<u32>().map_err(|_| "N or N/s".to_string())?;
    if n == 0 {
        return Err("must be positive".into());
    }
    Ok(n)
}

#[derive(Debug, Args)]
pub(super) struct DirArgs {
    /// Owner directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct DecideArgs {
    /// Owner directory.
    #[arg(long)]
    dir: PathBuf,
    /// The request id (from `gateway list`).
    id: String,
}

/// Runs an owner command.
pub(super) fn run(cmd: OwnerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OwnerCommand::Init(a) => run_init(a),
        OwnerCommand::Sign(a) => run_sign(a),
        OwnerCommand::Respond(a) => tokio::runtime::Runtime::new()?.block_on(run_respond(a)),
        OwnerCommand::Gateway(GatewayCommand::Serve(a)) => {
            tokio::runtime::Runtime::new()?.block_on(run_serve(a))
        }
        OwnerCommand::Gateway(GatewayCommand::List(a)) => run_list(&a.dir),
        OwnerCommand::Gateway(GatewayCommand::Approve(a)) => run_decide(&a, true),
        OwnerCommand::Gateway(GatewayCommand::Deny(a)) => run_decide(&a, false),
    }
}

fn run_init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let r = init(&InitOptions {
        dir: a.dir,
        id: a.id,
        kid: a.kid,
        alg: a.alg,
        key: a.key,
        trust_domain: a.trust_domain,
        server: a.server,
        domain_ca: a.domain_ca,
        validity: Duration::from_secs(a.days * 86400),
    })?;
    println!("owner created (kid {}, key {})", r.kid, r.key_uri);
    for f in &r.files {
        println!("  {}", f.display());
    }
    println!("  owner.pem sha256 (b64url, proxies pin the gateway by it): {}", r.cert_sha256);
    println!("\nProvision the owner at the Identity Server: add to agent-policy.toml\n");
    print!("{}", r.policy_snippet);
    Ok(ExitCode::SUCCESS)
}

fn read_acr(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().take(64 * 1024).read_to_string(&mut text)?;
    } else {
        let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(meta.len() <= 64 * 1024, "{}: larger than an ACR can be", path.display());
        text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(text.trim().to_string())
}

fn run_sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let me = OwnerIdentity::load(&a.dir)?;
    let acr_text = read_acr(&a.acr)?;
    let opts = SignOptions {
        audience: a.audience,
        grant_secs: Some(a.grant_days as i64 * 86400),
        max_ttl: a.max_ttl,
        formats: a.formats,
        valid_secs: None,
    };
    let now = unix_now();
    let acr = review(&me, &acr_text, &opts, now)?;
    eprint!("{}", summary(&acr, now));
    if !a.yes {
        anyhow::ensure!(
            a.acr != Path::new("-") && std::io::stdin().is_terminal(),
            "no terminal to confirm on: review the summary and pass --yes"
        );
        if !confirm("Sign an owner approval for this agent? [y/N] ")? {
            eprintln!("not signed");
            return Ok(ExitCode::FAILURE);
        }
    }
    let oa = sign(&me, &acr, &opts, unix_now())?;
    match &a.out {
        Some(p) => {
            std::fs::write(p, format!("{oa}\n")).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            eprintln!("OA written to {}", p.display());
        }
        None => println!("{oa}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(prompt: &str) -> anyhow::Result<bool> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().take(256).read_line(&mut line)?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Asks a person at the terminal; an unanswered prompt is skipped when the challenge expires.
struct Prompt {
    lines: mpsc::Receiver<String>,
}

impl Prompt {
    fn new() -> Self {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Prompt { lines }
    }
}

impl Decider for Prompt {
    fn decide(&mut self, ch: &Challenge) -> Decision {
        print!("{}Approve? [y/N] ", challenge_summary(&ch.claims.response_uri, ch));
        let _ = std::io::stdout().flush();
        let left = (ch.claims.exp - unix_now()).max(1) as u64;
        match self.lines.recv_timeout(Duration::from_secs(left)) {
            Ok(l) if matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes") => Decision::Approve,
            Ok(_) => Decision::Deny,
            Err(_) => Decision::Skip,
        }
    }
    fn report(&mut self, o: &Outcome) {
        print_outcome(o);
    }
}

/// A fixed decision, printing as it goes.
struct Fixed(Decision);

impl Decider for Fixed {
    fn decide(&mut self, ch: &Challenge) -> Decision {
        print!("{}", challenge_summary(&ch.claims.response_uri, ch));
        self.0
    }
    fn report(&mut self, o: &Outcome) {
        print_outcome(o);
    }
}

fn print_outcome(o: &Outcome) {
    let what = match &o.result {
        OutcomeKind::Approved => "approved; the server issues the credential".to_string(),
        OutcomeKind::Denied => "denied (not answered; the request fails when the challenge expires)".into(),
        OutcomeKind::Skipped => "skipped (no answer in time)".into(),
        OutcomeKind::Failed(Some(s), d) => format!("refused by the server ({s}): {d}"),
        OutcomeKind::Failed(None, d) => format!("failed: {d}"),
    };
    println!("{} {}: {what}", o.id, o.agent_id);
}

async fn run_respond(a: RespondArgs) -> anyhow::Result<ExitCode> {
    let me = OwnerIdentity::load(&a.dir)?;
    let opts = owner::RespondOptions {
        server: me.server(a.server.as_deref())?,
        ca: me.domain_ca(a.ca.as_deref())?,
        watch: a.watch,
        interval: Duration::from_secs(a.interval),
        max_duration: a.max_time.map(Duration::from_secs),
        grant_secs: a.grant_days as i64 * 86400,
        max_ttl: a.max_ttl,
    };
    let mut decider: Box<dyn Decider> = if a.approve_all {
        Box::new(Fixed(Decision::Approve))
    } else if a.deny {
        Box::new(Fixed(Decision::Deny))
    } else {
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "no terminal to ask on: pass --approve-all or --deny"
        );
        Box::new(Prompt::new())
    };
    let outcomes = respond(&me, &opts, decider.as_mut()).await?;
    if outcomes.is_empty() {
        println!("no pending challenges");
    }
    let failed = outcomes.iter().any(|o| matches!(o.result, OutcomeKind::Failed(..)));
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn run_serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let me = OwnerIdentity::load(&a.dir)?;
    let mut opts = GatewayOptions::from_owner(&me, a.server.as_deref(), a.ca.as_deref())?;
    opts.rate_per_sec = a.rate.unwrap_or(opts.rate_per_sec);
    opts.queue = a.queue.unwrap_or(opts.queue).max(1);
    opts.manual |= a.manual;
    let listen = a.listen.unwrap_or_else(|| me.config.gateway.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    println!("brski owner gateway on https://{addr} for {}", me.config.id);
    println!("  certificate sha256 (b64url, proxies pin it): {}", me.cert_hash());
    println!("  Identity Server: {}; manual approval: {}", opts.server, opts.manual);
    std::io::stdout().flush()?;
    owner::serve_gateway(me, opts, listener).await?;
    Ok(ExitCode::SUCCESS)
}

fn run_list(dir: &Path) -> anyhow::Result<ExitCode> {
    let list = PendingDir::of(dir).list()?;
    if list.is_empty() {
        println!("no requests waiting");
    }
    let now = unix_now();
    for r in list {
        println!(
            "{}  {}  {}  proxy {}  expires in {} s",
            r.id,
            r.status,
            r.agent_id,
            r.proxy_subject,
            r.acr_exp - now
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_decide(a: &DecideArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let r = PendingDir::of(&a.dir).decide(&a.id, approve)?;
    println!("{} {} ({}); the gateway acts when the proxy polls", r.id, r.status, r.agent_id);
    Ok(ExitCode::SUCCESS)
}
