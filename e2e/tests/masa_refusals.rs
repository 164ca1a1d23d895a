//! Every refusal of the MASA over real TLS: its RFC 8995 §5.6 status, its reason in the
//! answer (problem JSON or plain text by Accept), and its record in the store's audit log.

#[path = "masa_common/mod.rs"]
mod common;

use axum::http::StatusCode;
use common::{nonce, pvr_signed, rvr, rvr_signed, start, Domain, Lab, RvrSpec, SERIAL};
use registrar::MasaReply;
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::{self, create_ca, CertificateAuthority, Profile};
use shared::signed::Format;
use std::time::Duration;

const REFUSED: &str = "masa.voucher.refused";

/// Posts `rvr` as the owner registrar (CMS) and returns the reply.
async fn post(lab: &Lab, domain: &Domain, rvr: Vec<u8>) -> MasaReply {
    lab.client(domain).request_voucher(&rvr, Format::Cms, &[Format::Cms]).await.unwrap()
}

/// Asserts the status, the reason in the answer, and the audit record.
async fn assert_refused(lab: &Lab, reply: &MasaReply, status: StatusCode, reason: &str) {
    assert_eq!(reply.status, status, "reason: {:?}", reply.reason);
    let text = reply.reason.clone().unwrap_or_default();
    assert!(text.contains(reason), "expected {reason:?} in {text:?}");
    assert!(lab.refusal_recorded(REFUSED, status.as_u16(), reason).await, "no audit record for {reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_without_cmc_ra_is_refused() {
    let lab = start(|_| {}).await;
    let plain = Domain::new("Plain TLS", false);
    let n = nonce();
    let pvr = lab.pvr(Some(&n), &plain.registrar, Format::Cms);
    let reply =
        post(&lab, &plain, rvr(&plain, &RvrSpec::for_device(&lab.device, Some(n), Some(pvr)), Format::Cms))
            .await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "lacks extended key usage id-kp-cmcRA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badly_signed_rvr_is_refused() {
    let lab = start(|_| {}).await;
    let n = nonce();
    let pvr = lab.pvr(Some(&n), &lab.owner.registrar, Format::Cms);
    let spec = RvrSpec::for_device(&lab.device, Some(n), Some(pvr));
    let wrong_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let reply = post(&lab, &lab.owner, rvr_signed(&wrong_key, &lab.owner.chain(), &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "signature does not verify").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvr_not_signed_by_its_idevid_is_refused() {
    let lab = start(|_| {}).await;
    let n = nonce();
    let wrong_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let idevid = std::slice::from_ref(&lab.device.idevid);
    let pvr = pvr_signed(&wrong_key, idevid, SERIAL, Some(&n), &lab.owner.registrar, Format::Cms);
    let spec = RvrSpec::for_device(&lab.device, Some(n), Some(pvr));
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "not signed by the IDevID it carries").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idevid_of_another_manufacturer_is_refused() {
    let lab = start(|_| {}).await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let other_ca =
        create_ca("CN=Other Manufacturer CA", &key, Duration::from_secs(86_400 * 365), Some(0)).unwrap();
    let other = CertificateAuthority::new(other_ca, Box::new(key)).unwrap();
    let device_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(
        &shared::keys::Signer::public_key_der(&device_key),
    )
    .unwrap();
    let subject = pki::name_with_serial("CN=Counterfeit", SERIAL).unwrap();
    let fake =
        other.issue_for_key(spki, subject, &[], &Profile::end_entity(Duration::from_secs(86_400))).unwrap();
    let n = nonce();
    let pvr = pvr_signed(
        &device_key,
        std::slice::from_ref(&fake),
        SERIAL,
        Some(&n),
        &lab.owner.registrar,
        Format::Cms,
    );
    let spec = RvrSpec {
        idevid_issuer: Some(pki::idevid_issuer(&fake)),
        ..RvrSpec::for_device(&lab.device, Some(n), Some(pvr))
    };
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "not issued by this manufacturer's CA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_mismatch_between_pvr_and_rvr_is_refused() {
    let lab = start(|_| {}).await;
    let pvr = lab.pvr(Some(&nonce()), &lab.owner.registrar, Format::Cms);
    let spec = RvrSpec::for_device(&lab.device, Some(nonce()), Some(pvr));
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(
        &lab,
        &reply,
        StatusCode::FORBIDDEN,
        "nonce of the registrar voucher-request does not match",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proximity_cert_outside_the_rvr_chain_is_refused() {
    let lab = start(|_| {}).await;
    let elsewhere = Domain::new("On Path Attacker", true);
    let n = nonce();
    let pvr = lab.pvr(Some(&n), &elsewhere.registrar, Format::Cms);
    let spec = RvrSpec::for_device(&lab.device, Some(n), Some(pvr));
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "proximity-registrar-cert is not in the registrar")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_not_minted_here_is_404() {
    let lab = start(|_| {}).await;
    let spec = RvrSpec { serial: "NOT-OURS-1".into(), nonce: Some(nonce()), idevid_issuer: None, pvr: None };
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(
        &lab,
        &reply,
        StatusCode::NOT_FOUND,
        "\"NOT-OURS-1\" is not a device of this manufacturer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_that_does_not_own_the_serial_is_refused() {
    let lab = start(|_| {}).await;
    let other = Domain::new("Other Campus", true);
    let n = nonce();
    let pvr = lab.pvr(Some(&n), &other.registrar, Format::Cms);
    let spec = RvrSpec::for_device(&lab.device, Some(n), Some(pvr));
    let reply = post(&lab, &other, rvr(&other, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "serial SN-0001 is claimed by another domain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_device_without_allow_any_owner_is_refused() {
    let lab = start(|_| {}).await;
    lab.masa.mint_idevid("SN-FREE").await.unwrap();
    let spec = RvrSpec { serial: "SN-FREE".into(), nonce: Some(nonce()), idevid_issuer: None, pvr: None };
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "serial SN-FREE has no ownership record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_ownership_record_does_not_count() {
    let lab = start(|_| {}).await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    lab.masa.claim(SERIAL, masa::Owner::DomainCa(lab.owner.ca_cert()), Some(past)).await.unwrap();
    let reply = post(&lab, &lab.owner, lab.good_rvr(&nonce(), Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "has no ownership record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonceless_request_refused_unless_enabled() {
    let lab = start(|_| {}).await;
    let spec = RvrSpec::for_device(&lab.device, None, None);
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "does not issue nonceless vouchers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonceless_request_refused_without_an_authenticated_owner() {
    let lab = start(|c| {
        c.nonceless = true;
        c.allow_any_owner = true;
    })
    .await;
    lab.masa.mint_idevid("SN-LAB").await.unwrap();
    let spec = RvrSpec { serial: "SN-LAB".into(), nonce: None, idevid_issuer: None, pvr: None };
    let reply = post(&lab, &lab.owner, rvr(&lab.owner, &spec, Format::Cms)).await;
    assert_refused(&lab, &reply, StatusCode::FORBIDDEN, "allow_any_owner does not authorise nonceless").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_415() {
    let lab = start(|_| {}).await;
    let body = lab.good_rvr(&nonce(), Format::Cms);
    let reply = lab.client(&lab.owner).post("requestvoucher", "application/json", "*/*", body).await.unwrap();
    assert_refused(&lab, &reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "got 'application/json'").await;
    // A body that is not what its Content-Type says: 400.
    let body = lab.good_rvr(&nonce(), Format::Jws);
    let reply =
        lab.client(&lab.owner).post("requestvoucher", Format::Cms.media_type(), "*/*", body).await.unwrap();
    assert_refused(&lab, &reply, StatusCode::BAD_REQUEST, "is a JWS artifact").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacceptable_accept_is_406() {
    let lab = start(|_| {}).await;
    let body = lab.good_rvr(&nonce(), Format::Cms);
    let accept = format!("application/pkcs7-mime, {}", est::http::MEDIA_PROBLEM);
    let reply =
        lab.client(&lab.owner).post("requestvoucher", Format::Cms.media_type(), &accept, body).await.unwrap();
    assert_eq!(reply.content_type, est::http::MEDIA_PROBLEM);
    assert_refused(&lab, &reply, StatusCode::NOT_ACCEPTABLE, "none of the media types in Accept").await;
    let problem: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(problem["status"], 406);
    assert_eq!(problem["type"], "tag:brski.dev,2026:problem/masa/not-acceptable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_body_is_413() {
    let lab = start(|_| {}).await;
    let body = vec![0x30; 200 * 1024];
    let reply =
        lab.client(&lab.owner).post("requestvoucher", Format::Cms.media_type(), "*/*", body).await.unwrap();
    assert_refused(&lab, &reply, StatusCode::PAYLOAD_TOO_LARGE, "exceeds the limit of 131072 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_plain_text_without_problem_json_in_accept() {
    let lab = start(|_| {}).await;
    let spec = RvrSpec { serial: "NOT-OURS-2".into(), nonce: Some(nonce()), idevid_issuer: None, pvr: None };
    let body = rvr(&lab.owner, &spec, Format::Cms);
    let reply =
        lab.client(&lab.owner).post("requestvoucher", Format::Cms.media_type(), "*/*", body).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    let text = String::from_utf8(reply.body).unwrap();
    assert!(text.contains("is not a device of this manufacturer"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rvr_carrying_a_proximity_cert_is_400() {
    let lab = start(|_| {}).await;
    let mut v = shared::voucher::Voucher::new(shared::voucher::Kind::Request);
    v.serial_number = Some(SERIAL.into());
    v.nonce = Some(nonce());
    v.proximity_registrar_cert = Some(pki::cert_to_der(&lab.owner.registrar).unwrap());
    let signed =
        shared::voucher::sign_voucher(&v, Format::Cms, lab.owner.key.as_ref(), &lab.owner.chain()).unwrap();
    let reply = post(&lab, &lab.owner, signed.bytes().to_vec()).await;
    assert_refused(&lab, &reply, StatusCode::BAD_REQUEST, "must not carry proximity-registrar-cert").await;
}
