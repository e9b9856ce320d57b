//! The audit trail. Events are written by the other aggregates in the transaction of
//! the change they record ([`insert`]), or on their own ([`AuditStore::record`]).

use crate::db::{args, json, to_json, values_rows, Conditions, Conn, FromRow, Row, Value};
use crate::engine::{Engine, SqlStore};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::UnixTime;

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Increasing: the listing's order and cursor.
    pub id: i64,
    pub at: UnixTime,
    pub kind: String,
    pub actor: String,
    pub client_id: Option<String>,
    pub user_id: Option<i64>,
    pub address: Option<String>,
    pub detail: serde_json::Value,
}

/// Which events to list: every filter given must hold. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<i64>,
    /// At or after this time.
    pub since: Option<UnixTime>,
    /// Older than the event with this id (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Records an event that goes with no other change (a failed login, say).
    async fn record(&self, event: &Event) -> Result<(), StoreError>;
    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes up to `batch` events older than `before`; returns how many.
    async fn delete_audit_events_before(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError>;
}

const COLUMNS: &str = "id, at, type, actor, client_id, user_id, address, detail";

/// Writes `event` on `db`, inside the caller's transaction, and logs it as one JSON
/// line (target `khoa::audit`; should the transaction then fail, the store's error
/// follows it in the log).
pub(crate) async fn insert(db: &mut impl Conn, event: &Event) -> Result<(), StoreError> {
    insert_many(db, std::slice::from_ref(event)).await
}

/// Writes `events` in as few statements as the backends allow, inside the caller's
/// transaction, and logs each.
pub(crate) async fn insert_many(db: &mut impl Conn, events: &[Event]) -> Result<(), StoreError> {
    for chunk in events.chunks(500) {
        let texts: Vec<(String, String)> = chunk.iter().map(|e| (e.actor.to_string(), to_json(&e.detail))).collect();
        let mut args: Vec<Value<'_>> = Vec::with_capacity(chunk.len() * 7);
        for (e, (actor, detail)) in chunk.iter().zip(&texts) {
            args.extend([
                Value::from(&e.at),
                Value::from(e.kind),
                Value::from(actor),
                Value::from(&e.client_id),
                Value::from(&e.user_id),
                Value::from(&e.address),
                Value::from(detail),
            ]);
            tracing::info!(target: "khoa::audit", event = %log_line(e, actor), "audit");
        }
        let sql = format!(
            "INSERT INTO audit_events (at, type, actor, client_id, user_id, address, detail) VALUES {}",
            values_rows(chunk.len(), 7)
        );
        db.exec(&sql, &args).await?;
    }
    Ok(())
}

fn log_line(event: &Event, actor: &str) -> serde_json::Value {
    serde_json::json!({
        "at": event.at, "type": event.kind, "actor": actor, "client_id": event.client_id,
        "user_id": event.user_id, "address": event.address, "detail": event.detail,
    })
}

impl FromRow for AuditRecord {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        Ok(AuditRecord {
            id: r.take()?,
            at: r.take()?,
            kind: r.take()?,
            actor: r.take()?,
            client_id: r.take()?,
            user_id: r.take()?,
            address: r.take()?,
            detail: json("detail", &r.take::<String>()?)?,
        })
    }
}

#[async_trait]
impl<E: Engine> AuditStore for SqlStore<E> {
    async fn record(&self, event: &Event) -> Result<(), StoreError> {
        let event = event.clone();
        self.write(move |db| Box::pin(async move { insert(db, &event).await })).await
    }

    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let f = f.clone();
        self.read(move |db| {
            Box::pin(async move {
                let limit = i64::from(f.limit);
                let mut c = Conditions::default();
                c.when("type = ?", f.kind.as_ref())
                    .when("client_id = ?", f.client_id.as_ref())
                    .when("user_id = ?", f.user_id.as_ref())
                    .when("at >= ?", f.since.as_ref())
                    .when("id < ?", f.before_id.as_ref());
                let sql = format!(
                    "SELECT {COLUMNS} FROM audit_events{} ORDER BY id DESC LIMIT {}",
                    c.where_sql(),
                    c.next_placeholder()
                );
                c.args.push(Value::from(&limit));
                db.fetch_all(&sql, &c.args).await
            })
        })
        .await
    }

    async fn delete_audit_events_before(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError> {
        let batch = i64::from(batch);
        self.write(move |db| {
            Box::pin(async move {
                db.exec(
                    "DELETE FROM audit_events WHERE id IN \
                     (SELECT id FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2)",
                    args![before, batch],
                )
                .await
            })
        })
        .await
    }
}
