//! Ending an SSO session: the front-channel URLs of its clients (for the logged-out
//! page) and their back-channel notifications, queued in the same transaction that
//! ends the session (so no notification is lost, whatever happens next).

use crate::app::state::AppState;
use crate::http::error::ApiError;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::logout::frontchannel_url;
use khoa_core::session::Session;
use khoa_store::Notice;

/// How long delivered and failed notifications stay visible after their horizon.
const KEEP_AFTER_HORIZON: i64 = 7 * 86_400;

/// Until when the notifications of a logout at `now` are kept.
pub fn keep_deliveries_until(settings: &crate::Settings, now: khoa_core::UnixTime) -> khoa_core::UnixTime {
    now + settings.backchannel.horizon + KEEP_AFTER_HORIZON
}

/// Why a session ends, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutReason {
    /// RP-initiated logout (with a valid id_token_hint, or confirmed by the user).
    RpInitiated,
    /// The user confirmed on khoa's own logout page.
    Confirmed,
    /// A new sign-in in the same browser replaced the session.
    Replaced,
    /// The user signed it out on the account page.
    AccountPage,
}

impl LogoutReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::RpInitiated => "rp_initiated",
            Self::Confirmed => "confirmed",
            Self::Replaced => "replaced_by_new_login",
            Self::AccountPage => "account_page",
        }
    }
}

/// Ends `session` (if still active) and returns the front-channel logout URLs of the
/// clients it served. `client_id`: the relying party that asked, if one did.
pub async fn end_session(
    state: &AppState,
    session: &Session,
    reason: LogoutReason,
    client_id: Option<&str>,
    address: Option<String>,
) -> Result<Vec<String>, ApiError> {
    let now = state.now();
    let mut frontchannel = vec![];
    let mut deliveries = vec![];
    for client_id in state.store.session_clients(&session.sid).await? {
        let Some(client) = state.clients.get(state.store.as_ref(), &client_id).await? else { continue };
        if let Some(uri) = &client.frontchannel_logout_uri {
            frontchannel.push(frontchannel_url(uri, &state.settings.issuer, &session.sid));
        }
        if let Some(uri) = &client.backchannel_logout_uri {
            deliveries.push(Notice {
                id: khoa_core::random::random_token::<16>(),
                client_id: client.client_id.clone(),
                uri: uri.clone(),
                sub: session.user_id.to_string(),
                sid: session.sid.clone(),
            });
        }
    }
    let keep_until = keep_deliveries_until(&state.settings, now);
    let mut event = Event::new(now, kind::LOGOUT, Actor::User(session.user_id)).from_address(address);
    event.user_id = Some(session.user_id);
    event.client_id = client_id.map(str::to_string);
    // Which channels carry the logout to the relying parties.
    event.detail = serde_json::json!({
        "sid": session.sid,
        "reason": reason.as_str(),
        "frontchannel": frontchannel.len(),
        "backchannel": deliveries.len(),
    });
    if !state.store.logout_session(&session.sid, now, &deliveries, keep_until, &event).await? {
        return Ok(vec![]);
    }
    state.metrics.logouts.inc();
    tracing::info!(sid = %session.sid, notifications = deliveries.len(), "session ended");
    Ok(frontchannel)
}
