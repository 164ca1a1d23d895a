//! What the gateway's handlers share: the owner identity, the options, the limits and the
//! requests waiting for a person (in memory; their decision records on disk).

use super::check::{GatewayRequest, ProxyIdentity};
use super::limit::{RateLimiter, Slot, Slots};
use super::pending::{PendingDir, PendingRecord};
use super::problem::Refusal;
use super::upstream::{submit, Relayed};
use super::GatewayOptions;
use crate::OwnerIdentity;
use est::http::Reason;
use shared::agent::jwt::SKEW_SECS;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Finished requests are kept this long for the proxy to fetch.
const DONE_KEEP_SECS: i64 = 600;

/// The gateway.
pub(crate) struct Gateway {
    /// The owner (gateway) identity.
    pub owner: OwnerIdentity,
    /// Its options.
    pub opts: GatewayOptions,
    /// Per-proxy rate.
    pub limiter: RateLimiter,
    /// Requests in flight or waiting.
    pub slots: Slots,
    disk: PendingDir,
    items: Mutex<HashMap<String, Item>>,
}

struct Item {
    proxy: String,
    acr_exp: i64,
    created: i64,
    state: ItemState,
}

enum ItemState {
    Waiting(Box<GatewayRequest>, Slot),
    Submitting,
    Done(Result<Relayed, Refusal>),
}

/// What a poll finds.
pub(crate) enum Polled {
    /// Still waiting (202).
    Pending,
    /// Finished: relay this.
    Done(Result<Relayed, Refusal>),
}

impl Gateway {
    /// A gateway for `owner` with `opts`.
    pub(crate) fn new(owner: OwnerIdentity, opts: GatewayOptions) -> Self {
        Gateway {
            disk: PendingDir::of(&owner.dir),
            limiter: RateLimiter::new(opts.rate_per_sec),
            slots: Slots::new(opts.queue),
            owner,
            opts,
            items: Mutex::new(HashMap::new()),
        }
    }

    fn items(&self) -> std::sync::MutexGuard<'_, HashMap<String, Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a checked request for a person's decision; returns its id.
    pub(crate) fn enqueue(
        &self,
        req: GatewayRequest,
        proxy: &ProxyIdentity,
        slot: Slot,
        now: i64,
    ) -> Result<String, Refusal> {
        let id = shared::b64::encode_url(&shared::agent::jwt::random::<16>()?);
        let record = PendingRecord {
            id: id.clone(),
            agent_id: req.acr.agent_id.as_ref().map(|a| a.as_str().to_string()).unwrap_or_default(),
            proxy: proxy.hash.clone(),
            proxy_subject: proxy.subject.clone(),
            created: now,
            acr_exp: req.acr.claims.exp,
            status: "pending".into(),
        };
        self.disk.write(&record).map_err(Refusal::internal)?;
        let item = Item {
            proxy: proxy.hash.clone(),
            acr_exp: req.acr.claims.exp,
            created: now,
            state: ItemState::Waiting(Box::new(req), slot),
        };
        self.items().insert(id.clone(), item);
        tracing::info!(%id, agent = %record.agent_id, proxy = %proxy.subject, "waiting for approval");
        Ok(id)
    }

    /// Expires waiting requests whose ACR is over (giving their queue slots back) and forgets
    /// old finished ones. Runs before each new request takes a slot.
    pub(crate) fn sweep(&self, now: i64) {
        let mut items = self.items();
        items.retain(|id, it| match it.state {
            ItemState::Done(_) => now - it.created < DONE_KEEP_SECS,
            ItemState::Waiting(..) if now > it.acr_exp + SKEW_SECS => {
                self.disk.remove(id);
                it.state = ItemState::Done(Err(too_late()));
                true
            }
            _ => true,
        });
    }

    /// A poll by `proxy`: the decision on disk moves the request on; an approval submits it
    /// (in its own task, so a proxy hanging up does not leave the request half done).
    pub(crate) async fn poll(self: &Arc<Self>, id: &str, proxy: &str, now: i64) -> Result<Polled, Refusal> {
        let (req, slot) = {
            let mut items = self.items();
            let it = items.get_mut(id).ok_or_else(|| Refusal::new(Reason::NotFound, "no such request"))?;
            if it.proxy != proxy {
                return Err(Refusal::new(Reason::NotYours, "another proxy sent this request"));
            }
            match &it.state {
                ItemState::Done(r) => return Ok(Polled::Done(r.clone())),
                ItemState::Submitting => return Ok(Polled::Pending),
                ItemState::Waiting(..) => {}
            }
            match self.decision(id, it.acr_exp, now) {
                None => return Ok(Polled::Pending),
                Some(Err(p)) => {
                    it.state = ItemState::Done(Err(p.clone()));
                    return Ok(Polled::Done(Err(p)));
                }
                Some(Ok(())) => match std::mem::replace(&mut it.state, ItemState::Submitting) {
                    ItemState::Waiting(req, slot) => (req, slot),
                    _ => return Ok(Polled::Pending),
                },
            }
        };
        let (gw, id, proxy) = (self.clone(), id.to_string(), proxy.to_string());
        let task = tokio::spawn(async move {
            let result = submit(&gw.owner, &gw.opts, &req, &proxy).await;
            drop(slot);
            if let Some(it) = gw.items().get_mut(&id) {
                it.state = ItemState::Done(result.clone());
            }
            result
        });
        task.await.map(Polled::Done).map_err(Refusal::internal)
    }

    /// The person's decision: None while pending, Ok to submit, Err for a refusal.
    fn decision(&self, id: &str, acr_exp: i64, now: i64) -> Option<Result<(), Refusal>> {
        let status = self.disk.read(id).map(|r| r.status).unwrap_or_else(|_| "removed".into());
        if status == "pending" && now <= acr_exp + SKEW_SECS {
            return None;
        }
        self.disk.remove(id);
        match status.as_str() {
            _ if now > acr_exp + SKEW_SECS => Some(Err(too_late())),
            "approved" => Some(Ok(())),
            _ => Some(Err(Refusal::new(Reason::Denied, "the owner denied this request"))),
        }
    }
}

fn too_late() -> Refusal {
    Refusal::new(Reason::Time, "no owner decision before the request expired; ask again")
}
