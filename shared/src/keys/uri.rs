//! Key URIs: how configuration names a private key (`file:/path/key.pem`).

use super::{load_key_file, KeyError, Signer};
use std::path::PathBuf;

/// A parsed key URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUri {
    /// `file:<path>` or `file://<absolute path>`: a PKCS#8 or SEC1 PEM file.
    File(PathBuf),
}

impl std::str::FromStr for KeyUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.split_once(':') {
            Some(("file", rest)) if !rest.is_empty() => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                Ok(KeyUri::File(PathBuf::from(path)))
            }
            _ => Err(KeyError::UnsupportedUri(s.to_string())),
        }
    }
}

impl std::fmt::Display for KeyUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyUri::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Opens the private key a URI names, as a [`Signer`].
pub fn load_signer(uri: &str) -> Result<Box<dyn Signer>, KeyError> {
    match uri.parse::<KeyUri>()? {
        KeyUri::File(path) => Ok(Box::new(load_key_file(&path)?)),
    }
}
