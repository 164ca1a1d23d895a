//! `brski bench est`: a load generator for any EST server. CSRs are generated before the clock
//! starts; workers enroll over kept-alive connections or a new TLS connection per enrollment,
//! and the run reports enrollments per second and latency percentiles.

use super::est::{client, CommonArgs};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use est::client::{Enrollment, EstClient};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enrollment load against an EST server (simpleenroll).
    Est(EstBenchArgs),
    /// Full BRSKI bootstraps (voucher + EST) against an in-process MASA and registrar.
    Brski(super::bench_brski::BrskiBenchArgs),
    /// Agent credentials through the Identity Proxy (model none or model 1).
    Agent(super::bench_agent::AgentBenchArgs),
}

#[derive(Debug, Args)]
pub struct EstBenchArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Total enrollments.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Open a new TLS connection for every enrollment (default: keep-alive per worker).
    #[arg(long)]
    new_connection: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cmd {
        BenchCommand::Est(a) => rt.block_on(bench_est(a)),
        BenchCommand::Brski(a) => rt.block_on(super::bench_brski::bench(a)),
        BenchCommand::Agent(a) => rt.block_on(super::bench_agent::bench(a)),
    }
}

/// Shared state of one run.
struct Run {
    client: EstClient,
    csrs: Vec<Vec<u8>>,
    next: AtomicUsize,
    failures: AtomicUsize,
    first_error: Mutex<Option<String>>,
    latencies: Mutex<Vec<Duration>>,
    new_connection: bool,
}

async fn bench_est(a: EstBenchArgs) -> anyhow::Result<ExitCode> {
    if a.count == 0 || a.concurrency == 0 {
        bail!("--count and --concurrency must be positive");
    }
    eprintln!("generating {} P-256 keys and CSRs ...", a.count);
    let csrs = (0..a.count)
        .map(|i| {
            let key = SoftwareKey::generate(Algorithm::Es256)?;
            Ok(pki::build_csr(&pki::parse_name(&format!("CN=bench-{i}"))?, &[], &key)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let run = Arc::new(Run {
        client: client(&a.common, None)?,
        csrs,
        next: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        latencies: Mutex::new(Vec::with_capacity(a.count)),
        new_connection: a.new_connection,
    });
    let mode = if a.new_connection { "new connection per enrollment" } else { "keep-alive" };
    eprintln!("enrolling {} certificates with {} workers ({mode}) ...", a.count, a.concurrency);
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency).map(|_| tokio::spawn(worker(run.clone()))).collect();
    for w in workers {
        w.await.context("worker panicked")?;
    }
    report(&run, started.elapsed())
}

async fn worker(run: Arc<Run>) {
    let mut conn = None;
    loop {
        let i = run.next.fetch_add(1, Ordering::Relaxed);
        let Some(csr) = run.csrs.get(i) else { return };
        let t = Instant::now();
        if run.new_connection {
            conn = None;
        }
        let result = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(run.client.connect().await?),
            };
            c.simpleenroll(csr).await
        }
        .await;
        match result {
            Ok(Enrollment::Done(_)) => run.latencies.lock().map(|mut l| l.push(t.elapsed())).unwrap_or(()),
            Ok(Enrollment::Pending { .. }) => {
                fail(&run, "server answered 202 (pending); bench needs auto-approval".into(), &mut conn)
            }
            Err(e) => fail(&run, e.to_string(), &mut conn),
        }
    }
}

fn fail(run: &Run, msg: String, conn: &mut Option<est::client::EstConnection>) {
    run.failures.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut first) = run.first_error.lock() {
        first.get_or_insert(msg);
    }
    *conn = None;
}

fn report(run: &Run, elapsed: Duration) -> anyhow::Result<ExitCode> {
    let mut lat = run.latencies.lock().map_err(|_| anyhow::anyhow!("latency lock poisoned"))?.clone();
    let failures = run.failures.load(Ordering::Relaxed);
    println!("{}", summary("enrollments", &mut lat, elapsed, failures));
    if failures > 0 {
        let first = run.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
        eprintln!("first failure: {first}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: how many `noun` succeeded in `elapsed`, the rate, p50/p99/max latency, failures.
pub(super) fn summary(noun: &str, lat: &mut [Duration], elapsed: Duration, failures: usize) -> String {
    lat.sort();
    let ok = lat.len();
    let pct =
        |p: f64| lat.get(((ok as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{ok} {noun} in {:.2}s: {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failures} failed",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(lat.last().copied().unwrap_or_default())
    )
}
