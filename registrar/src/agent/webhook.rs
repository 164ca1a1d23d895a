//! Model 3 delivery by webhook: the server POSTs each new challenge
//! (`{"id", "challenge", "response_uri"}`, `application/json`) to the owner's HTTPS URL, with a
//! timeout and a few retries. Polling `GET /owner/v1/challenges` works with or without it.

use super::policy::Webhook;
use axum::http::Uri;
use est::client::EstClient;
use est::tls::{client_config, ServerTrust};
use serde_json::Value;
use std::time::Duration;

/// Attempts per challenge.
pub(crate) const ATTEMPTS: u32 = 3;
/// Timeout of each attempt.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// Delivers `body` to the webhook; logs the outcome (the owner can still poll).
pub(crate) async fn deliver(hook: Webhook, body: Value) {
    for attempt in 1..=ATTEMPTS {
        match post(&hook, &body).await {
            Ok(status) if (200..300).contains(&status) => {
                tracing::info!(url = %hook.url, status, "owner challenge delivered by webhook");
                return;
            }
            Ok(status) => {
                tracing::warn!(url = %hook.url, status, attempt, "owner webhook refused the challenge")
            }
            Err(e) => tracing::warn!(url = %hook.url, error = %e, attempt, "owner webhook unreachable"),
        }
        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
    }
    tracing::warn!(url = %hook.url, "owner webhook failed; the owner must poll /owner/v1/challenges");
}

async fn post(hook: &Webhook, body: &Value) -> Result<u16, String> {
    let uri: Uri = hook.url.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("webhook URL has no host")?;
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let trust = if hook.anchors.is_empty() {
        ServerTrust::Implicit
    } else {
        ServerTrust::Explicit(hook.anchors.clone())
    };
    let tls = client_config(&trust, None).map_err(|e| e.to_string())?;
    let client = EstClient::new(&format!("https://{authority}"), None, tls)
        .map_err(|e| e.to_string())?
        .with_timeout(TIMEOUT);
    let work = async {
        let mut conn = client.connect().await.map_err(|e| e.to_string())?;
        let reply = conn
            .post_raw(&path, "application/json", None, body.to_string().into_bytes())
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.status.as_u16())
    };
    tokio::time::timeout(TIMEOUT, work).await.map_err(|_| "timed out".to_string())?
}
