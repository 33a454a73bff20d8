//! [`TestPlugin`]: a plugin configured for one route on a [`Harness`], whose
//! hooks a test calls directly: the same `ConfiguredPlugin` the proxy's
//! pipeline calls, run through the same [`ChainedPlugin`] phases as a
//! route's chain (its fixed edits merged with its hook's, the output
//! checked for the wire), with the call's log lines and metrics captured.

use tailgate_runtime::{
    ChainedPlugin, ConfiguredPlugin, Hook, HookFault, HookSet, RequestAction, RequestEdits,
    RequestStep, ResponseEdits, WireEdit,
};

use crate::harness::Harness;
use crate::inputs::{LogEntry, Request, Response};
use crate::outcome::{CallContext, LogOutcome, RequestOutcome, ResponseOutcome};

/// A configured plugin under test.
pub struct TestPlugin<'h> {
    harness: &'h Harness,
    chained: ChainedPlugin<ConfiguredPlugin>,
}

impl<'h> TestPlugin<'h> {
    pub(crate) fn new(harness: &'h Harness, chained: ChainedPlugin<ConfiguredPlugin>) -> Self {
        TestPlugin { harness, chained }
    }

    pub fn name(&self) -> &str {
        self.configured().name()
    }

    pub fn route(&self) -> &str {
        self.configured().route()
    }

    /// The hooks the plugin declared for this config.
    pub fn hooks(&self) -> HookSet {
        self.configured().hooks()
    }

    /// Whether the proxy would call `hook` for this config.
    pub fn implements(&self, hook: Hook) -> bool {
        self.configured().implements(hook)
    }

    pub fn harness(&self) -> &'h Harness {
        self.harness
    }

    /// The runtime's configured plugin, as the pipeline holds it.
    pub fn configured(&self) -> &ConfiguredPlugin {
        self.chained.plugin()
    }

    fn context(&self, hook: &'static str, mark: usize) -> CallContext {
        CallContext {
            plugin: self.name().to_owned(),
            route: self.route().to_owned(),
            hook,
            logs: self.harness.log_capture().since(mark),
        }
    }

    /// Runs the plugin's request phase as a route's chain does: `on-request`
    /// (a hook the plugin did not declare is not entered, as in the proxy),
    /// its fixed edits first among the header edits, the output checked
    /// for the wire (what cannot go on it is an invalid-output fault).
    pub fn on_request(&self, req: impl Into<Request>) -> RequestOutcome {
        let mut head = req.into().into_head(self.route());
        let mark = self.harness.log_capture().mark();
        let result = self.harness.metrics_capture().around(|| {
            let mut header_edits = Vec::new();
            let step = tailgate_runtime::block_on(
                self.chained.request_phase(&mut head, &mut header_edits),
            )?;
            Ok::<_, HookFault>(match step {
                RequestStep::Continue(edits) => RequestAction::Continue(RequestEdits {
                    headers: contract_edits(&header_edits),
                    ..edits
                }),
                RequestStep::Respond(resp) => RequestAction::Respond(resp),
            })
        });
        RequestOutcome {
            result,
            context: self.context("on-request", mark),
        }
    }

    /// Runs the plugin's response phase for `req` answered with `resp`, as
    /// [`TestPlugin::on_request`] runs the request phase.
    pub fn on_response(
        &self,
        req: impl Into<Request>,
        resp: impl Into<Response>,
    ) -> ResponseOutcome {
        let mut head = req.into().into_head(self.route());
        let mut resp = resp.into().into_head();
        let mark = self.harness.log_capture().mark();
        let result = self.harness.metrics_capture().around(|| {
            let mut applied = Vec::new();
            tailgate_runtime::block_on(self.chained.response_phase(
                &mut head,
                &mut resp,
                false,
                &mut applied,
            ))?;
            Ok(ResponseEdits {
                headers: contract_edits(&applied),
            })
        });
        ResponseOutcome {
            result,
            context: self.context("on-response", mark),
        }
    }

    /// Calls `on-log` with `entry` (timed at the harness clock unless set).
    /// A plugin that does not declare `log` gives `Ok(LogVerdict::Keep)`.
    pub fn on_log(&self, entry: impl Into<LogEntry>) -> LogOutcome {
        let mut record = entry
            .into()
            .into_record(self.route(), self.harness.now_ms());
        let mark = self.harness.log_capture().mark();
        let result = self.harness.metrics_capture().around(|| {
            self.configured()
                .on_log(&mut record)
                .map_err(HookFault::from)
        });
        LogOutcome {
            result,
            context: self.context("on-log", mark),
        }
    }
}

/// The phase's checked edits in the contract's terms, for the outcome.
fn contract_edits(edits: &[WireEdit]) -> Vec<tailgate_runtime::HeaderEdit> {
    edits.iter().map(WireEdit::to_header_edit).collect()
}
