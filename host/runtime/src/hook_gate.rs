//! Which requests enter a plugin's request and response hooks
//! (`plugin-info.request-gate`, `response-gate`) and which log records its
//! log hook (`log-gate`): checked by the configured plugin's hook calls
//! ([`ConfiguredPlugin`](crate::ConfiguredPlugin)), before the instance is
//! taken, so a request outside a hook's gate costs the plugin no call (cors
//! enters `on-request` for preflights only, ban `on-log` for the statuses
//! its jails count).

use http::HeaderName;

use crate::bindings::types::{HookGate, LogGate, LogRecord, PluginInfo, RequestHead};

impl HookGate {
    /// The gate every request passes (the default).
    pub fn every() -> HookGate {
        HookGate {
            methods: Vec::new(),
            with_headers: Vec::new(),
        }
    }

    /// Whether `req` enters the hook: its method is one of the gate's (or
    /// the gate names none) and it has every header field the gate names.
    /// `req`'s header list is the whole one (the host lists it whenever a
    /// chain has a request or response hook); names are lower case on both
    /// sides ([`normalised`]).
    pub fn admits(&self, req: &RequestHead) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return false;
        }
        let fields = req.headers.as_deref().unwrap_or_default();
        self.with_headers
            .iter()
            .all(|name| fields.iter().any(|field| field.name == *name))
    }
}

impl LogGate {
    /// The gate every record passes (the default).
    pub fn every() -> LogGate {
        LogGate {
            statuses: Vec::new(),
        }
    }

    /// Whether `rec` enters the log hook: its status is one of the gate's,
    /// or the gate names none.
    pub fn admits(&self, rec: &LogRecord) -> bool {
        self.statuses.is_empty() || self.statuses.contains(&rec.status)
    }
}

/// `info`'s gates with their header names lower-cased, or the first name
/// that is not a header field name (or status that is not an HTTP status),
/// with the gate it is in.
pub(crate) fn normalised(mut info: PluginInfo) -> Result<PluginInfo, String> {
    if let Some(bad) = info
        .log_gate
        .statuses
        .iter()
        .find(|status| !(100..=599).contains(*status))
    {
        return Err(format!(
            "plugin bug: plugin-info.log-gate.statuses names {bad}, which is not an HTTP \
             status (100-599)"
        ));
    }
    for (side, gate) in [
        ("request-gate", &mut info.request_gate),
        ("response-gate", &mut info.response_gate),
    ] {
        for name in gate.with_headers.iter_mut() {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!(
                    "plugin bug: plugin-info.{side}.with-headers names {name:?}, which is not \
                     a header field name"
                ));
            }
            name.make_ascii_lowercase();
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{Header, IpAddress, Method, Scheme};

    fn head(method: Method, names: &[&str]) -> RequestHead {
        RequestHead {
            method,
            scheme: Scheme::Http,
            client_ip: IpAddress::V4(0x7f00_0001),
            host: None,
            path: None,
            query: None,
            route: None,
            request_id: None,
            headers: Some(
                names
                    .iter()
                    .map(|name| Header {
                        name: (*name).to_owned(),
                        value: b"x".to_vec(),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_gate_admits_its_methods_with_all_its_fields() {
        let preflight = HookGate {
            methods: vec![Method::Options],
            with_headers: vec!["origin".into(), "access-control-request-method".into()],
        };
        let both = ["origin", "access-control-request-method"];
        assert!(preflight.admits(&head(Method::Options, &both)));
        assert!(!preflight.admits(&head(Method::Get, &both)));
        assert!(!preflight.admits(&head(Method::Options, &["origin"])));
        assert!(!preflight.admits(&head(Method::Options, &[])));
        assert!(HookGate::every().admits(&head(Method::Other("PURGE".into()), &[])));
    }
}
