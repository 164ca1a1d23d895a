//! Parsing and printing `pkcs11:` and `tpm:` key URIs; refusals never show a PIN.

use super::*;

#[test]
fn parses_rfc7512_uri() {
    let u: KeyUri = "pkcs11:token=My%20CA;object=ca-key;id=%01%02;type=private\
                     ?module-path=/opt/lib/p11.so&pin-value=1234"
        .parse()
        .unwrap();
    let KeyUri::Pkcs11(u) = u else { panic!("not pkcs11") };
    assert_eq!(u.token.as_deref(), Some("My CA"));
    assert_eq!(u.object.as_deref(), Some("ca-key"));
    assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(u.module_path, PathBuf::from("/opt/lib/p11.so"));
    assert_eq!(u.pin, Some(PinSource::Value("1234".into())));
    let shown = u.to_string();
    assert!(!shown.contains("1234"), "{shown}");
    assert!(!format!("{u:?}").contains("1234"));
    assert!(shown.contains("pin-value=***"));
}

#[test]
fn pkcs11_defaults_and_pin_source() {
    let KeyUri::Pkcs11(u) = "pkcs11:object=k?pin-source=file:/run/pin".parse().unwrap() else {
        panic!("not pkcs11")
    };
    assert_eq!(u.module_path, PathBuf::from(DEFAULT_PKCS11_MODULE));
    assert_eq!(u.pin, Some(PinSource::File("/run/pin".into())));
    assert_eq!(u.to_string(), "pkcs11:object=k;type=private?pin-source=file:/run/pin");
}

#[test]
fn pkcs11_errors_hide_the_pin() {
    for bad in [
        "pkcs11:token=T?pin-value=s3cret",
        "pkcs11:object=k;type=cert?pin-value=s3cret",
        "pkcs11:object=k;bogus=1?pin-value=s3cret&x=1",
        "pkcs11:object=%zz?pin-value=s3cret",
    ] {
        let e = bad.parse::<KeyUri>().unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("pin-value=***"), "{e}");
    }
}

#[test]
fn parses_tpm_uris() {
    let u: KeyUri = "tpm:handle=0x81020001?tcti=swtpm:path=/run/s%26t/sock".parse().unwrap();
    let KeyUri::Tpm(t) = &u else { panic!("not tpm") };
    assert_eq!(t.handle, 0x8102_0001);
    assert_eq!(t.tcti.as_deref(), Some("swtpm:path=/run/s&t/sock"));
    assert_eq!(u.to_string().parse::<KeyUri>().unwrap(), u);
    let KeyUri::Tpm(d) = "tpm:handle=2164391938".parse().unwrap() else { panic!("not tpm") };
    assert_eq!((d.handle, d.tcti), (0x8102_0002, None));
    for bad in ["tpm:", "tpm:handle=0x80000001", "tpm:handle=zz", "tpm:handle=0x81000001?x=1", "tpm:key=1"] {
        assert!(bad.parse::<KeyUri>().is_err(), "{bad}");
    }
}

#[test]
fn redacts_every_pin_value() {
    assert_eq!(
        redact_pin("pkcs11:a?pin-value=1&b=2&pin-value=3"),
        "pkcs11:a?pin-value=***&b=2&pin-value=***"
    );
}

#[test]
fn pkcs11_refusals_say_which_attribute() {
    for (uri, why) in [
        ("pkcs11:object", "'object' has no '='"),
        ("pkcs11:object=%zz", "bad percent-encoding in object"),
        ("pkcs11:object=%ff", "object is not UTF-8"),
        ("pkcs11:object=k;slot-id=x", "slot-id is not a number"),
        ("pkcs11:object=k;type=cert", "only type=private names a signing key"),
        ("pkcs11:object=k;bogus=1", "unknown path attribute 'bogus'"),
        ("pkcs11:object=k?module-path", "'module-path' has no '='"),
        ("pkcs11:object=k?pin-source=%zz", "bad percent-encoding in pin-source"),
        ("pkcs11:object=k?pin-source=env:PIN", "pin-source must be file:<path>"),
        ("pkcs11:object=k?x=1", "unsupported query attribute 'x'"),
        ("pkcs11:token=T", "name the key with object= or id="),
    ] {
        let e = uri.parse::<KeyUri>().unwrap_err();
        assert!(matches!(e, KeyError::UnsupportedUri(_)), "{uri}: {e:?}");
        assert!(e.to_string().contains(&format!("{uri} ({why})")), "{uri}: {e}");
    }
}
