//! `brski registrar agent grants|revoke`: owner grants and revocation of agents, owners and
//! grants. Works on the store while the server runs; renewals of what was revoked are refused.

use super::Where;
use clap::{Args, Subcommand};
use registrar::open_store;
use registrar::RevokeTarget;
use shared::store::AuditEvent;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// List owner grants (agent id, owner, model, until when, revoked).
    Grants(Where),
    /// Revoke an agent, an owner (and every grant it gave) or the grants of an agent.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// Revoke this agent id: no more credentials for it.
    #[arg(long, group = "target")]
    agent: Option<String>,
    /// Revoke this owner id: its approvals and grants no longer count.
    #[arg(long, group = "target")]
    owner: Option<String>,
    /// Revoke the owner grants of this agent id (renewals need a new approval).
    #[arg(long, group = "target")]
    grant: Option<String>,
    /// Why (recorded in the audit log).
    #[arg(long, default_value = "revoked by the operator")]
    reason: String,
    #[command(flatten)]
    at: Where,
}

/// Runs an agent administration command.
pub(super) async fn run(cmd: AgentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Grants(w) => list(w).await,
        AgentCommand::Revoke(a) => revoke(a).await,
    }
}

async fn list(w: Where) -> anyhow::Result<ExitCode> {
    let store = open_store(&w.path()?).await?;
    let all = registrar::all_grants(store.as_ref()).await?;
    if all.is_empty() {
        println!("no owner grants");
    }
    for g in all {
        let until =
            time::OffsetDateTime::from_unix_timestamp(g.grant_exp).map(|t| t.to_string()).unwrap_or_default();
        let state = if g.revoked { "REVOKED" } else { "active" };
        println!(
            "{}  owner={}  model={}  until={until}  {state}  key={}",
            g.agent_id, g.owner, g.model, g.jkt
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let target = match (a.agent, a.owner, a.grant) {
        (Some(x), None, None) => RevokeTarget::Agent(x),
        (None, Some(x), None) => RevokeTarget::Owner(x),
        (None, None, Some(x)) => RevokeTarget::Grant(x),
        _ => anyhow::bail!("give exactly one of --agent, --owner, --grant"),
    };
    let store = open_store(&a.at.path()?).await?;
    let now = time::OffsetDateTime::now_utc();
    let n = registrar::revoke(store.as_ref(), &target, &a.reason, now.unix_timestamp()).await?;
    let (kind, subject) = match &target {
        RevokeTarget::Agent(x) => ("agent", x),
        RevokeTarget::Owner(x) => ("owner", x),
        RevokeTarget::Grant(x) => ("grant", x),
    };
    let event = AuditEvent {
        actor: "operator".into(),
        action: format!("agent.{kind}.revoked"),
        subject: subject.clone(),
        detail: serde_json::json!({"reason": a.reason, "grants_revoked": n}),
        at: now,
    };
    store.append_audit(&event).await?;
    println!("revoked {kind} {subject} ({n} grant(s) revoked with it)");
    Ok(ExitCode::SUCCESS)
}
