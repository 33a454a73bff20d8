//! The admin API's ban endpoints, over the plugin runtime's ban list
//! (`tailgate_runtime::BanView`, the list the plugins' `ban-*` imports
//! use): `GET /bans` lists the active bans, `POST /bans` bans a key by
//! hand, `DELETE /bans/JAIL/KEY` lifts a ban. On the admin listener only;
//! `tailgate bans` (`crate::bans_cmd`) is their command line.

use std::time::{Duration, UNIX_EPOCH};

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tailgate_runtime::{BanEntry, BanOutcome, BanRequest, BanView};

use super::router::{
    handler, json_response, text_response, AdminHandler, AdminRequest, AdminResponse,
};

/// The list and `POST` path.
pub const BANS_PATH: &str = "/bans";
/// The prefix of `DELETE /bans/JAIL/KEY`.
pub const BAN_PREFIX: &str = "/bans/";

/// One ban as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanJson {
    pub jail: String,
    pub key: String,
    /// RFC 3339, UTC.
    pub since: String,
    /// RFC 3339, UTC.
    pub expires: String,
    pub since_unix_ms: u64,
    pub expires_unix_ms: u64,
    pub failures: u32,
    pub offences: u32,
    /// Whole seconds left, rounded up.
    pub remaining_seconds: u64,
}

impl BanJson {
    pub fn new(ban: &BanEntry, now_ms: u64) -> Self {
        BanJson {
            jail: ban.jail.clone(),
            key: ban.key.clone(),
            since: rfc3339(ban.since_unix_ms),
            expires: rfc3339(ban.expires_unix_ms),
            since_unix_ms: ban.since_unix_ms,
            expires_unix_ms: ban.expires_unix_ms,
            failures: ban.failures,
            offences: ban.offences,
            remaining_seconds: ban.expires_unix_ms.saturating_sub(now_ms).div_ceil(1000),
        }
    }
}

/// The body of `POST /bans`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanOrder {
    pub jail: String,
    pub key: String,
    pub duration: DurationText,
    /// Logged with the ban; not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `"1h"` (a config duration) or a number of seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn to_duration(&self) -> Result<Duration, BanOrderError> {
        match self {
            DurationText::Seconds(0) => Err(BanOrderError::Duration("0 seconds".into())),
            DurationText::Seconds(secs) => Ok(Duration::from_secs(*secs)),
            DurationText::Text(text) => crate::config::parse_duration(text)
                .map_err(|e| BanOrderError::Duration(e.to_string())),
        }
    }
}

/// Why a `POST /bans` or `DELETE /bans/...` was refused (400).
#[derive(Debug, thiserror::Error)]
pub enum BanOrderError {
    #[error(
        "body: {0} (expected {{\"jail\", \"key\", \"duration\": \"1h\" or seconds, \"reason\"?}})"
    )]
    Body(#[from] serde_json::Error),
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    #[error("`{what}` is {len} bytes, over the {max}-byte key limit")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("duration: {0}")]
    Duration(String),
    #[error("path: expected /bans/JAIL/KEY (each percent-encoded)")]
    Path,
}

/// `GET /bans`, `POST /bans` and `DELETE /bans/JAIL/KEY`'s handlers.
pub struct BanEndpoints {
    pub list: AdminHandler,
    pub add: AdminHandler,
    pub remove: AdminHandler,
}

/// The handlers over `bans`; jails and keys are at most `max_key_bytes`.
pub fn endpoints(bans: BanView, max_key_bytes: usize) -> BanEndpoints {
    let list = {
        let bans = bans.clone();
        handler(move |_req| {
            let bans = bans.clone();
            async move {
                let now = bans.now_ms();
                let listed: Vec<BanJson> = bans
                    .list_shared()
                    .await
                    .iter()
                    .map(|b| BanJson::new(b, now))
                    .collect();
                json_response(StatusCode::OK, &serde_json::json!(listed))
            }
        })
    };
    let add = {
        let bans = bans.clone();
        handler(move |req: AdminRequest| {
            let bans = bans.clone();
            async move { add_ban(&bans, req.body(), max_key_bytes).await }
        })
    };
    let remove = handler(move |req: AdminRequest| {
        let bans = bans.clone();
        async move { remove_ban(&bans, &req).await }
    });
    BanEndpoints { list, add, remove }
}

async fn remove_ban(bans: &BanView, req: &AdminRequest) -> AdminResponse {
    match jail_and_key(req.uri().path()) {
        Err(e) => error_response(StatusCode::BAD_REQUEST, &e),
        Ok((jail, key)) if bans.remove_shared(&jail, &key).await => {
            tracing::info!(%jail, %key, "ban lifted through the admin API");
            text_response(StatusCode::NO_CONTENT, "")
        }
        Ok((jail, key)) => json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no active ban of {key:?} in jail {jail:?}") }),
        ),
    }
}

async fn add_ban(bans: &BanView, body: &[u8], max_key_bytes: usize) -> AdminResponse {
    let order = match parse_order(body, max_key_bytes) {
        Ok(order) => order,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let (order, duration) = order;
    let length_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let now = bans.now_ms();
    match bans
        .add_shared(&order.jail, &order.key, &BanRequest::fixed(length_ms))
        .await
    {
        BanOutcome::Banned(ban) => {
            tracing::info!(
                jail = %ban.jail,
                key = %ban.key,
                duration = ?duration,
                reason = order.reason.as_deref().unwrap_or(""),
                "ban added through the admin API"
            );
            json_response(
                StatusCode::CREATED,
                &serde_json::json!(BanJson::new(&ban, now)),
            )
        }
        BanOutcome::Already(ban) => json_response(
            StatusCode::CONFLICT,
            &serde_json::json!({
                "error": "already banned",
                "ban": BanJson::new(&ban, now),
            }),
        ),
    }
}

fn parse_order(body: &[u8], max_key_bytes: usize) -> Result<(BanOrder, Duration), BanOrderError> {
    let order: BanOrder = serde_json::from_slice(body)?;
    for (what, value) in [("jail", &order.jail), ("key", &order.key)] {
        if value.is_empty() {
            return Err(BanOrderError::Empty(what));
        }
        if value.len() > max_key_bytes {
            return Err(BanOrderError::TooLong {
                what,
                len: value.len(),
                max: max_key_bytes,
            });
        }
    }
    let duration = order.duration.to_duration()?;
    Ok((order, duration))
}

/// `/bans/JAIL/KEY`, each segment percent-decoded.
fn jail_and_key(path: &str) -> Result<(String, String), BanOrderError> {
    let rest = path.strip_prefix(BAN_PREFIX).ok_or(BanOrderError::Path)?;
    let (jail, key) = rest.split_once('/').ok_or(BanOrderError::Path)?;
    if jail.is_empty() || key.is_empty() || key.contains('/') {
        return Err(BanOrderError::Path);
    }
    let decode = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| BanOrderError::Path)
    };
    Ok((decode(jail)?, decode(key)?))
}

fn error_response(status: StatusCode, error: &BanOrderError) -> AdminResponse {
    json_response(status, &serde_json::json!({ "error": error.to_string() }))
}

/// Unix ms as RFC 3339 UTC, to the second (clamped to year 9999).
pub fn rfc3339(unix_ms: u64) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST_MS: u64 = 253_402_300_799_000;
    let at = UNIX_EPOCH + Duration::from_millis(unix_ms.min(LAST_MS));
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests;
