//! A bounds-checked big-endian reader over TPM marshalled bytes (TPM 2.0 Part 1 §B, Part 2 §10):
//! every read names the field it is for, so a truncation says where.

use super::err;
use crate::agent::AgentError;

/// A bounds-checked big-endian reader over TPM marshalled bytes.
pub(super) struct Cursor<'a> {
    /// The whole input.
    buf: &'a [u8],
    /// Where the next read starts.
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A reader at the start of `buf`.
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AgentError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| err(format!("attest truncated in {what}")))?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| err(format!("attest truncated in {what}")))?;
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AgentError> {
        <[u8; N]>::try_from(self.take(N, what)?).map_err(|_| err(format!("attest truncated in {what}")))
    }

    /// The next big-endian `u8`.
    pub(super) fn u8(&mut self, what: &str) -> Result<u8, AgentError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    /// The next big-endian `u16`.
    pub(super) fn u16(&mut self, what: &str) -> Result<u16, AgentError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// The next big-endian `u32`.
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, AgentError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// The next big-endian `u64`.
    pub(super) fn u64(&mut self, what: &str) -> Result<u64, AgentError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A TPM2B: u16 size, then that many bytes.
    pub(super) fn tpm2b(&mut self, what: &str) -> Result<&'a [u8], AgentError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// How many bytes are left.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}
