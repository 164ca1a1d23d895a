//! The command-line surface: one subcommand per role or tool, each in its own module.

mod agent;
mod bench;
mod demo;
mod est;
mod est_serve;
mod input;
mod masa;
mod owner;
mod pledge;
mod pledge_serve;
mod registrar;
mod verify;
mod voucher;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// BRSKI (RFC 8995) and EST (RFC 7030) bootstrap stack with agent identity: MASA, registrar
/// (Identity Server), pledge (Identity Proxy), agents, owners and tools.
#[derive(Debug, Parser)]
#[command(name = "brski", version, propagate_version = true, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// Log as JSON lines instead of human-readable text (same as `--log-format json`).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Log format: `human` (default) or `json` (one JSON object per line).
    #[arg(long, global = true, value_parser = ["human", "json"], default_value = "human")]
    pub log_format: String,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  brski demo                                     MASA, registrar, pledge, agents and owners in one process, explained
  brski voucher inspect voucher.vcj              show the fields of a voucher (any format, unverified)
  brski voucher verify voucher.vcj --trust vendor-ca.pem --nonce -_XE9zK9q8Ll1qylMtLKeg
  brski voucher sign --in voucher.json --key file:masa.key --cert masa.pem --format jws > voucher.vjj
  brski est cacerts --server https://est.example:8443 --insecure-bootstrap --out ca.pem
  brski est enroll --server https://est.example:8443 --ca ca.pem --user dev --password s3cret \\
                   --subject CN=device-42 --san dns:device-42.campus --out-dir ./device-42";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole chain in one process on loopback and explain each step: MASA and registrar,
    /// a pledge's BRSKI bootstrap, the Identity Proxy, agent credentials with no owner and with
    /// each owner model, checked by a relying party.
    Demo(demo::DemoArgs),
    /// Inspect, verify and sign vouchers and voucher-requests (CMS, JWS or COSE).
    #[command(subcommand)]
    Voucher(voucher::VoucherCommand),
    /// A general EST client (RFC 7030) for any EST server, and an EST server (`est serve`).
    #[command(subcommand)]
    Est(est::EstCommand),
    /// The reference MASA: init, mint IDevIDs, record owners, serve vouchers and audit logs.
    #[command(subcommand)]
    Masa(masa::MasaCommand),
    /// The BRSKI registrar, domain EST CA and agent Identity Server: init, serve, list, approve,
    /// deny, agent grants/revoke.
    #[command(subcommand)]
    Registrar(registrar::RegistrarCommand),
    /// The pledge: bootstrap into a domain with the IDevID, status, and `serve` as the Identity
    /// Proxy (the Agent API).
    #[command(subcommand)]
    Pledge(pledge::PledgeCommand),
    /// An agent asks the local Identity Proxy for its identity (`agent request`).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Relying-party checks of agent credentials (`verify agent-cert|wit`).
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// The agent owner: init, sign (model 1), gateway (model 2), respond (model 3).
    #[command(subcommand)]
    Owner(owner::OwnerCommand),
    /// Load generators: `bench est` (any EST server), `bench brski`, `bench agent`.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the parsed command and returns the process exit code.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Voucher(c) => voucher::run(c),
        Command::Est(c) => est::run(c),
        Command::Masa(c) => masa::run(c),
        Command::Registrar(c) => registrar::run(c),
        Command::Pledge(c) => pledge::run(c),
        Command::Agent(c) => agent::run(c),
        Command::Verify(c) => verify::run(c),
        Command::Owner(c) => owner::run(c),
        Command::Bench(c) => bench::run(c),
    }
}

/// Sets up `tracing`: human-readable by default, JSON with `--log-json`; level from `-v` or
/// `RUST_LOG`. Logs go to stderr so command output on stdout stays clean. Colour only when
/// stderr is a terminal and `NO_COLOR` is unset or empty (no-color.org): a log written to a
/// file or a pipe carries no escape codes, and JSON lines never do.
pub(crate) fn init_logging(json: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::IsTerminal::is_terminal(&std::io::stderr())));
    if json {
        builder.json().with_ansi(false).init();
    } else {
        builder.init();
    }
}

/// Whether logs on a stream that `is_terminal` (or not) are coloured, `NO_COLOR` honoured.
fn colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
