use super::{format_time, print_json, print_table};
use crate::cli::DeliveriesCommand;
use khoa_store::Store;
use std::sync::Arc;

pub async fn run(command: DeliveriesCommand, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    let DeliveriesCommand::List { json, limit } = command;
    let deliveries = store.deliveries(limit.clamp(1, 10_000)).await?;
    if json {
        let rows: Vec<serde_json::Value> = deliveries
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.notice.id, "client_id": d.notice.client_id, "uri": d.notice.uri, "sid": d.notice.sid, "sub": d.notice.sub,
                    "status": d.status, "attempts": d.attempts, "created_at": d.created_at,
                    "next_attempt_at": d.next_attempt_at, "delivered_at": d.delivered_at,
                    "last_status": d.last_status, "last_error": d.last_error,
                })
            })
            .collect();
        return print_json(&rows);
    }
    print_table(
        &["CREATED", "CLIENT", "STATUS", "ATTEMPTS", "NEXT", "LAST"],
        deliveries
            .iter()
            .map(|d| {
                vec![
                    format_time(d.created_at),
                    d.notice.client_id.clone(),
                    d.status.clone(),
                    d.attempts.to_string(),
                    if d.status == "pending" { format_time(d.next_attempt_at) } else { "-".into() },
                    d.last_error.clone().or(d.last_status.map(|s| format!("HTTP {s}"))).unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(())
}
