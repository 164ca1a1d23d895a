//! `brski bench brski` and `brski bench agent`: each runs its in-process lab to the end with
//! every operation succeeding, reports the figures it promises, and leaves the simulated
//! pledges' state where `--pledge-state` says (and nothing behind in its own temp directory).

use std::process::{Command, Output};
use testkit::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

/// "N <what> in …s: R/s; latency p50 …, p99 …, max …; 0 failed"
fn assert_summary(stdout: &str, n: usize, what: &str) {
    let line = stdout.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert!(line.starts_with(&format!("{n} {what} in ")), "{line}");
    for part in ["/s;", "p50 ", "p99 ", "max ", "; 0 failed"] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
}

#[test]
fn bench_brski_bootstraps_every_pledge_and_keeps_their_state_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pledges = dir.path().join("devices");
    let lab = dir.path().join("lab");
    let args = ["bench", "brski", "--count", "6", "--concurrency", "3", "--format", "jws"];
    let p = pledges.to_str().unwrap();
    let l = lab.to_str().unwrap();
    let out = ok(&brski(&[&args[..], &["--pledge-state", p, "--state", l]].concat()));
    assert_summary(&out, 6, "bootstraps");
    let enrolled: Vec<_> = std::fs::read_dir(&pledges).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(enrolled.len(), 6, "{enrolled:?}");
    for d in &enrolled {
        for f in ["idevid.pem", "ldevid.pem", "ldevid.key", "domain-ca.pem", "voucher.vjj"] {
            assert!(d.join(f).is_file(), "{} lacks {f}", d.display());
        }
    }
    // The lab keeps the servers' state (databases) and no pledge directories of its own.
    assert!(lab.join("registrar").join("registrar.db").is_file());
    assert!(!lab.join("pledges").exists());
}

#[test]
fn bench_agent_issues_every_credential() {
    let out = ok(&brski(&["bench", "agent", "--count", "8", "--concurrency", "2"]));
    assert_summary(&out, 8, "credentials");
    let bad = brski(&["bench", "brski", "--count", "0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be positive"));
}
