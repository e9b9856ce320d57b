//! Registered clients (relying parties).

use crate::audit;
use crate::db::{args, change, json, placeholders, to_json, Conditions, Conn, FromRow, Row, Value};
use crate::engine::{Engine, SqlStore};
use crate::{StoreError, Updated};
use async_trait::async_trait;
use khoa_core::audit::Event;
use khoa_core::client::{Client, ClientLifetimes, ClientType, GrantType};

/// Every change writes its audit event in the same transaction: no change without its
/// record, no record of a change that did not happen.
#[async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// `Conflict` when the client_id exists.
    async fn insert_client(&self, client: &Client, audit: &Event) -> Result<(), StoreError>;
    /// Replaces every field of the client with this client_id, if its revision is still
    /// `expected` (any revision when `None`), and raises the revision. Running servers
    /// see the change within a watch interval (the change epoch).
    async fn update_client(&self, client: &Client, expected: Option<i64>, audit: &Event)
        -> Result<Updated, StoreError>;
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
    async fn clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Up to `limit` clients in client_id order, after `after` when given.
    async fn clients_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Client>, StoreError>;
    /// `true` when a client was deleted (and the event recorded).
    async fn delete_client(&self, client_id: &str, audit: &Event) -> Result<bool, StoreError>;
    /// The longest access or ID token lifetime any client overrides to (seconds).
    async fn longest_client_token_lifetime(&self) -> Result<Option<i64>, StoreError>;
}

const COLUMNS: &str = "client_id, client_secret_hash, is_public, redirect_uris, \
    post_logout_redirect_uris, frontchannel_logout_uri, backchannel_logout_uri, grant_types, scopes, \
    skip_consent, client_name, logo_uri, client_uri, policy_uri, tos_uri, owner, contacts, metadata, \
    id_token_signed_response_alg, authorization_code_lifetime, access_token_lifetime, id_token_lifetime, \
    refresh_token_lifetime, created_at, updated_at, always_issue_refresh_token, resource_server, allowed_origins, \
    previous_secret_hash, previous_secret_expires_at, token_endpoint_auth_method, \
    access_token_signed_response_alg, require_mfa";

/// What is read: the written columns, then the revision the database keeps.
fn read_columns() -> String {
    format!("{COLUMNS}, revision")
}

/// A client's columns as text, in [`COLUMNS`] order (JSON for the lists).
struct Columns {
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grant_types: String,
    scopes: String,
    contacts: String,
    metadata: String,
    allowed_origins: String,
}

impl Columns {
    fn of(c: &Client) -> Self {
        let grant_types: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
        Columns {
            redirect_uris: to_json(&c.redirect_uris),
            post_logout_redirect_uris: to_json(&c.post_logout_redirect_uris),
            grant_types: to_json(&grant_types),
            scopes: to_json(&c.scopes),
            contacts: to_json(&c.contacts),
            metadata: to_json(&c.metadata),
            allowed_origins: to_json(&c.allowed_origins),
        }
    }
}

/// Runs `sql` with every column of `c` bound in [`COLUMNS`] order.
async fn write_client(db: &mut impl Conn, sql: &str, c: &Client) -> Result<u64, StoreError> {
    let j = Columns::of(c);
    let alg = c.id_token_signed_response_alg.as_str();
    let l = &c.lifetimes;
    let is_public = c.is_public();
    let method = c.token_endpoint_auth_method();
    let access_alg = c.access_token_signed_response_alg.map(|a| a.as_str());
    let args: &[Value<'_>] = args![
        c.client_id,
        c.client_secret_hash,
        is_public,
        j.redirect_uris,
        j.post_logout_redirect_uris,
        c.frontchannel_logout_uri,
        c.backchannel_logout_uri,
        j.grant_types,
        j.scopes,
        c.skip_consent,
        c.client_name,
        c.logo_uri,
        c.client_uri,
        c.policy_uri,
        c.tos_uri,
        c.owner,
        j.contacts,
        j.metadata,
        alg,
        l.authorization_code,
        l.access_token,
        l.id_token,
        l.refresh_token,
        c.created_at,
        c.updated_at,
        c.always_issue_refresh_token,
        c.resource_server,
        j.allowed_origins,
        c.previous_secret_hash,
        c.previous_secret_expires_at,
        method,
        access_alg,
        c.require_mfa,
    ];
    change(db, sql, args).await
}

impl FromRow for Client {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        let client_id = r.take()?;
        let client_secret_hash = r.take()?;
        let is_public = r.take()?;
        let redirect_uris = json("redirect_uris", &r.take::<String>()?)?;
        let post_logout_redirect_uris = json("post_logout_redirect_uris", &r.take::<String>()?)?;
        let frontchannel_logout_uri = r.take()?;
        let backchannel_logout_uri = r.take()?;
        let grant_types: Vec<String> = json("grant_types", &r.take::<String>()?)?;
        let scopes = json("scopes", &r.take::<String>()?)?;
        let skip_consent = r.take()?;
        let client_name = r.take()?;
        let logo_uri = r.take()?;
        let client_uri = r.take()?;
        let policy_uri = r.take()?;
        let tos_uri = r.take()?;
        let owner = r.take()?;
        let contacts = json("contacts", &r.take::<String>()?)?;
        let metadata = json("metadata", &r.take::<String>()?)?;
        let alg: String = r.take()?;
        let lifetimes = ClientLifetimes {
            authorization_code: r.take()?,
            access_token: r.take()?,
            id_token: r.take()?,
            refresh_token: r.take()?,
        };
        let mut client = Client {
            client_id,
            client_secret_hash,
            client_type: ClientType::Public,
            redirect_uris,
            post_logout_redirect_uris,
            frontchannel_logout_uri,
            backchannel_logout_uri,
            grant_types: grant_types
                .iter()
                .map(|g| g.parse::<GrantType>().map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<_, _>>()?,
            scopes,
            skip_consent,
            client_name,
            logo_uri,
            client_uri,
            policy_uri,
            tos_uri,
            owner,
            contacts,
            metadata,
            id_token_signed_response_alg: alg
                .parse()
                .map_err(|e: khoa_core::jose::KeyError| StoreError::Corrupt(e.to_string()))?,
            lifetimes,
            created_at: r.take()?,
            updated_at: r.take()?,
            always_issue_refresh_token: r.take()?,
            resource_server: r.take()?,
            allowed_origins: json("allowed_origins", &r.take::<String>()?)?,
            previous_secret_hash: r.take()?,
            previous_secret_expires_at: r.take()?,
            access_token_signed_response_alg: None,
            require_mfa: false,
            revision: 0,
        };
        let method: String = r.take()?;
        let access_alg: Option<String> = r.take()?;
        client.access_token_signed_response_alg = access_alg
            .map(|a| a.parse().map_err(|e: khoa_core::jose::KeyError| StoreError::Corrupt(e.to_string())))
            .transpose()?;
        client.require_mfa = r.take()?;
        client.client_type = ClientType::from_parts(is_public, &method).ok_or_else(|| {
            StoreError::Corrupt(format!("client {}: is_public {is_public} with {method}", client.client_id))
        })?;
        client.revision = r.take()?;
        Ok(client)
    }
}

#[async_trait]
impl<E: Engine> ClientStore for SqlStore<E> {
    async fn insert_client(&self, c: &Client, audit: &Event) -> Result<(), StoreError> {
        let (c, audit) = (c.clone(), audit.clone());
        self.write(move |db| {
            Box::pin(async move {
                let sql = format!("INSERT INTO clients ({COLUMNS}) VALUES ({})", placeholders(COLUMNS));
                write_client(db, &sql, &c).await.map_err(StoreError::conflict_as("client"))?;
                audit::insert(db, &audit).await
            })
        })
        .await
    }

    async fn update_client(&self, c: &Client, expected: Option<i64>, audit: &Event) -> Result<Updated, StoreError> {
        let (c, audit) = (c.clone(), audit.clone());
        self.write(move |db| {
            Box::pin(async move {
                // Every column is replaced; $1 (client_id) stays the key. The revision
                // check and the write are one statement, so of two updates made from
                // the same revision one loses, whichever process made them.
                let set: Vec<String> = COLUMNS
                    .split(',')
                    .map(str::trim)
                    .enumerate()
                    .skip(1)
                    .map(|(i, column)| format!("{column} = ${}", i + 1))
                    .collect();
                let mut sql =
                    format!("UPDATE clients SET {}, revision = revision + 1 WHERE client_id = $1", set.join(", "));
                if let Some(revision) = expected {
                    // An integer of ours, not input text.
                    sql.push_str(&format!(" AND revision = {revision}"));
                }
                let written = write_client(db, &sql, &c).await? > 0;
                if written {
                    audit::insert(db, &audit).await?;
                }
                let revision =
                    db.scalar("SELECT revision FROM clients WHERE client_id = $1", args![c.client_id]).await?;
                Ok(Updated::of(written, revision))
            })
        })
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let id = client_id.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(&format!("SELECT {} FROM clients WHERE client_id = $1", read_columns()), args![id])
                    .await
            })
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                db.fetch_all(&format!("SELECT {} FROM clients ORDER BY client_id", read_columns()), &[]).await
            })
        })
        .await
    }

    async fn clients_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Client>, StoreError> {
        let (after, limit) = (after.map(str::to_owned), i64::from(limit));
        self.read(move |db| {
            Box::pin(async move {
                let mut c = Conditions::default();
                c.when("client_id > ?", after.as_ref());
                let sql = format!(
                    "SELECT {} FROM clients{} ORDER BY client_id LIMIT {}",
                    read_columns(),
                    c.where_sql(),
                    c.next_placeholder()
                );
                c.args.push(Value::from(&limit));
                db.fetch_all(&sql, &c.args).await
            })
        })
        .await
    }

    async fn delete_client(&self, client_id: &str, audit: &Event) -> Result<bool, StoreError> {
        let (id, audit) = (client_id.to_owned(), audit.clone());
        self.write(move |db| {
            Box::pin(async move {
                let deleted = change(db, "DELETE FROM clients WHERE client_id = $1", args![id]).await? > 0;
                if deleted {
                    audit::insert(db, &audit).await?;
                }
                Ok(deleted)
            })
        })
        .await
    }

    async fn longest_client_token_lifetime(&self) -> Result<Option<i64>, StoreError> {
        self.read(|db| {
            Box::pin(async move {
                let (a, i): (Option<i64>, Option<i64>) =
                    db.fetch_one("SELECT MAX(access_token_lifetime), MAX(id_token_lifetime) FROM clients", &[]).await?;
                Ok(a.max(i))
            })
        })
        .await
    }
}
