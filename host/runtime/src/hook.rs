//! The guest entry points by name: the three per-request hooks of the
//! pipeline (`on-request` -> `on-response` -> `on-log`) plus `configure`,
//! used to label metrics and logs and to ask a plugin what it implements.

use crate::bindings::types::HookSet;

/// One guest entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `configure`, once per instance before any other hook.
    Configure,
    /// `on-request`, before the request goes upstream.
    Request,
    /// `on-response`, when the response head is known.
    Response,
    /// `on-log`, after the exchange; always runs.
    Log,
}

impl Hook {
    pub(crate) const ALL: [Hook; 4] = [Hook::Configure, Hook::Request, Hook::Response, Hook::Log];

    /// The label used in metrics and logs: configure, request, response, log.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Configure => "configure",
            Hook::Request => "request",
            Hook::Response => "response",
            Hook::Log => "log",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Hook::Configure => 0,
            Hook::Request => 1,
            Hook::Response => 2,
            Hook::Log => 3,
        }
    }

    /// Whether `set` declares this hook (`configure` is always implemented).
    pub fn is_in(self, set: HookSet) -> bool {
        match self {
            Hook::Configure => true,
            Hook::Request => set.contains(HookSet::REQUEST),
            Hook::Response => set.contains(HookSet::RESPONSE),
            Hook::Log => set.contains(HookSet::LOG),
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
