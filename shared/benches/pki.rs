//! The EST / registrar enrollment step: check a CSR's proof of possession, then issue.
//!
//! Setup, outside the measured loops: a P-256 CA made with [`create_ca`] and a prebuilt DER
//! P-256 CSR (subject with serialNumber, one DNS subjectAltName).
//!
//! * `pki/csr_verify`: [`Csr::verify_der`] alone (parse + ECDSA signature check).
//! * `pki/csr_verify_and_issue`: [`Csr::verify_der`] followed by
//!   [`CertificateAuthority::issue`] under [`Profile::end_entity`] (build and sign the
//!   certificate).
//!
//! Run: `cargo bench -p shared --bench pki` (add `-- --quick` for a short run).
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::{build_csr, create_ca, parse_name, CertificateAuthority, Csr, Profile, San};
use std::hint::black_box;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86400);

fn bench(c: &mut Criterion) {
    let ca_key = SoftwareKey::generate(Algorithm::Es256).expect("CA key");
    let ca_cert = create_ca("CN=Bench Domain CA", &ca_key, DAY * 365, None).expect("CA certificate");
    let ca = CertificateAuthority::new(ca_cert, Box::new(ca_key)).expect("CA");
    let key = SoftwareKey::generate(Algorithm::Es256).expect("pledge key");
    let subject = parse_name("serialNumber=00-D0-E5-F2-00-02,CN=pledge").expect("name");
    let csr_der = build_csr(&subject, &[San::Dns("pledge.example".into())], &key).expect("CSR");
    let profile = Profile::end_entity(DAY * 365);

    let mut g = c.benchmark_group("pki");
    g.bench_function("csr_verify", |b| b.iter(|| Csr::verify_der(black_box(&csr_der)).expect("CSR")));
    g.bench_function("csr_verify_and_issue", |b| {
        b.iter(|| {
            let csr = Csr::verify_der(black_box(&csr_der)).expect("CSR");
            ca.issue(&csr, &profile).expect("issue")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
