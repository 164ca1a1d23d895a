//! A throw-away software TPM (swtpm) for tests: its own state directory and a pair of loopback
//! ports (tss-esapi's `swtpm:` TCTI takes host and port only: the command port, control on the
//! next), started fresh (manufactured, `startup-clear`) and killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm.
#[derive(Debug)]
pub struct SwTpm {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl SwTpm {
    /// Whether `swtpm` is on the PATH.
    pub fn available() -> bool {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("swtpm").is_file()))
    }

    /// For tests: a new swtpm, or, when swtpm is not installed, `None` after a loud skip notice
    /// (a panic instead under `BRSKI_REQUIRE_PEERS=1`).
    pub fn for_test() -> Option<SwTpm> {
        if !Self::available() {
            if std::env::var("BRSKI_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("BRSKI_REQUIRE_PEERS=1 but swtpm (packages swtpm, swtpm-tools) is not installed");
            }
            eprintln!("\n!!!!! SKIPPED: swtpm (packages swtpm, swtpm-tools) is not installed; this test needs it !!!!!\n");
            return None;
        }
        Some(Self::start().expect("start swtpm"))
    }

    /// Starts a new swtpm with empty state; waits (at most 10 s) until it answers.
    pub fn start() -> Result<SwTpm, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port_pair()?;
            match Self::start_on(port) {
                Ok(tpm) => return Ok(tpm),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn start_on(port: u16) -> Result<SwTpm, String> {
        let dir =
            tempfile::Builder::new().prefix("brski-swtpm").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args(["--flags", "not-need-init,startup-clear"])
            .arg("--log")
            .arg(format!("file={},level=1", dir.path().join("swtpm.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting swtpm: {e}"))?;
        let mut tpm = SwTpm { child, dir, port };
        if let Err(e) = tpm.wait_ready(Duration::from_secs(10)) {
            let _ = tpm.child.kill();
            return Err(e);
        }
        Ok(tpm)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        let mut last = String::from("not listening yet");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("swtpm.log")).unwrap_or_default();
                return Err(format!("swtpm exited ({status}): {log}"));
            }
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                match get_random(stream) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            if started.elapsed() > limit {
                return Err(format!("swtpm did not answer within {limit:?}: {last}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The TCTI configuration string that reaches it (`swtpm:host=127.0.0.1,port=...`).
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Its state directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Sends TPM2_GetRandom(8) on swtpm's command channel (raw TPM 2.0 commands) and checks the
/// answer is TPM_RC_SUCCESS: the TPM is up and started, without linking a TSS for it.
fn get_random(mut stream: std::net::TcpStream) -> Result<(), String> {
    use std::io::{Read, Write};
    // TPM_ST_NO_SESSIONS, commandSize 12, TPM_CC_GetRandom, bytesRequested 8.
    const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8];
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream.write_all(&GET_RANDOM).map_err(|e| format!("sending TPM2_GetRandom: {e}"))?;
    let mut header = [0u8; 10];
    stream.read_exact(&mut header).map_err(|e| format!("reading the TPM's answer: {e}"))?;
    let rc = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("TPM2_GetRandom answered rc {rc:#x}"))
    }
}

/// Two consecutive free loopback ports (command, control).
fn free_port_pair() -> Result<u16, String> {
    for _ in 0..50 {
        let first =
            std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("binding a port: {e}"))?;
        let port = first.local_addr().map_err(|e| e.to_string())?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("no two consecutive free loopback ports".into())
}

impl Drop for SwTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
