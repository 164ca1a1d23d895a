//! A throw-away PostgreSQL server for tests of the PostgreSQL store (and of roles using it).
//!
//! [`fresh_database`] creates a new, empty database per call on one server per process:
//!
//! * with `BRSKI_TEST_POSTGRES_URL` set (a URL of a role allowed to `CREATE DATABASE`), on that
//!   server;
//! * otherwise on a server this module starts on first use: `initdb` into a temporary directory
//!   (as user `postgres` via `runuser` when running as root, since `initdb` refuses root),
//!   then `pg_ctl start` on a free loopback port with `fsync=off`. A watchdog shell, whose
//!   standard input is a pipe held by this process, stops the server and removes the
//!   directory when the process exits, however it exits.
//!
//! The binaries are looked for in `/usr/lib/postgresql/<version>/bin` (Debian's layout,
//! newest version first); when none is installed, [`fresh_database`] answers `Ok(None)` and the
//! caller skips (or fails, under `BRSKI_REQUIRE_PEERS=1`, see [`peers_required`]).

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sqlx::{Connection, PgConnection};

/// Environment variable naming an existing server to use instead of starting one.
pub const URL_ENV: &str = "BRSKI_TEST_POSTGRES_URL";

/// The server of this process, started once.
struct Server {
    /// URL of the maintenance database, as a superuser.
    admin_url: String,
    /// Keeps the watchdog's standard input open while the process lives.
    _watchdog: Option<Mutex<(Child, ChildStdin)>>,
}

static SERVER: OnceLock<Result<Option<Server>, String>> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `BRSKI_REQUIRE_PEERS=1`: a missing PostgreSQL is then a failure, not a skip.
pub fn peers_required() -> bool {
    std::env::var("BRSKI_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Creates a fresh, empty database and returns its URL; `Ok(None)` when no PostgreSQL is
/// installed and `BRSKI_TEST_POSTGRES_URL` is not set.
pub async fn fresh_database() -> Result<Option<String>, String> {
    // Starting the server blocks (initdb, pg_ctl -w): keep it off the async worker.
    let server = match SERVER.get() {
        Some(s) => s,
        None => {
            let started = tokio::task::spawn_blocking(start)
                .await
                .map_err(|e| format!("starting PostgreSQL panicked: {e}"))?;
            SERVER.get_or_init(|| started)
        }
    };
    let server = match server {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.clone()),
    };
    let name = format!(
        "brski_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
    );
    let mut conn = PgConnection::connect(&server.admin_url)
        .await
        .map_err(|e| format!("cannot connect to the test PostgreSQL server: {e}"))?;
    // The name is made here from digits and underscores only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot create test database {name}: {e}"))?;
    let _ = conn.close().await;
    Ok(Some(with_database(&server.admin_url, &name)))
}

/// `url` with its database path replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Finds or starts the server.
fn start() -> Result<Option<Server>, String> {
    if let Ok(url) = std::env::var(URL_ENV) {
        if !url.is_empty() {
            return Ok(Some(Server { admin_url: url, _watchdog: None }));
        }
    }
    let Some(bin) = find_bin_dir() else { return Ok(None) };
    let root = is_root()?;
    let dir = tempfile::Builder::new()
        .prefix("brski-pg-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?
        .keep();
    let pg = dir.join("pg");
    let data = pg.join("data");
    let log = pg.join("server.log");
    if root {
        // The postgres user must reach its directory inside root's private temporary one.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        }
        run(Command::new("install").args(["-d", "-o", "postgres", "-g", "postgres", "-m", "0700"]).arg(&pg))?;
    } else {
        std::fs::create_dir(&pg).map_err(|e| format!("mkdir {}: {e}", pg.display()))?;
    }
    let as_pg = |tool: &str| -> Command {
        let program = bin.join(tool);
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    run(as_pg("initdb").arg("-D").arg(&data).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
        "-E",
        "UTF8",
        "--no-locale",
    ]))?;

    let mut last_err = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            pg.display()
        );
        let started = run(as_pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]));
        match started {
            Ok(()) => {
                let watchdog = spawn_watchdog(root, &bin, &data, &dir)?;
                return Ok(Some(Server {
                    admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    _watchdog: Some(Mutex::new(watchdog)),
                }));
            }
            Err(e) => {
                last_err = format!("{e}; server log: {}", std::fs::read_to_string(&log).unwrap_or_default())
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(format!("cannot start the test PostgreSQL server: {last_err}"))
}

/// Starts the shell that stops the server and removes `dir` once its standard input closes.
fn spawn_watchdog(root: bool, bin: &Path, data: &Path, dir: &Path) -> Result<(Child, ChildStdin), String> {
    let stop = if root {
        "runuser -u postgres -- \"$1\" -D \"$2\" -m immediate stop"
    } else {
        "\"$1\" -D \"$2\" -m immediate stop"
    };
    let script = format!("read _ ; {stop} ; rm -rf \"$3\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the PostgreSQL watchdog: {e}"))?;
    let stdin = child.stdin.take().ok_or("the watchdog has no standard input")?;
    Ok((child, stdin))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> Result<bool, String> {
    let out = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run id -u: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("cannot find a free port: {e}"))
}

/// Runs `cmd`, its output captured; an error carries its stderr.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| match e.kind() {
        ErrorKind::NotFound => format!("{:?} is not installed", cmd.get_program()),
        _ => format!("cannot run {:?}: {e}", cmd.get_program()),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
    }
}
