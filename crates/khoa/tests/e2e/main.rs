//! khoa end to end: the real binary and in-process servers on random loopback ports,
//! driven by real clients, on SQLite and PostgreSQL. One test binary, a module per
//! area (one link instead of one per file).

mod accounts;
mod admin_api;
mod browser;
mod browser_apps;
mod code_flow;
mod crash_safety;
mod dialects;
mod foundation;
mod http_limits;
mod logout;
mod operations;
mod passkeys;
mod production;
mod secrets_in_logs;
mod security;
mod token_lifecycle;
mod two_nodes;
