//! `brski bench est`: a load generator for any EST server. CSRs are generated before the clock
//! starts; workers enroll over kept-alive connections or a new TLS connection per enrollment,
//! and the run reports enrollments per second and latency percentiles.

use super::report::summary;
use crate::cli::est::{client, CommonArgs};
use anyhow::{bail, Context};
use clap::Args;
use est::client::{Enrollment, EstClient};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// `brski bench est`: what to load and how hard (the help text is the variant's doc).
#[derive(Debug, Args)]
pub(crate) struct EstBenchArgs {
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

pub(super) async fn bench_est(a: EstBenchArgs) -> anyhow::Result<ExitCode> {
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
