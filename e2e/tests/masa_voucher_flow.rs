//! The MASA issuing vouchers over real TLS on loopback: every format verifies against the
//! manufacturer CA with the right nonce, serial and pin; OpenSSL accepts the CMS voucher;
//! nonceless and allow-any-owner vouchers; the audit log.

#[path = "masa_common/mod.rs"]
mod common;

use axum::http::StatusCode;
use common::{nonce, rvr, start, Domain, RvrSpec, SERIAL};
use shared::brski::domain_id;
use shared::pki;
use shared::signed::Format;
use shared::voucher::{check_registrar_pin, check_voucher, Assertion, Expectations};
use testkit::{peer, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_in_every_format_verify_against_the_manufacturer_ca() {
    let lab = start(|_| {}).await;
    let client = lab.client(&lab.owner);
    for format in [Format::Cms, Format::Jws, Format::Cose] {
        let n = nonce();
        let reply = client.request_voucher(&lab.good_rvr(&n, format), format, &[format]).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{format}: {:?}", reply.reason);
        assert_eq!(reply.content_type, format.media_type());
        assert_eq!(reply.format(), Some(format));
        let v = lab.verify_voucher(&reply.body);
        let expect = Expectations {
            nonce: Some(n.clone()),
            serial_number: Some(SERIAL.into()),
            idevid_issuer: Some(pki::idevid_issuer(&lab.device.idevid)),
            now: Some(time::OffsetDateTime::now_utc()),
            require_nonce: true,
            ..Default::default()
        };
        check_voucher(&v, &expect).unwrap();
        assert_eq!(v.assertion, Some(Assertion::Proximity), "{format}");
        assert_eq!(v.pinned_domain_cert, Some(pki::cert_to_der(&lab.owner.ca_cert()).unwrap()), "{format}");
        assert_eq!(v.domain_cert_revocation_checks, Some(false));
        assert!(v.expires_on.is_none() && v.prior_signed_voucher_request.is_none());
        check_registrar_pin(&v, &lab.owner.chain(), time::OffsetDateTime::now_utc()).unwrap();
    }
    // An empty accept list asks for the request's format; `*/*` (or no Accept) gets CMS.
    let reply = client.request_voucher(&lab.good_rvr(&nonce(), Format::Jws), Format::Jws, &[]).await.unwrap();
    assert_eq!(reply.format(), Some(Format::Jws));
    let rvr = lab.good_rvr(&nonce(), Format::Cose);
    let reply = client.post("requestvoucher", Format::Cose.media_type(), "*/*", rvr).await.unwrap();
    assert_eq!(reply.format(), Some(Format::Cms), "{:?}", reply.reason);
    let records = lab.masa.store().vouchers_for(SERIAL).await.unwrap();
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.domain == domain_id(&lab.owner.ca_cert())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_cms_verify_accepts_the_cms_voucher() {
    if !peer("openssl") {
        return;
    }
    let lab = start(|_| {}).await;
    let n = nonce();
    let reply = lab
        .client(&lab.owner)
        .request_voucher(&lab.good_rvr(&n, Format::Cms), Format::Cms, &[Format::Cms])
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    let d = lab.dir.path().join("device");
    std::fs::write(d.join("voucher.vcj"), &reply.body).unwrap();
    // The full chain: the voucher-signing certificate (carried in the CMS) to the anchor the
    // pledge holds. No -partial_chain or -noverify needed.
    let args = [
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        "voucher.vcj",
        "-binary",
        "-CAfile",
        "manufacturer-ca.pem",
        "-purpose",
        "any",
        "-out",
        "voucher.json",
    ];
    run_ok(&d, "openssl", &args);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("voucher.json")).unwrap()).unwrap();
    let v = &json["ietf-voucher:voucher"];
    assert_eq!(v["serial-number"], SERIAL);
    assert_eq!(v["nonce"], n.json_text());
    assert_eq!(v["assertion"], "proximity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonceless_voucher_for_the_authenticated_owner_expires() {
    let lab = start(|c| c.nonceless = true).await;
    let spec = RvrSpec::for_device(&lab.device, None, None);
    let before = time::OffsetDateTime::now_utc();
    let reply = lab
        .client(&lab.owner)
        .request_voucher(&rvr(&lab.owner, &spec, Format::Cms), Format::Cms, &[])
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    let v = lab.verify_voucher(&reply.body);
    assert!(v.nonce.is_none());
    assert_eq!(v.assertion, Some(Assertion::Verified));
    let expires = v.expires_on.expect("a nonceless voucher expires");
    let lifetime = expires - before;
    assert!(lifetime > time::Duration::minutes(19) && lifetime <= time::Duration::minutes(21), "{lifetime}");
    let registrar_end =
        lab.owner.registrar.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
    assert!(expires.unix_timestamp() <= registrar_end as i64);
    let log = lab
        .client(&lab.owner)
        .request_audit_log(&rvr(&lab.owner, &spec, Format::Cms), Format::Cms)
        .await
        .unwrap();
    assert_eq!(log.events.len(), 1);
    assert_eq!(log.events[0].nonce, None, "a nonceless voucher's log entry has nonce null");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_any_owner_issues_logged_vouchers_for_unclaimed_devices() {
    let lab = start(|c| c.allow_any_owner = true).await;
    lab.masa.mint_idevid("SN-UNCLAIMED").await.unwrap();
    let other = Domain::new("Test Lab", true);
    let n = nonce();
    let spec =
        RvrSpec { serial: "SN-UNCLAIMED".into(), nonce: Some(n.clone()), idevid_issuer: None, pvr: None };
    let reply =
        lab.client(&other).request_voucher(&rvr(&other, &spec, Format::Cms), Format::Cms, &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    let v = lab.verify_voucher(&reply.body);
    assert_eq!(v.assertion, Some(Assertion::Logged));
    assert_eq!(
        v.pinned_domain_cert,
        Some(pki::cert_to_der(&other.ca_cert()).unwrap()),
        "top of the RVR chain"
    );
    // A claimed device stays its owner's even with allow_any_owner.
    let spec = RvrSpec::for_device(&lab.device, Some(n), None);
    let reply =
        lab.client(&other).request_voucher(&rvr(&other, &spec, Format::Cms), Format::Cms, &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_lists_vouchers_for_the_domain_and_nobody_else() {
    let lab = start(|_| {}).await;
    let client = lab.client(&lab.owner);
    let nonces = [nonce(), nonce()];
    for n in &nonces {
        let reply = client.request_voucher(&lab.good_rvr(n, Format::Cms), Format::Cms, &[]).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    }
    let log = client.request_audit_log(&lab.good_rvr(&nonce(), Format::Cms), Format::Cms).await.unwrap();
    assert_eq!(log.version, 1);
    assert_eq!(log.events.len(), 2);
    for (event, n) in log.events.iter().zip(&nonces) {
        assert_eq!(event.domain_id, domain_id(&lab.owner.ca_cert()));
        assert_eq!(event.nonce.as_deref(), Some(n.json_text().as_str()));
        assert_eq!(event.assertion, shared::brski::LogAssertion::Proximity);
        shared::rfc3339::parse(&event.date).unwrap();
    }
    // A domain that never received a voucher and is not the owner: 404.
    let other = Domain::new("Elsewhere", true);
    let spec = RvrSpec::for_device(&lab.device, Some(nonce()), None);
    let err = lab
        .client(&other)
        .request_audit_log(&rvr(&other, &spec, Format::Cms), Format::Cms)
        .await
        .unwrap_err();
    match err {
        registrar::MasaClientError::Refused { status, reason } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(reason.contains("has no audit log for this domain"), "{reason}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(lab.refusal_recorded("masa.auditlog.refused", 404, "no audit log").await);
    // An unknown device: 404 as well.
    let spec = RvrSpec { serial: "NOBODY".into(), nonce: None, idevid_issuer: None, pvr: None };
    let err = client.request_audit_log(&rvr(&lab.owner, &spec, Format::Cms), Format::Cms).await.unwrap_err();
    assert!(
        matches!(err, registrar::MasaClientError::Refused { status: StatusCode::NOT_FOUND, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_keeps_its_connection_alive_across_requests() {
    let lab = start(|_| {}).await;
    let client = lab.client(&lab.owner);
    let clone = client.clone();
    assert_eq!(client.idle_connections(), 0);
    let n = nonce();
    let reply = client.request_voucher(&lab.good_rvr(&n, Format::Cms), Format::Cms, &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    assert_eq!(client.idle_connections(), 1);
    // The audit log and a second voucher go over the same connection (a new one would be
    // kept beside it), also from a clone.
    let log = clone.request_audit_log(&lab.good_rvr(&n, Format::Cms), Format::Cms).await.unwrap();
    assert_eq!(log.events.len(), 1);
    let reply = client.request_voucher(&lab.good_rvr(&nonce(), Format::Jws), Format::Jws, &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    assert_eq!(client.idle_connections(), 1);
    // Concurrent requests each get a connection; all are kept for later.
    let (r1, r2) = (lab.good_rvr(&nonce(), Format::Cms), lab.good_rvr(&nonce(), Format::Cms));
    let (a, b) = tokio::join!(
        client.request_voucher(&r1, Format::Cms, &[]),
        clone.request_voucher(&r2, Format::Cms, &[]),
    );
    assert_eq!((a.unwrap().status, b.unwrap().status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(client.idle_connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_the_tls_certificate() {
    use tower::ServiceExt;
    let lab = start(|_| {}).await;
    let reply = lab
        .client(&lab.owner)
        .request_voucher(&lab.good_rvr(&nonce(), Format::Cms), Format::Cms, &[])
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let app = masa::router(lab.masa.clone());
    let get = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let health = app.clone().oneshot(get("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.clone().oneshot(get("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = app.oneshot(get("/metrics")).await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let body = axum::body::to_bytes(metrics.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("brski_requests_total{role=\"masa\",route=\"/healthz\""), "{text}");
    // The MASA's TLS certificate names 127.0.0.1 (the client above checked it with webpki).
    let tls = &lab.masa.tls_chain()[0];
    assert!(pki::certificate_san(tls).contains(&pki::San::Ip([127, 0, 0, 1].into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cose_pvr_without_certificates_is_verified_with_the_idevid_in_the_rvr_x5bag() {
    let lab = start(|_| {}).await;
    let n = nonce();
    // cBRSKI: the pledge's COSE request carries no x5bag; the registrar puts the pledge's
    // certificates next to its own chain in the RVR's x5bag.
    let pvr = common::pvr_signed(&lab.device.key, &[], SERIAL, Some(&n), &lab.owner.registrar, Format::Cose);
    let mut bag = lab.owner.chain();
    bag.extend([lab.device.idevid.clone(), lab.masa.manufacturer_ca().clone()]);
    let spec = RvrSpec::for_device(&lab.device, Some(n.clone()), Some(pvr));
    let rvr = common::rvr_signed(lab.owner.key.as_ref(), &bag, &spec, Format::Cose);
    let reply = lab.client(&lab.owner).request_voucher(&rvr, Format::Cose, &[Format::Cose]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.reason);
    let v = lab.verify_voucher(&reply.body);
    assert_eq!(v.assertion, Some(Assertion::Proximity));
    assert_eq!(v.nonce, Some(n));
    assert_eq!(v.pinned_domain_cert, Some(pki::cert_to_der(&lab.owner.ca_cert()).unwrap()));
}
