//! `brski bench brski`: full bootstraps per second. Starts an in-process lab (MASA and
//! registrar as TLS servers on loopback), mints the pledges before the clock starts, then runs
//! complete bootstraps (voucher from the MASA, voucher_status, audit log, EST enrollment,
//! enrollstatus) with the given concurrency and reports bootstraps/s and latency percentiles.

use anyhow::bail;
use brski::lab::{Lab, LabOptions};
use clap::Args;
use shared::signed::Format;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct BrskiBenchArgs {
    /// Concurrent pledges.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Total bootstraps.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Voucher format: cms, jws or cose.
    #[arg(long, default_value = "cms", value_parser = |s: &str| Format::from_name(s).ok_or("cms, jws or cose"))]
    format: Format,
    /// Lab state directory (default: a new directory under the system temp dir, removed after).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Where the simulated pledges keep their state (IDevID, LDevID key, certificates, voucher):
    /// they stand for separate devices, whose storage is not the servers'. Default: a new
    /// directory on the RAM file system /dev/shm when there is one (removed after), else
    /// `pledges/` in the lab directory. The MASA's and registrar's databases stay in the lab
    /// directory either way.
    #[arg(long)]
    pledge_state: Option<PathBuf>,
}

/// Runs the benchmark.
pub(super) async fn bench(a: BrskiBenchArgs) -> anyhow::Result<ExitCode> {
    if a.count == 0 || a.concurrency == 0 {
        bail!("--count and --concurrency must be positive");
    }
    let (dir, remove) = match &a.state {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("brski-bench-{}", std::process::id())), true),
    };
    let (pledge_dir, remove_pledges) = pledge_dir(&a);
    // Removed however the run ends (an error below returns early).
    let _cleanup = RemoveOnDrop([remove.then(|| dir.clone()), pledge_dir.clone().filter(|_| remove_pledges)]);
    let options = LabOptions { pledge_dir: pledge_dir.clone(), ..LabOptions::default() };
    let lab = Lab::start(&dir, options).await.map_err(anyhow::Error::msg)?;
    eprintln!("lab: MASA {} and registrar {} (state {})", lab.masa_addr, lab.registrar_url, dir.display());
    let pledges_at = pledge_dir.clone().unwrap_or_else(|| dir.join("pledges"));
    eprintln!("pledges' state (simulated devices): {}", pledges_at.display());
    eprintln!("minting {} IDevIDs ...", a.count);
    let mut pledges = Vec::with_capacity(a.count);
    for i in 0..a.count {
        pledges.push(lab.pledge(&format!("bench-{i:06}"), a.format).await.map_err(anyhow::Error::msg)?);
    }
    let queue = Arc::new(std::sync::Mutex::new(pledges));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(a.count)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    eprintln!("bootstrapping {} pledges, {} at a time ({} vouchers) ...", a.count, a.concurrency, a.format);
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (queue, latencies, failures) = (queue.clone(), latencies.clone(), failures.clone());
            tokio::spawn(async move {
                loop {
                    let Some((cfg, id)) = queue.lock().ok().and_then(|mut q| q.pop()) else { return };
                    let t = Instant::now();
                    match pledge::bootstrap(&cfg, &id).await {
                        Ok(_) => latencies.lock().map(|mut l| l.push(t.elapsed())).unwrap_or(()),
                        Err(e) => {
                            failures.lock().map(|mut f| f.push(format!("{}: {e}", id.serial))).unwrap_or(())
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed();
    drop(lab);
    let mut lat = latencies.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?.clone();
    let failures = failures.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?.clone();
    report(&mut lat, &failures, elapsed)
}

/// Directories removed when dropped.
struct RemoveOnDrop([Option<PathBuf>; 2]);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for d in self.0.iter().flatten() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The pledges' state directory and whether to remove it after: `--pledge-state`, else a new
/// directory on /dev/shm when that is a writable directory, else none (the lab's `pledges/`).
fn pledge_dir(a: &BrskiBenchArgs) -> (Option<PathBuf>, bool) {
    if let Some(p) = &a.pledge_state {
        return (Some(p.clone()), false);
    }
    let shm = std::path::Path::new("/dev/shm");
    let dir = shm.join(format!("brski-bench-pledges-{}", std::process::id()));
    if shm.is_dir() && std::fs::create_dir(&dir).is_ok() {
        (Some(dir), true)
    } else {
        (None, false)
    }
}

fn report(lat: &mut [Duration], failures: &[String], elapsed: Duration) -> anyhow::Result<ExitCode> {
    println!("{}", super::report::summary("bootstraps", lat, elapsed, failures.len()));
    if let Some(first) = failures.first() {
        eprintln!("first failure: {first}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
