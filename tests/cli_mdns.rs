//! mDNS discovery with real processes and a real peer (avahi), each test inside its own network
//! namespace that holds only `lo` (multicast on), so no announcement leaves the machine:
//!
//! * `brski registrar serve` announces `_brski-registrar._tcp`; `avahi-browse` resolves it with
//!   the right port and TXT, and sees it withdrawn when the registrar is stopped (SIGTERM);
//! * `avahi-publish` announces a registrar (a real one, started with `--no-mdns`);
//!   `brski pledge bootstrap` without a registrar URL discovers it and gets an LDevID;
//! * our own registrar announcement and our own pledge discovery end to end.
//!
//! The namespace gets a private D-Bus system bus and avahi-daemon (recipe and pitfalls:
//! /work/shared/test-peers.md §4). avahi-daemon runs in a private mount namespace with a tmpfs
//! on `/run/avahi-daemon`, because its pid file there is hard-coded and the tests run in
//! parallel. Needs root, `ip`, `unshare`, and for the avahi tests `avahi-daemon`,
//! `avahi-browse`, `avahi-publish`, `dbus-daemon`: without them a test is skipped loudly, or
//! fails when `BRSKI_REQUIRE_PEERS=1`. Everything started is killed by pid and the namespace
//! deleted when a test ends, also on failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use testkit::success_stdout as ok;

const MASA_ADDR: &str = "127.0.0.1:9443";
const REG_ADDR: &str = "127.0.0.1:8443";
const BRSKI: &str = env!("CARGO_BIN_EXE_brski");

fn require_peers() -> bool {
    std::env::var("BRSKI_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Skips loudly (returns false), or fails under `BRSKI_REQUIRE_PEERS=1`.
fn skip(why: &str) -> bool {
    if require_peers() {
        panic!("BRSKI_REQUIRE_PEERS=1 but {why}");
    }
    eprintln!("\n!!!!! SKIPPED: {why}; this mDNS test needs it !!!!!\n");
    false
}

/// Whether every tool is installed and we are root (for `ip netns`).
fn available(tools: &[&str]) -> bool {
    if !tools.iter().all(|t| testkit::peer(t)) {
        return false;
    }
    let uid =
        Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref().ok() != Some("0") {
        return skip("it must run as root (ip netns)");
    }
    true
}

/// A process, killed (SIGKILL) and reaped when dropped; its stdout lines arrive on `lines`.
struct Proc {
    what: String,
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command) -> Proc {
        let mut child =
            cmd.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { what: what.to_string(), child, lines }
    }

    /// Waits (at most `timeout`) for a stdout line containing `expect`; returns it.
    fn wait_line(&mut self, expect: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(expect) => return line,
                Ok(line) => seen.push(line),
                Err(e) => {
                    panic!("{}: no line with {expect:?} within {timeout:?} ({e}); got {seen:#?}", self.what)
                }
            }
        }
    }

    /// Sends SIGTERM and waits (at most `timeout`) for a clean exit; returns the rest of stdout.
    fn terminate(&mut self, timeout: Duration) -> String {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        assert!(sent, "{}: kill -TERM {pid} failed", self.what);
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                other => panic!("{}: did not exit within {timeout:?} after SIGTERM: {other:?}", self.what),
            }
        };
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(status.success(), "{}: exit status {status} after SIGTERM; stdout: {rest:#?}", self.what);
        rest.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace with only `lo` (up, multicast on), optionally with its own D-Bus system
/// bus and avahi-daemon; all torn down on drop.
struct Netns {
    name: String,
    dir: tempfile::TempDir,
    daemons: Vec<Proc>,
}

impl Netns {
    /// Creates the namespace `brski-<tag>-<pid>`; `None` (skipped) when that is not possible.
    fn create(tag: &str) -> Option<Netns> {
        let name = format!("brski-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("run ip");
        if !out.status.success() {
            skip(&format!("`ip netns add` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
            return None;
        }
        let ns = Netns { name, dir: tempfile::tempdir().expect("tempdir"), daemons: Vec::new() };
        for args in [&["link", "set", "lo", "up"][..], &["link", "set", "lo", "multicast", "on"]] {
            let out = ns.cmd("ip", args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Some(ns)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ip netns exec <ns> program args...`, with the namespace's D-Bus system bus.
    fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c.env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}", self.path("system_bus_socket").display()));
        c
    }

    /// Runs `program args...` in the namespace, killed after `secs` seconds.
    fn run(&self, secs: u64, program: &str, args: &[&str]) -> Output {
        let secs = secs.to_string();
        self.cmd("timeout", &[&["-k", "2", secs.as_str(), program][..], args].concat()).output().expect("run")
    }

    /// Starts a private D-Bus system bus and avahi-daemon (IPv4, `lo` only) in the namespace.
    fn start_avahi(&mut self) {
        let dir = self.dir.path().display().to_string();
        let conf = std::fs::read_to_string("/usr/share/dbus-1/system.conf").expect("dbus system.conf");
        let conf = replace_element(&conf, "listen", &format!("unix:path={dir}/system_bus_socket"));
        let conf = replace_element(&conf, "pidfile", &format!("{dir}/dbus.pid"))
            .replace("<user>messagebus</user>", "")
            // Required: avahi's bus policy lives there.
            .replace(
                "<includedir>system.d</includedir>",
                "<includedir>/usr/share/dbus-1/system.d</includedir>",
            );
        std::fs::write(self.path("dbus-system.conf"), conf).unwrap();
        let config = format!("--config-file={dir}/dbus-system.conf");
        let dbus = Proc::spawn("dbus-daemon", self.cmd("dbus-daemon", &[&config, "--nofork"]));
        self.daemons.push(dbus);
        wait_for("the D-Bus socket", Duration::from_secs(10), || self.path("system_bus_socket").exists());

        std::fs::write(
            self.path("avahi.conf"),
            "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=lo\n[wide-area]\nenable-wide-area=no\n\
             [publish]\npublish-hinfo=no\npublish-workstation=no\n",
        )
        .unwrap();
        let log = std::fs::File::create(self.path("avahi.log")).unwrap();
        let script = format!(
            "mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && \
             exec avahi-daemon -f '{dir}/avahi.conf' --no-drop-root --no-chroot --no-rlimits --debug"
        );
        let mut cmd = self.cmd("unshare", &["-m", "sh", "-c", &script]);
        cmd.stderr(log);
        self.daemons.push(Proc::spawn("avahi-daemon", cmd));
        let log = self.path("avahi.log");
        let started = wait_for_opt(Duration::from_secs(15), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Server startup complete"))
        });
        assert!(
            started,
            "avahi-daemon did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `brski args...` in the namespace, its banner line awaited.
    fn serve(&self, what: &str, args: &[&str], banner: &str) -> Proc {
        let mut p = Proc::spawn(what, self.cmd(BRSKI, args));
        p.wait_line(banner, Duration::from_secs(20));
        p
    }

    /// `avahi-browse -rtp _brski-registrar._tcp` in the namespace: the resolved (`=`) lines.
    fn browse(&self) -> Vec<Vec<String>> {
        let out = self.run(15, "avahi-browse", &["-rtp", "_brski-registrar._tcp"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|l| l.starts_with("=;"))
            .map(|l| l.split(';').map(str::to_string).collect())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        while let Some(p) = self.daemons.pop() {
            drop(p);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Replaces the text of the first `<tag>...</tag>` element.
fn replace_element(xml: &str, tag: &str, text: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    match (xml.find(&open), xml.find(&close)) {
        (Some(a), Some(b)) if a < b => format!("{}{open}{text}{}", &xml[..a], &xml[b..]),
        _ => panic!("no <{tag}> in the D-Bus system.conf"),
    }
}

fn wait_for_opt(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

fn wait_for(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(wait_for_opt(timeout, done), "{what}: not ready within {timeout:?}");
}

fn brski(dir: &Path, args: &[&str]) -> Output {
    Command::new(BRSKI).args(args).current_dir(dir).output().expect("run brski")
}

/// In `dir`: a MASA (`masa/`), a device SN-0001 (`device/`) claimed for a registrar (`reg/`),
/// all on the namespace's loopback.
fn make_domain(dir: &Path) {
    let run = |args: &[&str]| ok(&brski(dir, args));
    run(&["masa", "init", "--state", "masa", "--url", MASA_ADDR, "--listen", MASA_ADDR]);
    run(&["masa", "idevid", "--state", "masa", "--serial", "SN-0001", "--out", "device"]);
    run(&[
        "registrar",
        "init",
        "--state",
        "reg",
        "--listen",
        REG_ADDR,
        "--manufacturer",
        "lab=masa/manufacturer-ca.pem",
    ]);
    run(&["masa", "claim", "--state", "masa", "--serial", "SN-0001", "--domain-ca", "reg/domain-ca.pem"]);
}

/// Starts the MASA and the registrar (with `extra` serve flags) in the namespace.
fn serve_domain(ns: &Netns, extra: &[&str]) -> (Proc, Proc) {
    let masa = ns.serve(
        "brski masa",
        &["masa", "serve", "--state", &ns.path("masa").display().to_string()],
        "brski MASA on https://",
    );
    let reg_state = ns.path("reg").display().to_string();
    let args = [&["registrar", "serve", "--state", reg_state.as_str()][..], extra].concat();
    let reg = ns.serve("brski registrar", &args, "brski registrar on https://");
    (masa, reg)
}

/// `brski pledge bootstrap` with no registrar URL, in the namespace; asserts an LDevID and
/// that it came through discovery of `instance`.
fn bootstrap_by_discovery(ns: &Netns, instance: &str) {
    let device = ns.path("device").display().to_string();
    let started = Instant::now();
    let out = ns.run(
        50,
        BRSKI,
        &[
            "-v",
            "pledge",
            "bootstrap",
            "--state",
            &device,
            "--max-attempts",
            "1",
            "--discovery-timeout",
            "10",
        ],
    );
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("enrolled (brski)"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("https://{REG_ADDR} (discovered by mDNS: \"{instance}\")")),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("mDNS: registrar resolved"), "{stderr}");
    assert!(ns.path("device/ldevid.pem").exists());
    eprintln!("pledge bootstrapped by mDNS discovery in {:?}", started.elapsed());
    if testkit::peer("openssl") {
        let out = testkit::run_ok(
            ns.dir.path(),
            "openssl",
            &["verify", "-CAfile", "reg/domain-ca.pem", "device/ldevid.pem"],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

/// (a) `brski registrar serve` announces; avahi resolves it (port, TXT); SIGTERM withdraws it.
#[test]
fn avahi_resolves_the_registrar_announcement_until_it_stops() {
    if !available(&["ip", "unshare", "dbus-daemon", "avahi-daemon", "avahi-browse"]) {
        return;
    }
    let Some(mut ns) = Netns::create("mdns-a") else { return };
    ns.start_avahi();
    make_domain(ns.dir.path());
    let config = ns.path("reg/registrar.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nmdns = true\n"), "registrar init writes mdns = true:\n{text}");
    std::fs::write(
        &config,
        text.replace("\nmdns = true\n", "\nmdns = true\nmdns_instance = \"registrar-under-test\"\n"),
    )
    .unwrap();

    let reg_state = ns.path("reg").display().to_string();
    let mut reg = ns.serve(
        "brski registrar",
        &["registrar", "serve", "--state", &reg_state],
        "brski registrar on https://",
    );
    let line = reg.wait_line("mDNS:", Duration::from_secs(10));
    assert!(
        line.contains("announcing \"registrar-under-test\" _brski-registrar._tcp.local. port 8443"),
        "{line}"
    );

    let mut seen = Vec::new();
    let found = wait_for_opt(Duration::from_secs(20), || {
        seen = ns.browse();
        seen.iter().any(|f| f.get(3).map(String::as_str) == Some("registrar-under-test"))
    });
    assert!(found, "avahi-browse did not resolve the registrar: {seen:#?}");
    let record = seen.iter().find(|f| f[3] == "registrar-under-test").unwrap();
    // =;lo;IPv4;registrar-under-test;_brski-registrar._tcp;local;vm-brski.local;127.0.0.1;8443;"est=..." "path=..." "rt=brski"
    assert_eq!(record.len(), 10, "{record:?}");
    assert_eq!((record[1].as_str(), record[4].as_str()), ("lo", "_brski-registrar._tcp"), "{record:?}");
    assert!(record[6].ends_with("-brski.local"), "default host name <hostname>-brski.local: {record:?}");
    assert_eq!((record[7].as_str(), record[8].as_str()), ("127.0.0.1", "8443"), "{record:?}");
    for txt in ["\"rt=brski\"", "\"path=/.well-known/brski\"", "\"est=/.well-known/est\""] {
        assert!(record[9].contains(txt), "TXT {txt} missing: {record:?}");
    }

    // Shutdown withdraws the announcement (goodbye packets): avahi forgets it at once.
    let rest = reg.terminate(Duration::from_secs(15));
    assert!(rest.contains("shutting down"), "{rest}");
    let gone = wait_for_opt(Duration::from_secs(10), || {
        seen = ns.browse();
        !seen.iter().any(|f| f[3] == "registrar-under-test")
    });
    assert!(gone, "still announced after the registrar stopped: {seen:#?}");
}

/// (b) avahi-publish announces a real registrar (itself silent: --no-mdns); the pledge, given
/// no URL, discovers it and enrolls.
#[test]
fn pledge_discovers_a_registrar_published_by_avahi_and_enrolls() {
    if !available(&["ip", "unshare", "dbus-daemon", "avahi-daemon", "avahi-publish"]) {
        return;
    }
    let Some(mut ns) = Netns::create("mdns-b") else { return };
    ns.start_avahi();
    make_domain(ns.dir.path());
    let (_masa, mut reg) = serve_domain(&ns, &["--no-mdns"]);
    let line = reg.wait_line("mDNS:", Duration::from_secs(10));
    assert!(line.contains("not announced (--no-mdns)"), "{line}");

    let port = REG_ADDR.rsplit(':').next().unwrap();
    // avahi-publish reports on stderr: fold it into stdout, where Proc reads lines.
    let publish = ns.cmd(
        "sh",
        &[
            "-c",
            "exec avahi-publish \"$@\" 2>&1",
            "avahi-publish",
            "-s",
            "avahi-published-registrar",
            "_brski-registrar._tcp",
            port,
            "rt=brski",
            "path=/.well-known/brski",
        ],
    );
    let mut publish = Proc::spawn("avahi-publish", publish);
    publish.wait_line("Established under name", Duration::from_secs(15));

    bootstrap_by_discovery(&ns, "avahi-published-registrar");
}

/// (c) Our registrar announces, our pledge browses: no avahi involved.
#[test]
fn pledge_discovers_the_registrar_announcement_and_enrolls() {
    if !available(&["ip"]) {
        return;
    }
    let Some(ns) = Netns::create("mdns-c") else { return };
    make_domain(ns.dir.path());
    let config = ns.path("reg/registrar.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\nmdns = true\n", "\nmdns = true\nmdns_instance = \"our-registrar\"\n"),
    )
    .unwrap();
    let (_masa, mut reg) = serve_domain(&ns, &[]);
    let line = reg.wait_line("mDNS:", Duration::from_secs(10));
    assert!(line.contains("announcing \"our-registrar\""), "{line}");

    bootstrap_by_discovery(&ns, "our-registrar");
}

/// Without a URL and with nobody announcing, the pledge says so within its discovery timeout.
#[test]
fn pledge_without_url_and_without_registrars_fails_within_the_discovery_timeout() {
    if !available(&["ip"]) {
        return;
    }
    let Some(ns) = Netns::create("mdns-d") else { return };
    make_domain(ns.dir.path());
    let device = ns.path("device").display().to_string();
    let started = Instant::now();
    let out = ns.run(
        30,
        BRSKI,
        &["pledge", "bootstrap", "--state", &device, "--max-attempts", "1", "--discovery-timeout", "2"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no registrar URL is configured and mDNS discovery found no _brski-registrar._tcp.local. service within 2s"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}
