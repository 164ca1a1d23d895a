//! Voucher signing and verification in each format (CMS, JWS, COSE).
//!
//! Setup, outside the measured loops: a P-256 vendor CA made with [`create_ca`], a P-256 MASA
//! key whose certificate the CA issues from a CSR (a one-level chain), and a typical voucher
//! (logged assertion, nonce, serial number, a real certificate as pinned-domain-cert).
//!
//! * `voucher_sign/<format>`: [`sign_voucher`] (encode, sign, and the parse it ends with).
//! * `voucher_verify/<format>`: what a pledge does with the received bytes:
//!   [`SignedVoucher::parse`], then signature, certificate path and payload decoding
//!   (`Signed::verify`).
//!
//! Run: `cargo bench -p shared --bench voucher` (add `-- --quick` for a short run).
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use der::Encode;
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::{build_csr, create_ca, parse_name, CertificateAuthority, Csr, Profile};
use shared::signed::{Format, Trust};
use shared::voucher::{sign_voucher, Assertion, Kind, Nonce, SignedVoucher, Voucher};
use std::hint::black_box;
use std::time::Duration;
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86400);

/// The MASA: its key, its certificate (issued by the vendor CA), and the trust a pledge has.
struct Masa {
    key: SoftwareKey,
    chain: Vec<Certificate>,
    trust: Trust,
}

fn masa() -> Masa {
    let ca_key = SoftwareKey::generate(Algorithm::Es256).expect("CA key");
    let ca_cert = create_ca("CN=Bench Vendor CA", &ca_key, DAY * 365, None).expect("CA certificate");
    let ca = CertificateAuthority::new(ca_cert, Box::new(ca_key)).expect("CA");
    let key = SoftwareKey::generate(Algorithm::Es256).expect("MASA key");
    let csr_der = build_csr(&parse_name("CN=Bench MASA").expect("name"), &[], &key).expect("CSR");
    let csr = Csr::verify_der(&csr_der).expect("CSR verifies");
    let cert = ca.issue(&csr, &Profile::end_entity(DAY * 30)).expect("MASA certificate");
    Masa { key, chain: vec![cert], trust: Trust::now(vec![ca.certificate().clone()]) }
}

fn sample_voucher(pinned: &Certificate) -> Voucher {
    let mut v = Voucher::new(Kind::Voucher);
    v.assertion = Some(Assertion::Logged);
    v.serial_number = Some("00-D0-E5-F2-00-02".into());
    v.nonce = Some(Nonce::from_bytes(&[7; 16]));
    v.created_on = Some(time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("time"));
    v.pinned_domain_cert = Some(pinned.to_der().expect("DER"));
    v
}

fn bench(c: &mut Criterion) {
    let m = masa();
    let anchor = &m.trust.anchors[0];
    let v = sample_voucher(anchor);
    let formats = [Format::Cms, Format::Jws, Format::Cose];

    let mut sign = c.benchmark_group("voucher_sign");
    for format in formats {
        sign.bench_with_input(BenchmarkId::from_parameter(format), &format, |b, &f| {
            b.iter(|| sign_voucher(black_box(&v), f, &m.key, &m.chain).expect("sign"))
        });
    }
    sign.finish();

    let mut verify = c.benchmark_group("voucher_verify");
    for format in formats {
        let bytes = sign_voucher(&v, format, &m.key, &m.chain).expect("sign").bytes().to_vec();
        verify.bench_with_input(BenchmarkId::from_parameter(format), &bytes, |b, bytes| {
            b.iter(|| {
                let signed = SignedVoucher::parse(black_box(bytes)).expect("parse");
                signed.verify(&m.trust).expect("verify")
            })
        });
    }
    verify.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
