//! Header names in their registered spelling on HTTP/1.1. hyper writes header names in title
//! case (`Content-Type`, `Retry-After`), which is the registered spelling of almost every field
//! (RFC 9110 §18.4), but not of `WWW-Authenticate`, which title case makes `Www-Authenticate`.
//! Field names are case-insensitive (RFC 9110 §5.1), yet the most deployed EST client compares
//! them case-sensitively and so never sees the Basic challenge. hyper offers no way to choose
//! the case of a name it writes, so the response head is corrected as it is written: same
//! length, only inside a head (a write that starts with `HTTP/1.`, up to its blank line).
//! A head split across two writes would keep hyper's spelling past the split; heads are a few
//! hundred bytes and the TLS stream takes them whole.

/// Title-case spellings hyper writes, and the registered spelling written instead.
const RESPELL: [(&[u8], &[u8]); 1] = [(b"\r\nWww-Authenticate:", b"\r\nWWW-Authenticate:")];

/// `buf` with the names of its response head respelled, when it starts a head that needs it.
pub(crate) fn respelled(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let head_end = find(buf, b"\r\n\r\n").map_or(buf.len(), |i| i + 2);
    let head = &buf[..head_end];
    if !RESPELL.iter().any(|(from, _)| find(head, from).is_some()) {
        return None;
    }
    let mut out = buf.to_vec();
    for (from, to) in RESPELL {
        let mut at = 0;
        while let Some(i) = find(&out[at..head_end], from) {
            out[at + i..at + i + to.len()].copy_from_slice(to);
            at += i + to.len();
        }
    }
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_in_a_response_head_are_respelled() {
        let head = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: x\r\nWww-Authenticate: Basic realm=\"est\"\r\n\r\n\r\nWww-Authenticate: body";
        let out = respelled(head).unwrap();
        assert_eq!(out.len(), head.len());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nWWW-Authenticate: Basic realm=\"est\"\r\n"));
        assert!(text.ends_with("\r\nWww-Authenticate: body"), "the body is left alone: {text}");
        assert!(respelled(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_none());
        assert!(respelled(b"some body\r\nWww-Authenticate: x").is_none());
    }
}
