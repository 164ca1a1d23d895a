//! Model 3: requests waiting for the owner's answer to the server's challenge. In memory (a
//! restart drops them; the proxy's poll then gets 404 and the agent asks again).

use super::error::Refusal;
use super::model::Approved;
use est::http::Reason;
use shared::agent::wire::Credential;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most pending requests held at once.
pub(crate) const MAX_PENDING: usize = 10_000;

/// Where a pending request stands.
#[derive(Debug, Clone)]
pub enum State {
    /// Waiting for the owner.
    Waiting(Box<Approved>),
    /// The owner answered and the credential was issued (or issuance failed).
    Done(Result<Credential, Refusal>),
}

/// One pending request.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Certificate hash of the client that created it (only it may poll).
    pub requester: String,
    /// The owner id the challenge is addressed to.
    pub owner_id: String,
    /// The compact challenge.
    pub challenge: String,
    /// Its hash.
    pub chal_hash: String,
    /// Its nonce.
    pub nonce: String,
    /// Its expiry.
    pub exp: i64,
    /// Answered (a second answer is refused).
    pub answered: bool,
    /// The state.
    pub state: State,
}

/// The pending requests by id.
#[derive(Debug, Default)]
pub struct Pending {
    map: Mutex<HashMap<String, Entry>>,
}

impl Pending {
    /// Adds an entry under `id`.
    pub fn insert(&self, id: String, entry: Entry, now: i64) -> Result<(), Refusal> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_PENDING {
            m.retain(|_, e| e.exp + 3600 >= now);
        }
        if m.len() >= MAX_PENDING {
            return Err(Refusal::new(Reason::Busy, "too many pending owner challenges"));
        }
        m.insert(id, entry);
        Ok(())
    }

    /// How many requests wait for an owner's answer (unanswered and unexpired).
    pub fn waiting(&self, now: i64) -> usize {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.values().filter(|e| !e.answered && e.exp >= now && matches!(e.state, State::Waiting(_))).count()
    }

    /// A copy of the entry.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Unanswered, unexpired challenges addressed to any of `owners`: (id, challenge).
    pub fn for_owners(&self, owners: &[String], now: i64) -> Vec<(String, String)> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|(_, e)| !e.answered && e.exp >= now && owners.contains(&e.owner_id))
            .map(|(id, e)| (id.clone(), e.challenge.clone()))
            .collect()
    }

    /// Marks `id` answered; returns the waiting request, or why it cannot be answered.
    pub fn claim_answer(&self, id: &str, now: i64) -> Result<Entry, Refusal> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.get_mut(id).ok_or_else(|| Refusal::new(Reason::NotFound, "no such challenge"))?;
        if e.answered {
            return Err(Refusal::new(Reason::Answered, "the challenge was already answered"));
        }
        if e.exp < now {
            return Err(Refusal::new(Reason::Time, "the challenge expired"));
        }
        e.answered = true;
        Ok(e.clone())
    }

    /// Reopens `id` after an answer that did not verify.
    pub fn reopen(&self, id: &str) {
        if let Some(e) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            e.answered = false;
        }
    }

    /// Records the outcome of `id`.
    pub fn finish(&self, id: &str, outcome: Result<Credential, Refusal>) {
        if let Some(e) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            e.state = State::Done(outcome);
        }
    }
}
