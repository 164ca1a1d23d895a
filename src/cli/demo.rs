//! `brski demo`: the whole chain in one process on loopback, explained step by step.
//!
//! A reference MASA and a registrar (Identity Server) start on free ports; a factory-fresh
//! pledge bootstraps with BRSKI to an LDevID; it then serves the Agent API as the Identity
//! Proxy; agents obtain credentials with no owner and with each owner model (the owner signs
//! offline; the owner's gateway approves; the server challenges the owner); a relying party
//! checks every credential. The state directory is kept and reused by the next run.

use ::agent::{build_acr, AgentApiClient, Credential, Endpoint};
use anyhow::Context;
use brski::lab::{Lab, LabOptions};
use clap::Args;
use owner::OwnerIdentity;
use pledge::PledgeConfig;
use pledge::{ProxyConfig, RunningProxy};
use shared::agent::{
    verify_agent_certificate, verify_wit_credential, CredentialSpec, Model, OwnerAnchor, OwnerAnchors,
    RelyingTrust,
};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::signed::Format;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The demo's trust domain.
pub(super) const TRUST_DOMAIN: &str = "campus.example";
/// The owner of models 1 and 3.
pub(super) const ALICE: &str = "mailto:alice@campus.example";
/// The owner gateway of model 2.
pub(super) const GATEWAY: &str = "https://gateway.research.campus.example";

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// State directory (default: `brski-demo` in the system temporary directory). A second run
    /// reuses it: same CAs and keys, a new pledge.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Voucher format for the bootstrap.
    #[arg(long, default_value = "cms", value_parser = ["cms", "jws", "cose"])]
    format: String,
    /// Leave the servers running and print how to talk to them.
    #[arg(long)]
    keep_running: bool,
}

pub(super) fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = a.state.clone().unwrap_or_else(|| std::env::temp_dir().join("brski-demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(demo(&dir, &a))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a step header and measures it.
struct Step(Instant);

impl Step {
    fn start(n: u32, title: &str) -> Step {
        println!("\n== {n}. {title} ==");
        Step(Instant::now())
    }

    fn done(self, what: &str) {
        println!("   ✓ {what} ({:.1} ms)", self.0.elapsed().as_secs_f64() * 1000.0);
    }
}

/// Runs the nine steps in order, then lists the artifacts (and, with `--keep-running`, waits).
async fn demo(dir: &Path, a: &DemoArgs) -> anyhow::Result<()> {
    let format = match a.format.as_str() {
        "jws" => Format::Jws,
        "cose" => Format::Cose,
        _ => Format::Cms,
    };
    println!("brski demo: state in {} (kept; a second run reuses it)", dir.display());
    let (alice, gateway) = owners_step(dir)?;
    let lab = servers_step(dir, &alice, &gateway).await?;
    let serial = next_serial(&lab.dir);
    let cfg = bootstrap_step(&lab, &serial, format).await?;
    let (proxy, gateway_task) = proxy_step(&lab, &gateway, &cfg).await?;

    let client = AgentApiClient::new(Endpoint::Unix(proxy.socket.clone()), Duration::from_secs(30));
    let bundle = client.bundle().await?;
    let trust = relying_trust(&lab, &bundle.jwks, &alice, &gateway)?;
    let agents = dir.join("agents").join(&serial);
    let run = AgentRun { client: &client, aud: &bundle.issuance_uri, dir: &agents, trust: &trust };
    no_owner_step(&run).await?;
    owner_signs_step(&run, &alice).await?;
    server_challenges_step(&run, &alice, &lab).await?;
    gateway_approves_step(&run).await?;
    metrics_step(&lab, &proxy).await?;

    println!("\nArtifacts:");
    println!("   state            {}", dir.display());
    println!("   domain CA        {}", lab.registrar.config().state.join("domain-ca.pem").display());
    println!("   pledge           {}", cfg.state.display());
    println!("   agent files      {}", agents.display());
    if a.keep_running {
        keep_running(&lab, &proxy, &cfg.state).await;
    }
    gateway_task.abort();
    Ok(())
}

/// Step 1: the two owners' directories (made by the first run, reused after).
fn owners_step(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let s = Step::start(1, "owners: alice (a person's key) and the research gateway (an organization)");
    let alice = owner_dir(dir, "alice", ALICE)?;
    let gateway = owner_dir(dir, "gateway", GATEWAY)?;
    s.done(&format!("owner keys in {} and {}", alice.display(), gateway.display()));
    Ok((alice, gateway))
}

/// Step 2: the MASA and the registrar, with the agent policy naming both owners.
async fn servers_step(dir: &Path, alice: &Path, gateway: &Path) -> anyhow::Result<Lab> {
    let s = Step::start(2, "MASA (manufacturer) and registrar (Identity Server) on loopback");
    let options = LabOptions { agent_policy: Some(policy(alice, gateway)), ..LabOptions::default() };
    let lab = Lab::start(&dir.join("lab"), options).await.map_err(anyhow::Error::msg)?;
    println!("   MASA      https://{}", lab.masa_addr);
    println!("   registrar {} (BRSKI, EST and the agent API on one TLS port)", lab.registrar_url);
    s.done("both serving");
    Ok(lab)
}

/// Step 3: a new pledge `serial` bootstraps with BRSKI to an LDevID; returns its configuration.
async fn bootstrap_step(lab: &Lab, serial: &str, format: Format) -> anyhow::Result<PledgeConfig> {
    let s =
        Step::start(3, &format!("a factory-fresh pledge {serial} bootstraps with BRSKI ({format} voucher)"));
    let (cfg, id) = lab.pledge(serial, format).await.map_err(anyhow::Error::msg)?;
    println!("   IDevID minted by the MASA: {}", cfg.state.join("idevid.pem").display());
    let out = pledge::bootstrap(&cfg, &id).await?;
    println!(
        "   voucher verified and stored: {}",
        out.files.voucher.as_deref().unwrap_or(Path::new("-")).display()
    );
    println!("   LDevID from the domain CA over EST (tls-exporter bound): {}", out.files.cert.display());
    s.done("pledge enrolled");
    Ok(cfg)
}

/// Step 4: the research gateway starts, and the enrolled pledge serves the Agent API as the
/// Identity Proxy (upstream: the registrar; model 2: the pinned gateway).
async fn proxy_step(
    lab: &Lab,
    gateway: &Path,
    cfg: &PledgeConfig,
) -> anyhow::Result<(RunningProxy, tokio::task::JoinHandle<()>)> {
    let s =
        Step::start(4, "the research gateway (model 2 owner) starts; the pledge becomes the Identity Proxy");
    let (gateway_url, gateway_pin, gateway_task) = start_gateway(gateway, lab).await?;
    println!("   gateway {gateway_url} (organization certificate pinned by the proxy)");
    let mut pcfg = ProxyConfig::in_dir(&cfg.state);
    pcfg.registrar = Some(lab.registrar_url.clone());
    pcfg.gateway = Some((gateway_url, gateway_pin));
    let proxy: RunningProxy = pledge::start_proxy(&pcfg, None).await?;
    println!("   socket {}", proxy.socket.display());
    s.done("proxy serving");
    Ok((proxy, gateway_task))
}

/// What the agent steps (5 to 8) share.
struct AgentRun<'a> {
    /// The Agent API client on the proxy's socket.
    client: &'a AgentApiClient,
    /// The issuance URI (the audience of every agent request).
    aud: &'a str,
    /// Where each agent's files go (one directory per agent).
    dir: &'a Path,
    /// What the relying party that checks each credential trusts.
    trust: &'a RelyingTrust,
}

impl AgentRun<'_> {
    /// Obtains the credential of agent `name` (see [`agent`]).
    async fn agent(
        &self,
        name: &str,
        model: Model,
        owner: Option<&str>,
        approve: impl FnOnce(&str) -> anyhow::Result<Option<String>>,
    ) -> anyhow::Result<Credential> {
        agent(self.client, self.aud, self.dir, name, model, owner, approve).await
    }
}

/// Step 5: an agent credential with no owner.
async fn no_owner_step(run: &AgentRun<'_>) -> anyhow::Result<()> {
    let s = Step::start(5, "agent 1: a credential with no owner");
    let c = run.agent("assistant", Model::None, None, |_| Ok(None)).await?;
    report(&c, run.trust)?;
    s.done("issued and verified");
    Ok(())
}

/// Step 6, model 1: alice reviews and signs the agent's request offline.
async fn owner_signs_step(run: &AgentRun<'_>, alice: &Path) -> anyhow::Result<()> {
    let s = Step::start(6, "agent 2, model 1: the owner signs the agent's request offline");
    let owner = OwnerIdentity::load(alice)?;
    let c = run
        .agent("planner", Model::AgentMediated, Some(ALICE), |acr| {
            let now = shared::agent::jwt::unix_now();
            let opts = owner::SignOptions::default();
            let reviewed = owner::review(&owner, acr, &opts, now)?;
            Ok(Some(owner::sign(&owner, &reviewed, &opts, now)?))
        })
        .await?;
    report(&c, run.trust)?;
    s.done("issued with alice's approval, verified");
    Ok(())
}

/// Step 7, model 3: the server challenges alice, whose responder answers.
async fn server_challenges_step(run: &AgentRun<'_>, alice: &Path, lab: &Lab) -> anyhow::Result<()> {
    let s = Step::start(7, "agent 3, model 3: the server challenges the owner, who answers");
    let responder = spawn_responder(alice, lab);
    let c = run.agent("researcher", Model::ServerMediated, Some(ALICE), |_| Ok(None)).await?;
    let _ = responder.join();
    report(&c, run.trust)?;
    s.done("issued after alice answered the challenge, verified");
    Ok(())
}

/// Step 8, model 2: the proxy asks the owner's gateway, which approves after its policy check.
async fn gateway_approves_step(run: &AgentRun<'_>) -> anyhow::Result<()> {
    let s = Step::start(8, "agent 4, model 2: the owner's gateway approves after its policy check");
    let c = run.agent("lab-assistant", Model::OwnerMediated, Some(GATEWAY), |_| Ok(None)).await?;
    report(&c, run.trust)?;
    s.done("issued through the gateway (proxy -> gateway -> server), verified");
    Ok(())
}

/// Step 9: the counters of the registrar, the MASA and the proxy.
async fn metrics_step(lab: &Lab, proxy: &RunningProxy) -> anyhow::Result<()> {
    let s = Step::start(9, "the metrics of the registrar, the MASA and the proxy");
    print_metrics(lab).await?;
    for line in proxy.proxy.metrics().render().lines().filter(|l| l.starts_with("brski_requests_total")) {
        println!("   {line}");
    }
    s.done("counters above");
    Ok(())
}

/// Creates (or reuses) an owner directory.
pub(super) fn owner_dir(dir: &Path, name: &str, id: &str) -> anyhow::Result<PathBuf> {
    let d = dir.join("owners").join(name);
    if !d.join(owner::CONFIG_FILE).exists() {
        owner::init(&owner::InitOptions {
            dir: d.clone(),
            id: id.into(),
            kid: Some(format!("{name}-1")),
            alg: Algorithm::Es256,
            key: None,
            trust_domain: Some(TRUST_DOMAIN.into()),
            server: None,
            domain_ca: None,
            validity: Duration::from_secs(365 * 86400),
        })?;
    }
    Ok(d)
}

/// The agent policy: any proxy may ask for `agent/*`; alice owns them with models 1 and 3; the
/// gateway owns them with model 2.
pub(super) fn policy(alice: &Path, gateway: &Path) -> String {
    let key = |d: &Path| shared::conf::toml_string(&d.join(owner::PUBLIC_FILE).display().to_string());
    format!(
        "trust_domain = \"{TRUST_DOMAIN}\"\nmax_ttl_secs = 3600\nsubject_template = \"CN={{name}},O={{org}},OU={{unit}}\"\n\n\
         [[proxy]]\nserial = \"*\"\nagents = [\"wimse://{TRUST_DOMAIN}/agent/*\"]\n\n\
         [[owner]]\nid = \"{ALICE}\"\nkid = \"alice-1\"\nkey = {}\nagents = [\"wimse://{TRUST_DOMAIN}/agent/*\"]\n\
         models = [\"agent-mediated\", \"server-mediated\"]\norganization = \"Campus\"\nunit = \"Research\"\n\n\
         [[owner]]\nid = \"{GATEWAY}\"\nkid = \"gateway-1\"\nkey = {}\nagents = [\"wimse://{TRUST_DOMAIN}/agent/*\"]\n\
         models = [\"owner-mediated\"]\n",
        key(alice),
        key(gateway)
    )
}

/// The first `demo-NNNN` serial not used by an earlier run.
fn next_serial(lab_dir: &Path) -> String {
    (1..)
        .map(|n| format!("demo-{n:04}"))
        .find(|s| !lab_dir.join("pledges").join(s).exists())
        .unwrap_or_default()
}

/// What a relying party trusts: the domain CA, the WIT keys, the two owners' keys.
fn relying_trust(
    lab: &Lab,
    jwks: &serde_json::Value,
    alice: &Path,
    gateway: &Path,
) -> anyhow::Result<RelyingTrust> {
    let anchor = |d: &Path, id: &str, kid: &str| -> anyhow::Result<OwnerAnchor> {
        let o = OwnerIdentity::load(d)?;
        Ok(OwnerAnchor { owner: id.into(), kid: kid.into(), spki_der: o.key.public_key_der() })
    };
    Ok(RelyingTrust {
        domain_anchors: vec![lab.registrar.domain_ca().clone()],
        wit_keys: shared::agent::wit::keys_from_jwks(jwks)?,
        owner_anchors: OwnerAnchors::new(vec![
            anchor(alice, ALICE, "alice-1")?,
            anchor(gateway, GATEWAY, "gateway-1")?,
        ]),
        trust_domain: Some(TRUST_DOMAIN.into()),
        at: time::OffsetDateTime::now_utc(),
    })
}

/// One agent: makes its key in-process, asks the proxy for a nonce, signs its request (the
/// owner may add an approval), obtains the credential (polling while the owner decides) and
/// writes its files.
async fn agent(
    client: &AgentApiClient,
    aud: &str,
    dir: &Path,
    name: &str,
    model: Model,
    owner: Option<&str>,
    approve: impl FnOnce(&str) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<Credential> {
    let key = SoftwareKey::generate(Algorithm::Es256)?;
    let id = format!("wimse://{TRUST_DOMAIN}/agent/{name}");
    let spec = CredentialSpec {
        id: Some(id.clone()),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 3600,
        owner: owner.map(str::to_string),
        model,
    };
    let offline = model == Model::AgentMediated;
    let nonce = if offline { None } else { Some(client.nonce().await?) };
    let acr = build_acr(&key, aud, nonce, spec, if offline { 300 } else { 60 })?;
    let oa = approve(&acr)?;
    println!("   agent {id}: key generated in-process (it never leaves), request signed");
    let mut progress = |id: &str, wait: Duration, _: Duration| {
        println!("   pending {id}: the owner decides; polling again in {} s", wait.as_secs());
    };
    let c = client.obtain(&acr, oa.as_deref(), Duration::from_secs(60), &mut progress).await?;
    let files = ::agent::AgentFiles::in_dir(&dir.join(name), None);
    std::fs::create_dir_all(dir.join(name))?;
    ::agent::save_new_key(&files.key, &key)?;
    for p in ::agent::save_credential(&files, &c)? {
        println!("   wrote {}", p.display());
    }
    Ok(c)
}

/// Starts the research gateway on a free loopback port; returns its URL, the SHA-256 of its
/// certificate (the proxy pins it) and the task.
async fn start_gateway(
    dir: &Path,
    lab: &Lab,
) -> anyhow::Result<(String, [u8; 32], tokio::task::JoinHandle<()>)> {
    let owner = OwnerIdentity::load(dir)?;
    let pin = shared::crypto::sha256(&shared::pki::cert_to_der(&owner.cert)?);
    let opts = owner::GatewayOptions {
        server: lab.registrar_url.clone(),
        ca: vec![lab.registrar.domain_ca().clone()],
        issuance_uri: format!("wimse://{TRUST_DOMAIN}"),
        agents: vec![format!("wimse://{TRUST_DOMAIN}/agent/*")],
        rate_per_sec: 100,
        queue: 64,
        manual: false,
        max_ttl: None,
        grant_secs: 86400,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        if let Err(e) = owner::serve_gateway(owner, opts, listener).await {
            eprintln!("   the gateway stopped: {e}");
        }
    });
    Ok((url, pin, task))
}

/// Verifies a credential as a relying party would and prints who it names.
fn report(c: &Credential, trust: &RelyingTrust) -> anyhow::Result<()> {
    let pem = c.x509.as_deref().context("no certificate issued")?;
    let cert = shared::pki::cert_from_pem(pem)?;
    let who = verify_agent_certificate(std::slice::from_ref(&cert), trust)?;
    let wit = verify_wit_credential(c.wit.as_deref().context("no WIT issued")?, trust)?;
    anyhow::ensure!(who.key_thumbprint == wit.key_thumbprint, "certificate and WIT name different keys");
    let owner =
        who.owner.as_ref().map(|o| format!("{} ({})", o.id, o.model)).unwrap_or_else(|| "none".into());
    println!("   relying party: certificate and WIT accepted; agent {} owner {owner}", who.agent_id);
    println!("   certificate subject \"{}\", one URI SAN", cert.tbs_certificate().subject());
    Ok(())
}

/// Alice's responder, on its own thread (its decider is not `Send`): polls the server for
/// challenges and approves them, for at most a minute.
fn spawn_responder(alice: &Path, lab: &Lab) -> std::thread::JoinHandle<()> {
    let (alice, server) = (alice.to_path_buf(), lab.registrar_url.clone());
    let ca = vec![lab.registrar.domain_ca().clone()];
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(owner) = OwnerIdentity::load(&alice) else { return };
            let opts = owner::RespondOptions {
                server,
                ca,
                watch: false,
                interval: Duration::from_secs(1),
                max_duration: None,
                grant_secs: 86400,
                max_ttl: None,
            };
            // Poll until one challenge has been answered, or a minute has passed.
            for _ in 0..60 {
                let mut decide = owner::Decision::Approve;
                match owner::respond(&owner, &opts, &mut decide).await {
                    Ok(o) if !o.is_empty() => return println!("   alice approved {} challenge(s)", o.len()),
                    Ok(_) => {}
                    Err(e) => eprintln!("   alice's responder: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    })
}

/// The counters of the registrar (in process) and of the MASA (over HTTPS, as Prometheus
/// would scrape it).
async fn print_metrics(lab: &Lab) -> anyhow::Result<()> {
    let keep = |l: &&str| l.starts_with("brski_issued_total") || l.starts_with("brski_refusals_total");
    for line in lab.registrar.metrics().render().lines().filter(keep) {
        println!("   {line}");
    }
    let masa_tls = shared::pki::cert_to_der(&lab.masa.tls_chain()[0])?;
    let pin = est::tls::ServerTrust::PinnedSha256(shared::crypto::sha256(&masa_tls));
    let tls = est::tls::client_config(&pin, None)?;
    let mut conn =
        est::client::EstClient::new(&format!("https://{}", lab.masa_addr), None, tls)?.connect().await?;
    let reply = conn.get_raw("/metrics", None).await?;
    for line in String::from_utf8_lossy(&reply.body).lines().filter(keep) {
        println!("   {line}   (GET https://{}/metrics)", lab.masa_addr);
    }
    Ok(())
}

/// Prints how to talk to the servers, then waits for Ctrl-C.
async fn keep_running(lab: &Lab, proxy: &RunningProxy, pledge: &Path) {
    let ca = lab.registrar.config().state.join("domain-ca.pem");
    println!("\nServers keep running (Ctrl-C to stop). Try:");
    println!("   curl --cacert {} {}/.well-known/est/cacerts", ca.display(), lab.registrar_url);
    println!("   curl --cacert {} {}/metrics", ca.display(), lab.registrar_url);
    println!(
        "   brski agent request --socket {} --id wimse://{TRUST_DOMAIN}/agent/mine --out ./mine",
        proxy.socket.display()
    );
    println!("   brski pledge status --state {}", pledge.display());
    let _ = tokio::signal::ctrl_c().await;
}
