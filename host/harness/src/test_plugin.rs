//! [`TestPlugin`]: a plugin configured for one route on a [`Harness`], whose
//! hooks a test calls directly: the same `ConfiguredPlugin` the proxy's
//! pipeline calls, with the call's log lines and metrics captured.

use tailgate_runtime::{ConfiguredPlugin, Hook, HookSet};

use crate::harness::Harness;
use crate::inputs::{LogEntry, Request, Response};
use crate::outcome::{CallContext, LogOutcome, RequestOutcome, ResponseOutcome};

/// A configured plugin under test.
pub struct TestPlugin<'h> {
    harness: &'h Harness,
    configured: ConfiguredPlugin,
}

impl<'h> TestPlugin<'h> {
    pub(crate) fn new(harness: &'h Harness, configured: ConfiguredPlugin) -> Self {
        TestPlugin {
            harness,
            configured,
        }
    }

    pub fn name(&self) -> &str {
        self.configured.name()
    }

    pub fn route(&self) -> &str {
        self.configured.route()
    }

    /// The hooks the plugin declared for this config.
    pub fn hooks(&self) -> HookSet {
        self.configured.hooks()
    }

    /// Whether the proxy would call `hook` for this config.
    pub fn implements(&self, hook: Hook) -> bool {
        self.configured.implements(hook)
    }

    pub fn harness(&self) -> &'h Harness {
        self.harness
    }

    /// The runtime's configured plugin, as the pipeline holds it.
    pub fn configured(&self) -> &ConfiguredPlugin {
        &self.configured
    }

    fn context(&self, hook: &'static str, mark: usize) -> CallContext {
        CallContext {
            plugin: self.name().to_owned(),
            route: self.route().to_owned(),
            hook,
            logs: self.harness.log_capture().since(mark),
        }
    }

    /// Calls `on-request` (a hook the plugin did not declare returns
    /// `continue` with no edits without entering the guest, as in the proxy).
    pub fn on_request(&self, req: impl Into<Request>) -> RequestOutcome {
        let mut head = req.into().into_head(self.route());
        let mark = self.harness.log_capture().mark();
        let result = self
            .harness
            .metrics_capture()
            .around(|| self.configured.on_request(&mut head));
        RequestOutcome {
            result,
            context: self.context("on-request", mark),
        }
    }

    /// Calls `on-response` for `req` answered with `resp`.
    pub fn on_response(
        &self,
        req: impl Into<Request>,
        resp: impl Into<Response>,
    ) -> ResponseOutcome {
        let mut head = req.into().into_head(self.route());
        let mut resp = resp.into().into_head();
        let mark = self.harness.log_capture().mark();
        let result = self
            .harness
            .metrics_capture()
            .around(|| self.configured.on_response(&mut head, &mut resp));
        ResponseOutcome {
            result,
            context: self.context("on-response", mark),
        }
    }

    /// Calls `on-log` with `entry` (timed at the harness clock unless set).
    /// A plugin that does not declare `log` gives `Ok(None)` here; check
    /// [`TestPlugin::implements`] to tell it from a dropped line.
    pub fn on_log(&self, entry: impl Into<LogEntry>) -> LogOutcome {
        let mut record = entry
            .into()
            .into_record(self.route(), self.harness.now_ms());
        let mark = self.harness.log_capture().mark();
        let result = self
            .harness
            .metrics_capture()
            .around(|| self.configured.on_log(&mut record));
        LogOutcome {
            result,
            context: self.context("on-log", mark),
        }
    }
}
