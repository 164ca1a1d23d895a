//! Owner grants and revocations, kept in the store: a grant lets renewals with the same agent
//! key reuse an owner approval until `grant_exp`; revoking an agent, an owner or a grant makes
//! later renewals (and new issuance for a revoked agent or owner) fail.

use serde::{Deserialize, Serialize};
use shared::agent::Model;
use shared::crypto::sha256;
use shared::store::{Store, StoreError, StoreExt};

const GRANT_PREFIX: &str = "agent.grant.";
const REVOKED_AGENT: &str = "agent.revoked.agent.";
const REVOKED_OWNER: &str = "agent.revoked.owner.";

/// An owner's grant for one agent key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The agent id.
    pub agent_id: String,
    /// The agent key's thumbprint.
    pub jkt: String,
    /// The owner id.
    pub owner: String,
    /// The owner key's kid.
    pub owner_kid: String,
    /// The owner key (b64url DER SubjectPublicKeyInfo).
    pub owner_spki: String,
    /// The model.
    pub model: Model,
    /// The compact OA.
    pub oa: String,
    /// The OA's iat.
    pub approved_at: i64,
    /// When the grant ends.
    pub grant_exp: i64,
    /// Model 2: b64url SHA-256 of the gateway certificate.
    #[serde(default)]
    pub org_hash: Option<String>,
    /// Model 3: the challenge hash.
    #[serde(default)]
    pub chal_hash: Option<String>,
    /// The owner's constraints from the approval (they bind renewals too).
    #[serde(default)]
    pub constraints: Option<shared::agent::oa::Constraints>,
    /// Revoked by an operator.
    #[serde(default)]
    pub revoked: bool,
}

/// The store key of the grant for (agent id, key thumbprint).
pub(crate) fn grant_key(agent_id: &str, jkt: &str) -> String {
    format!("{GRANT_PREFIX}{}", hex::encode(sha256(format!("{agent_id}\n{jkt}").as_bytes())))
}

/// The grant for (agent id, key thumbprint), if any.
pub(crate) async fn get(store: &dyn Store, agent_id: &str, jkt: &str) -> Result<Option<Grant>, StoreError> {
    store.get_setting_json(&grant_key(agent_id, jkt)).await
}

/// Stores a grant.
pub(crate) async fn put(store: &dyn Store, g: &Grant) -> Result<(), StoreError> {
    store.put_setting_json(&grant_key(&g.agent_id, &g.jkt), g).await
}

/// Every grant.
pub async fn all(store: &dyn Store) -> Result<Vec<Grant>, StoreError> {
    let rows = store.settings_with_prefix(GRANT_PREFIX).await?;
    Ok(rows.into_iter().filter_map(|(_, v)| serde_json::from_str(&v).ok()).collect())
}

/// A revocation record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Revoked {
    /// When (Unix seconds).
    pub at: i64,
    /// Why.
    pub reason: String,
}

/// Whether the agent id is revoked.
pub(crate) async fn agent_revoked(store: &dyn Store, agent_id: &str) -> Result<Option<Revoked>, StoreError> {
    store.get_setting_json(&format!("{REVOKED_AGENT}{agent_id}")).await
}

/// Whether the owner id is revoked.
pub(crate) async fn owner_revoked(store: &dyn Store, owner: &str) -> Result<Option<Revoked>, StoreError> {
    store.get_setting_json(&format!("{REVOKED_OWNER}{owner}")).await
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// Every credential and grant of this agent id.
    Agent(String),
    /// This owner and every grant it gave.
    Owner(String),
    /// The grants of this agent id (issuance without an owner stays possible).
    Grant(String),
}

/// Revokes `target`; returns how many grants were revoked with it.
pub async fn revoke(
    store: &dyn Store,
    target: &RevokeTarget,
    reason: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let rec = Revoked { at: now, reason: reason.to_string() };
    match target {
        RevokeTarget::Agent(a) => store.put_setting_json(&format!("{REVOKED_AGENT}{a}"), &rec).await?,
        RevokeTarget::Owner(o) => store.put_setting_json(&format!("{REVOKED_OWNER}{o}"), &rec).await?,
        RevokeTarget::Grant(_) => {}
    }
    let mut n = 0;
    for mut g in all(store).await? {
        let hit = match target {
            RevokeTarget::Agent(a) | RevokeTarget::Grant(a) => &g.agent_id == a,
            RevokeTarget::Owner(o) => &g.owner == o,
        };
        if hit && !g.revoked {
            g.revoked = true;
            put(store, &g).await?;
            n += 1;
        }
    }
    Ok(n)
}
