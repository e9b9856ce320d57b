//! The command line (PRODUCT.md). Every command works directly on the configured
//! database.

use clap::{Args, Parser, Subcommand};
use khoa_core::client::{GrantType, SecretMethod};
use khoa_core::jose::SigningAlgorithm;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "khoa", version, about = "khoa: OpenID Connect / OAuth 2.0 single sign-on server")]
pub struct Cli {
    /// TOML configuration file; KHOA_* environment variables override it.
    #[arg(long, short = 'c', global = true, env = "KHOA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

fn environment_help() -> String {
    let mut s = String::from("Environment (overrides the configuration file):\n");
    for (var, what) in crate::config::ENVIRONMENT {
        s.push_str(&format!("  {var:<34} {what}\n"));
    }
    s.push_str("\nWith no configuration at all khoa uses sqlite://khoa.db and a generated khoa.key\nin the working directory, listens on 127.0.0.1:8080 with issuer http://localhost:8080.");
    s
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (migrates the database and creates signing keys on first start).
    #[command(after_help = environment_help())]
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Only report the pending migrations, applying none: exits 1 when some are
        /// pending, and refuses a database written by a newer khoa.
        #[arg(long)]
        check: bool,
    },
    /// Manage OAuth 2.0 clients (relying parties).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage TCONNECT partners (Partner-Code, client and AES-256 key).
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Inspect back-channel logout notifications.
    #[command(subcommand, name = "logout-deliveries")]
    LogoutDeliveries(DeliveriesCommand),
    /// The admin API's first client.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Copy the SQLite database to FILE while servers keep running (SQLite's online
    /// backup: one consistent snapshot). The master key is not in it: keep it too.
    Backup {
        /// A new file; an existing one is never overwritten.
        file: PathBuf,
    },
    /// Ask the running server whether it is ready (/health/ready on the admin, metrics
    /// or plain public listener): exits 0 when it answers 200. For HEALTHCHECK and
    /// monitoring scripts.
    Health,
    /// Replace the configured SQLite database with the backup FILE. Refused while a
    /// khoa serve uses the database; voids authorization codes and mailed links.
    Restore { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file and the KHOA_* variables (an unknown setting is
    /// refused by name, with the nearest known one) and print the settings in force,
    /// secrets masked. Exits 2 when something is wrong. Touches no database.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the first admin API client (client_credentials, scope khoa:admin) and
    /// print it once as JSON, its client_secret included.
    Bootstrap {
        #[arg(long, default_value = "khoa-admin")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit events, newest first.
    List {
        /// Only this type, such as client.updated.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events about this client_id.
        #[arg(long)]
        client: Option<String>,
        /// Only events about this user id.
        #[arg(long)]
        user: Option<i64>,
        /// Only events this recent, such as 1h or 7d.
        #[arg(long)]
        since: Option<humantime::Duration>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Bind a Partner-Code to a confidential client and a 256-bit key (generated and
    /// printed once unless given).
    Create {
        #[arg(long)]
        code: String,
        #[arg(long)]
        client_id: String,
        /// The key as 64 hexadecimal characters.
        #[arg(long, value_name = "64-HEX")]
        key_hex: Option<String>,
        /// Refuse login payloads without a fresh `timestamp` (Unix seconds, at most 5
        /// minutes old) and an unused `nonce` (replay protection; docs/dialects.md).
        #[arg(long)]
        require_nonce: bool,
    },
    /// List partners (never their keys).
    List(ListArgs),
    /// Delete a partner.
    Delete { code: String },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The newest notifications with their state, attempts and last error.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints it as one JSON object (with the secret, shown once).
    Create(Box<ClientCreate>),
    /// List clients.
    List(ListArgs),
    /// Show one client as JSON.
    Show { id: String },
    /// Change a client in place (its secret is untouched): each option given replaces
    /// that field; a repeatable option given replaces the whole list; an empty value
    /// clears it. Running servers see the change within 2 seconds.
    Update(Box<ClientUpdate>),
    /// Give a confidential client a new secret (printed once); with --keep-old-for the
    /// old one is accepted too for that long, so an app can roll over without downtime.
    RotateSecret {
        id: String,
        /// How long the old secret keeps working, e.g. 1h or 7days (default: not at all).
        #[arg(long, value_name = "DURATION")]
        keep_old_for: Option<humantime::Duration>,
    },
    /// Delete a client.
    Delete { id: String },
}

/// `client update`: every option of `client create` but the id and the secret.
#[derive(Debug, Args)]
pub struct ClientUpdate {
    pub id: String,
    #[command(flatten)]
    pub options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClientCreate {
    /// client_id: letters, digits, . _ ~ -
    #[arg(long)]
    pub id: String,
    /// Public client (no secret; PKCE required).
    #[arg(long, conflicts_with_all = ["secret", "secret_stdin"])]
    pub public: bool,
    /// Use this secret (≥ 32 characters) instead of generating one.
    #[arg(long, conflicts_with = "secret_stdin")]
    pub secret: Option<String>,
    /// Read the secret from standard input (keeps it out of the process list).
    #[arg(long)]
    pub secret_stdin: bool,
    #[command(flatten)]
    pub options: ClientOptions,
}

/// The options of `client create` and `client update`. For an update, an option given
/// replaces its field, a repeatable one replaces the whole list, and an empty value
/// clears it; flags take `=false` to turn them off.
#[derive(Debug, Args)]
pub struct ClientOptions {
    /// Redirect URI (repeatable): https, http on loopback, or a reverse-domain app scheme.
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// A browser origin (exactly scheme://host[:port]) allowed to call the token,
    /// userinfo and revocation endpoints, beyond the origins of the redirect URIs
    /// (repeatable).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    #[arg(long, value_name = "URI")]
    pub frontchannel_logout_uri: Option<String>,
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// Comma-separated: authorization_code,refresh_token,client_credentials
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub grant_types: Option<Vec<GrantType>>,
    /// Space-separated scopes the client may request.
    #[arg(long)]
    pub scopes: Option<String>,
    /// Never ask users for consent for this client.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub skip_consent: Option<bool>,
    /// Issue a refresh token at every code exchange, even without `offline_access`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub always_issue_refresh_token: Option<bool>,
    /// A resource server (API): may introspect access tokens issued to other clients.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub resource_server: Option<bool>,
    /// Users of this client sign in with two factors (an authenticator app or a passkey).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub require_mfa: Option<bool>,
    /// client_name shown on the login and consent pages.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, value_name = "URL")]
    pub logo_uri: Option<String>,
    #[arg(long, value_name = "URL")]
    pub client_uri: Option<String>,
    #[arg(long, value_name = "URL")]
    pub policy_uri: Option<String>,
    #[arg(long, value_name = "URL")]
    pub tos_uri: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Contact (repeatable).
    #[arg(long = "contact")]
    pub contacts: Vec<String>,
    /// Free-form metadata: a JSON object.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// How a confidential client authenticates at the token endpoint:
    /// client_secret_basic (the default: the Authorization header) or
    /// client_secret_post (client_id and client_secret in the body). Public clients use
    /// none.
    #[arg(long, value_name = "METHOD")]
    pub token_endpoint_auth_method: Option<SecretMethod>,
    /// ID token signing algorithm: RS256 (default), ES256 or EdDSA.
    #[arg(long, value_name = "ALG")]
    pub id_token_alg: Option<SigningAlgorithm>,
    /// JWT access token signing algorithm for this client: RS256, ES256 or EdDSA
    /// (default, or an empty value: the server's tokens.access_token_alg).
    #[arg(long, value_name = "ALG")]
    pub access_token_alg: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub authorization_code_lifetime: Option<humantime::Duration>,
    #[arg(long, value_name = "DURATION")]
    pub access_token_lifetime: Option<humantime::Duration>,
    #[arg(long, value_name = "DURATION")]
    pub id_token_lifetime: Option<humantime::Duration>,
    #[arg(long, value_name = "DURATION")]
    pub refresh_token_lifetime: Option<humantime::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create(UserCreate),
    /// List users.
    List(ListArgs),
    /// Delete a user: their sessions end and their tokens are revoked (back-channel
    /// logout notices are sent).
    Delete { username: String },
    /// End every SSO session of a user and revoke all their tokens (back-channel
    /// logout notices are sent).
    RevokeSessions { username: String },
    /// Set a user's password, read from standard input; their sessions end and their
    /// tokens are revoked.
    SetPassword {
        username: String,
        /// Required: passwords are never taken from the command line.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user: no sign-in until enabled; their sessions end and their tokens
    /// are revoked (back-channel logout notices are sent).
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// List a user's ways of signing in beyond the password (authenticator apps,
    /// passkeys, recovery codes): kinds, names and times, never secrets.
    Methods { username: String },
    /// Remove every authenticator app, passkey and recovery code of a user who lost
    /// theirs: they sign in with their password again, and set up a new factor where a
    /// policy asks for one.
    ResetMfa { username: String },
    /// Import users with the password hashes they have (JSON lines: username,
    /// password_hash, and optionally email, email_verified, name, phone, picture,
    /// attributes; `-` for standard input). Restartable: existing usernames are
    /// reported and skipped. Exits 1 when a line could not be imported.
    Import {
        file: std::path::PathBuf,
        #[command(flatten)]
        verification: SendVerification,
    },
}

/// Mail verification links (through `smtp.url`) to new users whose email is not
/// verified.
#[derive(Debug, Args)]
pub struct SendVerification {
    /// Mail each new user whose email is not verified a link that verifies it.
    #[arg(long)]
    pub send_verification: bool,
    /// The language of those mails: vi or en.
    #[arg(long, value_name = "vi|en", default_value = "vi", value_parser = ["vi", "en"])]
    pub mail_language: String,
}

#[derive(Debug, Args)]
pub struct UserCreate {
    #[arg(long)]
    pub username: String,
    /// Required: passwords are never taken from the command line.
    #[arg(long, required = true)]
    pub password_stdin: bool,
    #[arg(long)]
    pub email: Option<String>,
    /// Mark the email address as verified.
    #[arg(long, requires = "email")]
    pub email_verified: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Phone number in E.164 form (+84…).
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long, requires = "phone")]
    pub phone_verified: bool,
    #[arg(long, value_name = "URL")]
    pub picture: Option<String>,
    #[command(flatten)]
    pub verification: SendVerification,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state (pending, active, retired, expired).
    List(ListArgs),
    /// Create the next key of each algorithm: published at once, signing after the
    /// pre-publication delay (keys.prepublication).
    Rotate {
        /// Only these algorithms (repeatable); default: every configured one.
        #[arg(long = "alg", value_name = "ALG")]
        algorithms: Vec<SigningAlgorithm>,
        /// Sign with the new key at once (for a compromised key; relying parties that
        /// cached the old JWKS will refetch it on an unknown kid).
        #[arg(long)]
        immediately: bool,
    },
}
