//! A plugin's fixed edits as the chain makes them (`plugin-info.fixed-edits`):
//! checked and parsed into [`WireEdit`]s once, when the route's chain loads,
//! then applied at the plugin's place in the request and response phases
//! with no call into the plugin and nothing parsed per request.

use tailgate_runtime::FixedEdits;

use super::edits::{check_header_edits, InvalidOutput, WireEdit};

/// One plugin's fixed edits, ready for the wire.
#[derive(Debug, Clone, Default)]
pub(super) struct PreparedFixedEdits {
    request: Vec<WireEdit>,
    response: Vec<WireEdit>,
    /// Also on responses the host made (nginx `add_header ... always`).
    response_always: bool,
}

impl PreparedFixedEdits {
    /// Check `fixed` as a hook's edits are checked per request: a name that
    /// is no token or a value with control characters rejects the config
    /// instead of failing every request.
    pub(super) fn new(fixed: &FixedEdits) -> Result<PreparedFixedEdits, InvalidOutput> {
        Ok(PreparedFixedEdits {
            request: check_header_edits(&fixed.request)?,
            response: check_header_edits(&fixed.response)?,
            response_always: fixed.response_always,
        })
    }

    pub(super) fn request(&self) -> &[WireEdit] {
        &self.request
    }

    /// The response edits that apply: all of them, or none for a host-made
    /// response unless `response-always`.
    pub(super) fn response_for(&self, host_generated: bool) -> &[WireEdit] {
        if host_generated && !self.response_always {
            &[]
        } else {
            &self.response
        }
    }
}
