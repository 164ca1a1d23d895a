//! Agent identifiers: `wimse://<trust-domain>/agent/<name>` (or `spiffe://` when configured).
//! Absolute URI without query, fragment, userinfo or port; compared whole.

use super::AgentError;

/// Longest agent or owner identifier accepted.
pub const MAX_ID_LEN: usize = 2048;

/// A syntactically valid agent identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId {
    uri: String,
    domain_end: usize,
}

impl AgentId {
    /// Parses and checks an agent id: scheme `wimse` or `spiffe`, a trust domain (lower-case
    /// DNS-like label characters, no port or userinfo), and a non-empty path without query or
    /// fragment, `.`/`..` segments or percent-encoding.
    pub fn parse(uri: &str) -> Result<Self, AgentError> {
        let bad = |d: &str| AgentError::malformed("agent id", format!("{uri:?}: {d}"));
        if uri.len() > MAX_ID_LEN {
            return Err(bad("too long"));
        }
        let rest = uri
            .strip_prefix("wimse://")
            .or_else(|| uri.strip_prefix("spiffe://"))
            .ok_or_else(|| bad("scheme must be wimse:// or spiffe://"))?;
        let scheme_len = uri.len() - rest.len();
        let (domain, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        check_trust_domain(domain).map_err(|d| bad(&d))?;
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        for seg in path.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(bad("empty, '.' or '..' path segment"));
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return Err(bad("path characters must be letters, digits, '-', '.', '_' or '~'"));
            }
        }
        Ok(AgentId { uri: uri.to_string(), domain_end: scheme_len + domain.len() })
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain (the authority part).
    pub fn trust_domain(&self) -> &str {
        let start = self.uri.find("://").map(|i| i + 3).unwrap_or(0);
        &self.uri[start..self.domain_end]
    }

    /// The path after the trust domain, without the leading `/`.
    pub fn path(&self) -> &str {
        &self.uri[self.domain_end + 1..]
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri)
    }
}

/// A trust domain: lower-case letters, digits, '-', '.', '_'; no port, no userinfo.
pub fn check_trust_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() || domain.len() > 255 {
        return Err("trust domain must be 1 to 255 characters".into());
    }
    if !domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)) {
        return Err(
            "trust domain must be lower-case letters, digits, '-', '.', '_' (no port or userinfo)".into()
        );
    }
    Ok(())
}

/// Checks an owner id: an absolute URI (`mailto:`, `https://`, `wimse://...`) of printable
/// ASCII without spaces, at most [`MAX_ID_LEN`] long.
pub fn check_owner_id(id: &str) -> Result<(), AgentError> {
    let bad = |d: &str| AgentError::malformed("owner id", format!("{id:?}: {d}"));
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(bad("empty or too long"));
    }
    let (scheme, rest) = id.split_once(':').ok_or_else(|| bad("not an absolute URI"))?;
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() {
        return Err(bad("not an absolute URI"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must be printable ASCII without spaces"));
    }
    Ok(())
}

/// Matches an agent id against a policy pattern: exact, or a trailing `*` matching any rest
/// of the path (`wimse://campus.example/agent/build-*`).
pub fn id_matches(pattern: &str, id: &AgentId) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.as_str().starts_with(prefix),
        None => pattern == id.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_wimse_and_spiffe_ids() {
        let id = AgentId::parse("wimse://campus.example/agent/build-7").unwrap();
        assert_eq!(id.trust_domain(), "campus.example");
        assert_eq!(id.path(), "agent/build-7");
        assert!(AgentId::parse("spiffe://td/agent/x").is_ok());
    }

    #[test]
    fn refuses_query_fragment_port_userinfo_and_dots() {
        for bad in [
            "https://campus.example/agent/x",
            "wimse://campus.example/agent/x?q=1",
            "wimse://campus.example/agent/x#f",
            "wimse://campus.example:443/agent/x",
            "wimse://u@campus.example/agent/x",
            "wimse://campus.example/agent/../x",
            "wimse://campus.example/",
            "wimse://Campus.example/agent/x",
            "wimse://campus.example/agent/%41",
        ] {
            assert!(AgentId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn owner_ids_are_absolute_uris() {
        assert!(check_owner_id("mailto:alice@example.com").is_ok());
        assert!(check_owner_id("wimse://td/owner/ops").is_ok());
        assert!(check_owner_id("alice").is_err());
        assert!(check_owner_id("mailto:alice smith@example.com").is_err());
    }

    #[test]
    fn patterns_match_whole_or_prefix() {
        let id = AgentId::parse("wimse://td/agent/build-7").unwrap();
        assert!(id_matches("wimse://td/agent/build-*", &id));
        assert!(id_matches("wimse://td/agent/build-7", &id));
        assert!(!id_matches("wimse://td/agent/build-", &id));
        assert!(!id_matches("wimse://td/agent/other-*", &id));
    }
}
