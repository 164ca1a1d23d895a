//! Hostile clients against `brski est serve` as a real process on loopback: floods of wrong
//! HTTP Basic passwords. Each password check is argon2 (~19 MiB, tens of ms); before the work
//! bound and the failure limits, 400 such requests 100 at a time took the server to 7.7 GB.
//! Here the server's peak resident memory (VmHWM) must stay under 150 MB, every flooding
//! client must get a precise answer (401, 429 or 503, never a reset), and a real client must
//! still enroll during the flood.

use est::client::{ClientError, Enrollment, EstClient};
use est::tls::{client_config, ServerTrust};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A server process (killed when dropped) and its URL.
struct Server {
    process: testkit::Server,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_brski"));
        command.args(args).stderr(Stdio::null());
        Self::of(command)
    }

    /// Starts `command` and reads the URL from its banner.
    fn of(command: Command) -> Server {
        let (process, first) = testkit::serve_command(command, "https://127.0.0.1:");
        let url =
            first.split_whitespace().find(|t| t.starts_with("https://")).unwrap_or_default().to_string();
        Server { process, url }
    }

    /// Peak resident memory so far, in MiB (VmHWM of /proc/<pid>/status).
    fn peak_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
    }
}

/// `est serve --dev` with user `dev` / `s3cret`, its state under `dir`: the server and the state.
fn dev_server(dir: &Path) -> (Server, std::path::PathBuf) {
    let state = dir.join("state");
    let s = state.to_str().unwrap();
    let srv = Server::start(&[
        "est",
        "serve",
        "--dev",
        "--state",
        s,
        "--listen",
        "127.0.0.1:0",
        "--user",
        "dev",
        "--password",
        "s3cret",
    ]);
    (srv, state)
}

/// `est serve --config` from the commented example, with `changes` made to its text (each must
/// apply) and its state under `dir`: the server and its CA file.
fn config_server(dir: &Path, changes: &[(&str, &str)]) -> (Server, std::path::PathBuf) {
    let mut config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/est/est-serve.example.toml")).unwrap();
    for (from, to) in [("127.0.0.1:8443", "127.0.0.1:0")].iter().chain(changes) {
        assert!(config.contains(from), "the example names {from:?}");
        config = config.replace(from, to);
    }
    let cfg = dir.join("est.toml");
    std::fs::write(&cfg, config).unwrap();
    let srv = Server::start(&["est", "serve", "--config", cfg.to_str().unwrap()]);
    (srv, dir.join("est-state/ca.pem"))
}

fn client(url: &str, ca: &Path, user: &str, password: &str) -> EstClient {
    let anchors = pki::certs_from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let tls = client_config(&ServerTrust::Explicit(anchors), None).unwrap();
    EstClient::new(url, None, tls).unwrap().with_basic(user, password).with_timeout(Duration::from_secs(60))
}

fn csr() -> Vec<u8> {
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    pki::build_csr(&pki::parse_name("CN=flood").unwrap(), &[], &key).unwrap()
}

/// One enrollment on a new connection: the status the client saw (200 when issued).
async fn enroll(c: &EstClient, csr: &[u8]) -> u16 {
    let mut conn = match c.connect().await {
        Ok(conn) => conn,
        Err(e) => panic!("connect: {e}"),
    };
    match conn.simpleenroll(csr).await {
        Ok(Enrollment::Done(_)) => 200,
        Ok(Enrollment::Pending { .. }) => 202,
        Err(ClientError::Status { status, .. }) => status.as_u16(),
        Err(e) => panic!("the client saw no HTTP answer: {e}"),
    }
}

/// `n` wrong-password enrollments at once while `good` enrolls; the statuses seen, counted.
async fn flood(url: &str, ca: &Path, n: usize, good: &EstClient) -> BTreeMap<u16, usize> {
    let bad = client(url, ca, "dev", "wrong-password");
    let csr = csr();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (bad, csr) = (bad.clone(), csr.clone());
            tokio::spawn(async move { enroll(&bad, &csr).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(enroll(good, &csr).await, 200, "a client with verified credentials enrolls during the flood");
    let mut seen = BTreeMap::new();
    for t in tasks {
        *seen.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    seen
}

/// A client enrolls (so its credentials are verified), then 200 wrong-password enrollments
/// flood the server while it enrolls again: the statuses the flood saw and the server's peak.
fn flood_after_login(srv: &Server, ca: &Path) -> (BTreeMap<u16, usize>, u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let good = client(&srv.url, ca, "dev", "s3cret");
    assert_eq!(rt.block_on(enroll(&good, &csr())), 200);
    let seen = rt.block_on(flood(&srv.url, ca, 200, &good));
    let peak = srv.peak_mib();
    println!("statuses {seen:?}, server peak {peak} MiB");
    (seen, peak)
}

#[test]
fn a_wrong_password_flood_is_answered_429_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, state) = dev_server(dir.path());
    let ca = state.join("ca.pem");
    let (seen, peak) = flood_after_login(&srv, &ca);
    assert!(seen.keys().all(|s| [401, 429, 503].contains(s)), "{seen:?}");
    assert!(seen.get(&429).copied().unwrap_or(0) >= 150, "past 20 failures the address gets 429: {seen:?}");
    assert!(peak < 150, "server peak {peak} MiB");
}

#[test]
fn without_failure_limits_the_work_bound_alone_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, ca) = config_server(
        dir.path(),
        &[
            ("auth_failures_per_address = 20", "auth_failures_per_address = 0"),
            ("auth_failures_per_user = 50", "auth_failures_per_user = 0"),
            ("password_checks = 0 ", "password_checks = 2 "),
        ],
    );
    let (seen, peak) = flood_after_login(&srv, &ca);
    assert!(seen.keys().all(|s| [401, 503].contains(s)), "{seen:?}");
    assert!(peak < 150, "server peak {peak} MiB");
}

/// curl (HTTP/1.1 and HTTP/2) posting `body` to simpleenroll `n` times: the statuses it saw
/// (0 when it got no HTTP answer, e.g. a reset connection).
fn curl_statuses(url: &str, ca: &Path, http: &str, body: &Path, user: Option<&str>, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| {
            let mut args = vec![
                "-s".to_string(),
                "-o".into(),
                "/dev/null".into(),
                "-w".into(),
                "%{http_code}".into(),
                http.into(),
                "--cacert".into(),
                ca.display().to_string(),
                "-H".into(),
                "Content-Type: application/pkcs10".into(),
                "--data-binary".into(),
                format!("@{}", body.display()),
            ];
            if let Some(u) = user {
                args.extend(["-u".into(), u.into()]);
            }
            args.push(format!("{url}/.well-known/est/simpleenroll"));
            let out = Command::new("curl").args(&args).output().expect("run curl");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
        })
        .collect()
}

/// An EST client sends its request without credentials first and retries after the 401; the
/// server refused before reading the body, so 60 KB POSTs often saw a reset stream (HTTP/2) or
/// a broken pipe (HTTP/1.1) instead. The body is now read (within its limit) before any
/// refusal, and an oversize one drained before the 413.
#[test]
fn refusals_before_the_body_is_needed_still_reach_the_client() {
    if !testkit::peer("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (srv, state) = dev_server(dir.path());
    let ca = state.join("ca.pem");
    let body = dir.path().join("60k");
    std::fs::write(&body, vec![b'A'; 60_000]).unwrap();
    let big = dir.path().join("300k");
    std::fs::write(&big, vec![b'A'; 300_000]).unwrap();
    for http in ["--http1.1", "--http2"] {
        let seen = curl_statuses(&srv.url, &ca, http, &body, None, 100);
        assert!(seen.iter().all(|s| *s == 401), "{http} 60 KB without credentials: {seen:?}");
        let seen = curl_statuses(&srv.url, &ca, http, &big, Some("dev:s3cret"), 10);
        assert!(seen.iter().all(|s| *s == 413), "{http} 300 KB: {seen:?}");
    }
}

/// A 100 KB request header: 431 on HTTP/1.1 (RFC 6585 §5), read by the client thanks to the
/// lingering close (it was a reset: the server closed while the client was still sending);
/// on HTTP/2 the stream is refused (REFUSED_STREAM, by the h2 library) rather than buffered.
/// A normal request on the same server still succeeds.
#[test]
fn an_oversize_request_head_is_431_and_costs_nothing() {
    if !testkit::peer("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (srv, state) = dev_server(dir.path());
    let ca = state.join("ca.pem").display().to_string();
    let header = dir.path().join("header");
    std::fs::write(&header, format!("X-Big: {}\n", "a".repeat(100_000))).unwrap();
    let cacerts = format!("{}/.well-known/est/cacerts", srv.url);
    let status = |extra: &[&str]| -> String {
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}", "--http1.1", "--cacert", &ca];
        args.extend_from_slice(extra);
        args.push(&cacerts);
        let out = Command::new("curl").args(&args).output().expect("run curl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let big = format!("@{}", header.display());
    for _ in 0..10 {
        assert_eq!(status(&["-H", &big]), "431");
    }
    assert_eq!(status(&[]), "200");
}

/// Server logs written to a file carried ANSI colour codes; colour is now for terminals only.
#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let state = dir.path().join("state");
    let mut command = Command::new(env!("CARGO_BIN_EXE_brski"));
    command
        .args(["est", "serve", "--dev", "--state", state.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--user", "dev", "--password", "s3cret"])
        .stderr(std::fs::File::create(&log).unwrap());
    let srv = Server::of(command);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wrong = client(&srv.url, &state.join("ca.pem"), "dev", "wrong");
    assert_eq!(rt.block_on(enroll(&wrong, &csr())), 401);
    drop(srv);
    let text = std::fs::read(&log).unwrap();
    assert!(String::from_utf8_lossy(&text).contains("EST request refused"), "the refusal is logged");
    assert!(!text.contains(&0x1b), "no escape codes in a log file");
}

/// Connections that finish the TLS handshake and send nothing were kept open for good (the
/// header timeout starts with the first byte) until the server ran out of descriptors. Now each
/// is closed after `first_byte_timeout_secs`, at most `max_connections` are open at once (more
/// wait in the backlog), and a real client still enrolls while they pile up.
#[test]
fn silent_connections_are_closed_and_capped_while_a_client_enrolls() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, ca) = config_server(
        dir.path(),
        &[
            ("first_byte_timeout_secs = 10", "first_byte_timeout_secs = 1"),
            ("max_connections = 0 ", "max_connections = 64 "),
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let silent = client(&srv.url, &ca, "dev", "s3cret");
        let opened: Vec<_> = (0..200)
            .map(|_| {
                let c = silent.clone();
                tokio::spawn(async move { c.connect().await.expect("TLS handshake") })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(enroll(&client(&srv.url, &ca, "dev", "s3cret"), &csr()).await, 200);
        let mut conns = Vec::new();
        for o in opened {
            conns.push(o.await.unwrap());
        }
        let start = std::time::Instant::now();
        while conns.iter().any(|c| !c.is_closed()) && start.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let open = conns.iter().filter(|c| !c.is_closed()).count();
        assert_eq!(open, 0, "{open} silent connections still open after {:?}", start.elapsed());
    });
}

/// What libest's HTTP/1.1 parser needs, read as raw bytes over TLS 1.2 without ALPN (openssl
/// s_client as the client): a request without credentials gets 401 with `WWW-Authenticate:
/// Basic realm=...` spelled exactly (hyper's title case wrote `Www-Authenticate`, which that
/// parser never finds), `Content-Type` and `Content-Length` spelled exactly, no chunked body,
/// and the whole head in the first kilobyte.
#[test]
fn a_401_head_is_spelled_as_libest_reads_it() {
    if !testkit::peer("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (srv, _state) = dev_server(dir.path());
    let port = srv.url.rsplit(':').next().unwrap().to_string();
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-quiet", "-tls1_2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let request = "POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                   Content-Type: application/pkcs10\r\nContent-Length: 4\r\nConnection: close\r\n\r\nAAAA";
    use std::io::Write;
    s_client.stdin.as_mut().unwrap().write_all(request.as_bytes()).unwrap();
    let out = s_client.wait_with_output().unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    let head_end = raw.find("\r\n\r\n").expect("a complete head") + 4;
    let head = &raw[..head_end];
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(head.contains("\r\nWWW-Authenticate: Basic realm=\"est\"\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: application/problem+json\r\n"), "{head}");
    let length = head.split("\r\nContent-Length: ").nth(1).and_then(|r| r.split("\r\n").next());
    assert_eq!(length.and_then(|l| l.parse::<usize>().ok()), Some(raw.len() - head_end), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");
    assert!(head.len() <= 1024, "the head fits libest's first read: {} bytes", head.len());
}
