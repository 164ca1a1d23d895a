//! `brski bench agent`: agent credentials per second through the Identity Proxy. Starts the
//! in-process lab (MASA, registrar with an agent policy), bootstraps one pledge, runs it as the
//! proxy on a Unix socket, then has agents obtain credentials concurrently: model `none`
//! (nonce, signed request, evidence, issuance of the certificate and WIT) or model 1 (requests
//! the owner approved before the clock started). Keys are generated before the clock starts.

use ::agent::{build_acr, AgentApiClient, Endpoint};
use anyhow::bail;
use brski::lab::{Lab, LabOptions};
use clap::Args;
use shared::agent::{CredentialSpec, Model};
use shared::keys::{Algorithm, SoftwareKey};
use shared::signed::Format;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct AgentBenchArgs {
    /// Concurrent agents.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Total credentials.
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// `none` (no owner) or `agent-mediated` (model 1, approvals signed before the clock starts).
    #[arg(long, default_value = "none", value_parser = ["none", "agent-mediated"])]
    model: String,
    /// Lab state directory (default: a new directory under the system temp dir, removed after).
    #[arg(long)]
    state: Option<PathBuf>,
}

/// One prepared request: the agent's request and, for model 1, the owner's approval.
struct Job {
    key: SoftwareKey,
    id: String,
    acr: Option<String>,
    oa: Option<String>,
}

/// Runs the benchmark: the lab and the proxy, the prepared agents, the timed run, the summary.
pub(super) async fn bench(a: AgentBenchArgs) -> anyhow::Result<ExitCode> {
    if a.count == 0 || a.concurrency == 0 {
        bail!("--count and --concurrency must be positive");
    }
    let (dir, remove) = match &a.state {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("brski-bench-agent-{}", std::process::id())), true),
    };
    let (lab, proxy, alice) = start_proxy(&dir, a.concurrency).await?;
    let client = Arc::new(AgentApiClient::new(Endpoint::Unix(proxy.socket.clone()), Duration::from_secs(30)));
    let aud = client.bundle().await?.issuance_uri;
    let model1 = a.model == "agent-mediated";
    eprintln!(
        "preparing {} agents (keys{}) ...",
        a.count,
        if model1 { ", requests and owner approvals" } else { "" }
    );
    let jobs = prepare(a.count, model1, &aud, &alice)?;
    eprintln!(
        "{} credentials (model {}), {} at a time, through {} ...",
        a.count,
        a.model,
        a.concurrency,
        proxy.socket.display()
    );
    let (tally, elapsed) = run(jobs, a.concurrency, &client, &aud).await?;
    drop(proxy);
    drop(lab);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut lat = tally.latencies.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?.clone();
    let failures = tally.failures.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?.clone();
    println!("{}", super::report::summary("credentials", &mut lat, elapsed, failures.len()));
    if let Some(first) = failures.first() {
        eprintln!("first failure: {first}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The lab in `dir` (MASA, registrar with the demo's agent policy) and one bootstrapped pledge
/// serving as the Identity Proxy, with room for `concurrency` connections; also alice's owner
/// directory (model 1 approvals).
async fn start_proxy(
    dir: &std::path::Path,
    concurrency: usize,
) -> anyhow::Result<(Lab, pledge::RunningProxy, PathBuf)> {
    let alice = crate::cli::demo::owner_dir(dir, "alice", crate::cli::demo::ALICE)?;
    let gateway = crate::cli::demo::owner_dir(dir, "gateway", crate::cli::demo::GATEWAY)?;
    let options = LabOptions {
        agent_policy: Some(crate::cli::demo::policy(&alice, &gateway)),
        ..LabOptions::default()
    };
    let lab = Lab::start(&dir.join("lab"), options).await.map_err(anyhow::Error::msg)?;
    let (cfg, id) = lab.pledge("bench-proxy", Format::Cms).await.map_err(anyhow::Error::msg)?;
    pledge::bootstrap(&cfg, &id).await?;
    let mut pcfg = pledge::ProxyConfig::in_dir(&cfg.state);
    pcfg.registrar = Some(lab.registrar_url.clone());
    pcfg.max_connections = concurrency.max(64);
    let proxy = pledge::start_proxy(&pcfg, None).await?;
    Ok((lab, proxy, alice))
}

/// What the workers recorded: the latency of each credential, and each failure.
struct Tally {
    /// One entry per credential obtained.
    latencies: Mutex<Vec<Duration>>,
    /// `agent id: error` per failed request.
    failures: Mutex<Vec<String>>,
}

/// The timed part: `concurrency` workers take jobs until none is left; returns what they
/// recorded and the wall-clock time.
async fn run(
    jobs: Vec<Job>,
    concurrency: usize,
    client: &Arc<AgentApiClient>,
    aud: &str,
) -> anyhow::Result<(Arc<Tally>, Duration)> {
    let tally = Arc::new(Tally {
        latencies: Mutex::new(Vec::with_capacity(jobs.len())),
        failures: Mutex::new(Vec::new()),
    });
    let queue = Arc::new(Mutex::new(jobs));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (queue, tally, client, aud) = (queue.clone(), tally.clone(), client.clone(), aud.to_string());
            tokio::spawn(async move {
                loop {
                    let Some(job) = queue.lock().ok().and_then(|mut q| q.pop()) else { return };
                    let t = Instant::now();
                    match one(&client, &aud, &job).await {
                        Ok(()) => tally.latencies.lock().map(|mut l| l.push(t.elapsed())).unwrap_or(()),
                        Err(e) => tally
                            .failures
                            .lock()
                            .map(|mut f| f.push(format!("{}: {e}", job.id)))
                            .unwrap_or(()),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    Ok((tally, started.elapsed()))
}

/// The credential request of agent `id` (model 1: owned by alice).
fn spec(id: &str, model1: bool) -> CredentialSpec {
    CredentialSpec {
        id: Some(id.to_string()),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 3600,
        owner: model1.then(|| crate::cli::demo::ALICE.to_string()),
        model: if model1 { Model::AgentMediated } else { Model::None },
    }
}

/// Keys for every agent; for model 1 also the offline requests and alice's approvals.
fn prepare(count: usize, model1: bool, aud: &str, alice: &std::path::Path) -> anyhow::Result<Vec<Job>> {
    let owner = owner::OwnerIdentity::load(alice)?;
    let opts = owner::SignOptions::default();
    (0..count)
        .map(|i| {
            let key = SoftwareKey::generate(Algorithm::Es256)?;
            let id = format!("wimse://{}/agent/bench-{i:06}", crate::cli::demo::TRUST_DOMAIN);
            let (acr, oa) = if model1 {
                let acr = build_acr(&key, aud, None, spec(&id, true), 600)?;
                let now = shared::agent::jwt::unix_now();
                let reviewed = owner::review(&owner, &acr, &opts, now)?;
                let oa = owner::sign(&owner, &reviewed, &opts, now)?;
                (Some(acr), Some(oa))
            } else {
                (None, None)
            };
            Ok(Job { key, id, acr, oa })
        })
        .collect()
}

/// One credential: (model none) nonce and signed request, then submission; the proxy adds
/// evidence and forwards; the answer must be a credential.
async fn one(client: &AgentApiClient, aud: &str, job: &Job) -> anyhow::Result<()> {
    let acr = match &job.acr {
        Some(a) => a.clone(),
        None => build_acr(&job.key, aud, Some(client.nonce().await?), spec(&job.id, false), 60)?,
    };
    match client.submit(&acr, job.oa.as_deref()).await? {
        ::agent::Submitted::Issued(c) if c.x509.is_some() && c.wit.is_some() => Ok(()),
        other => bail!("unexpected answer: {other:?}"),
    }
}
