//! The test kit: dev-only support every crate's tests share, and nothing a shipped binary links.
//!
//! - finding the real outside software tests run against (openssl, curl, ...) and running it:
//!   [`peer`], [`run`], [`run_ok`], [`success_stdout`];
//! - server processes killed on drop ([`Server`], [`serve`]) and [`free_port`];
//! - throw-away peers that need setting up: a PostgreSQL server ([`postgres`],
//!   [`postgres_database`]), SoftHSM tokens ([`softhsm`], [`softhsm_token`]) and
//!   software TPMs ([`swtpm`]);
//! - the published vectors under `testdata/` ([`vector`]).
//!
//! A test that needs a tool calls [`peer`]; without the tool it is skipped with a loud message,
//! unless `BRSKI_REQUIRE_PEERS=1` (set by `.ci/run` after installing them), where it fails.
//!
//! What it does not do: build any role. Tests that need several roles at once live in `e2e`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub mod postgres;
pub mod softhsm;
pub mod swtpm;

/// True when `tool` is on PATH. Otherwise prints a loud skip notice, or panics when
/// `BRSKI_REQUIRE_PEERS=1`.
pub fn peer(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var("BRSKI_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("BRSKI_REQUIRE_PEERS=1 but the test peer '{tool}' is not installed");
    }
    eprintln!("\n!!!!! SKIPPED: '{tool}' is not installed; this test needs it as a real peer !!!!!\n");
    false
}

/// A fresh database on a throw-away PostgreSQL server (see [`postgres`];
/// `BRSKI_TEST_POSTGRES_URL` names an existing server instead). When PostgreSQL is not
/// installed: a loud skip notice and `None`, or a panic under `BRSKI_REQUIRE_PEERS=1`.
pub async fn postgres_database() -> Option<String> {
    use postgres::{fresh_database, peers_required, URL_ENV};
    match fresh_database().await {
        Ok(Some(url)) => Some(url),
        Ok(None) if peers_required() => {
            panic!("BRSKI_REQUIRE_PEERS=1 but PostgreSQL (initdb) is not installed and {URL_ENV} is not set")
        }
        Ok(None) => {
            eprintln!(
                "\n!!!!! SKIPPED: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and \
                 {URL_ENV} is not set; this test needs it as a real peer !!!!!\n"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A new SoftHSM v2 token labelled `label` (see [`softhsm::SoftHsmToken`]; the
/// first one points this process's `SOFTHSM2_CONF` at a temporary token directory, which
/// `brski` child processes inherit). Without SoftHSM: a loud skip notice and `None`, or a
/// panic under `BRSKI_REQUIRE_PEERS=1`.
pub fn softhsm_token(label: &str) -> Option<softhsm::SoftHsmToken> {
    use softhsm::SoftHsmToken;
    if !peer("softhsm2-util") {
        return None;
    }
    if !SoftHsmToken::available() {
        assert_ne!(
            std::env::var("BRSKI_REQUIRE_PEERS").as_deref(),
            Ok("1"),
            "BRSKI_REQUIRE_PEERS=1 but the SoftHSM module {} is missing",
            shared::keys::DEFAULT_PKCS11_MODULE
        );
        eprintln!("\n!!!!! SKIPPED: SoftHSM's PKCS#11 module is not installed !!!!!\n");
        return None;
    }
    Some(SoftHsmToken::create(label).expect("create a SoftHSM token"))
}

/// Runs `program` with `args` in `dir`, returning its output (never panics on exit status).
pub fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Like [`run`], and asserts success, printing stderr on failure.
pub fn run_ok(dir: &Path, program: &str, args: &[&str]) -> Output {
    let out = run(dir, program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that a finished command succeeded (showing its stdout and stderr otherwise) and
/// returns its stdout as text.
pub fn success_stdout(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "expected success:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Path of a published test vector under testdata/vectors.
pub fn vector(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors").join(rel)
}

/// A server process (e.g. `brski registrar serve`), killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program args...` and waits for the first line of its banner, which must contain
/// `expect`; the rest of its standard output is drained (a closed pipe would make the server's
/// later lines fail with EPIPE and kill it).
pub fn serve(program: &str, args: &[&str], expect: &str) -> Server {
    let mut command = Command::new(program);
    command.args(args).stderr(Stdio::inherit());
    serve_command(command, expect).0
}

/// [`serve`] for a command the caller has set up (its standard error, its environment):
/// the server and the first line of its banner.
pub fn serve_command(mut command: Command, expect: &str) -> (Server, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    stdout.read_line(&mut first).expect("banner line");
    let server = Server(child);
    assert!(first.contains(expect), "{first}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (server, first)
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
