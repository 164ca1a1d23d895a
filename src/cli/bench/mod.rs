//! `brski bench est|brski|agent`: load generators, one module each, and the one report line
//! they share.
//!
//! * `est`: enrollments against any EST server;
//! * `brski`: full bootstraps against the in-process lab;
//! * `agent`: agent credentials through the Identity Proxy;
//! * `report`: the summary line (rate and latency percentiles).

mod agent;
mod brski;
mod est;
mod report;

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum BenchCommand {
    /// Enrollment load against an EST server (simpleenroll).
    Est(est::EstBenchArgs),
    /// Full BRSKI bootstraps (voucher + EST) against an in-process MASA and registrar.
    Brski(brski::BrskiBenchArgs),
    /// Agent credentials through the Identity Proxy (model none or model 1).
    Agent(agent::AgentBenchArgs),
}

/// Runs one benchmark on a multi-threaded runtime.
pub(super) fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cmd {
        BenchCommand::Est(a) => rt.block_on(est::bench_est(a)),
        BenchCommand::Brski(a) => rt.block_on(brski::bench(a)),
        BenchCommand::Agent(a) => rt.block_on(agent::bench(a)),
    }
}
