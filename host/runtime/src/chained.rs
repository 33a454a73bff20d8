//! One plugin at its place in a route's chain: its hook's output and its
//! fixed edits (`plugin-info.fixed-edits`, checked and parsed once, when it
//! is put in the chain) merged, checked for the wire and applied to the
//! heads, one plugin's request or response phase at a time. The proxy's
//! chain (`tailgate::plugin_chain`) runs every plugin of a route through
//! [`ChainedPlugin`] in order, with the fail policies; the plugin harness
//! runs the one plugin under test through the same code, so a plugin's
//! tests check the merge users run.
//!
//! The rules (`wit/plugin.wit`, `fixed-edits`): a plugin's fixed edits come
//! first, then its hook's; the hook sees the head without them; a request
//! the plugin answers gets none; a host-made response gets the response
//! side only with `response-always`; a hook that fails or returns what
//! cannot go on the wire takes them with it.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use crate::fixed_edits::PreparedEdits;
use crate::wire_edits::{
    apply_to_list, check_header_edits, check_immediate_response, check_path, set_target,
    InvalidOutput, WireEdit,
};
use crate::{
    ConfiguredPlugin, FixedEdits, HeaderFilter, HookSet, ImmediateResponse, LogFieldSet, LogRecord,
    LogVerdict, PluginFault, RequestAction, RequestEdits, RequestHead, ResponseEdits, ResponseHead,
};

/// Why a plugin's hook gave nothing usable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookFault {
    /// The call trapped, timed out, ran out of memory or could not start.
    #[error(transparent)]
    Plugin(#[from] PluginFault),
    /// The call returned something that cannot go on the wire.
    #[error("returned {0}")]
    InvalidOutput(#[from] InvalidOutput),
}

/// A hook call in flight: calls are async (a guest yields its worker at
/// each epoch tick), so a chain awaits them.
pub type HookCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, PluginFault>> + Send + 'a>>;

/// A log hook call on a batch of records in flight: a verdict or fault
/// per record.
pub type LogBatchCall<'a> =
    Pin<Box<dyn Future<Output = Vec<Result<LogVerdict, PluginFault>>> + Send + 'a>>;

/// The hook surface of one configured plugin, as a chain calls it. The
/// runtime's [`ConfiguredPlugin`] implements it; tests use scripted plugins.
/// The heads are `&mut` so the runtime can narrow their header lists to the
/// fields the plugin declared for the call; they are whole again when a
/// hook returns.
pub trait PluginHooks: Send + Sync {
    fn name(&self) -> &str;
    /// The hooks that enter the plugin.
    fn hooks(&self) -> HookSet;
    /// The header edits the plugin makes to every request and response
    /// (`plugin-info.fixed-edits`), which [`ChainedPlugin`] makes at the
    /// plugin's place, without a call. None by default.
    fn fixed_edits(&self) -> FixedEdits {
        FixedEdits::none()
    }
    /// The request hook alone (the fixed edits are [`ChainedPlugin`]'s).
    /// Called only when [`PluginHooks::hooks`] has it.
    fn on_request<'a>(&'a self, req: &'a mut RequestHead) -> HookCall<'a, RequestAction>;
    /// The response hook alone, as [`PluginHooks::on_request`].
    fn on_response<'a>(
        &'a self,
        req: &'a mut RequestHead,
        resp: &'a mut ResponseHead,
    ) -> HookCall<'a, ResponseEdits>;
    fn on_log<'a>(&'a self, rec: &'a mut LogRecord) -> HookCall<'a, LogVerdict>;
    /// The log hook for a batch of records: a verdict or fault per record,
    /// in order. By default one [`PluginHooks::on_log`] per record; the
    /// runtime's plugin makes one call per batch.
    fn on_log_batch<'a>(&'a self, recs: &'a mut [LogRecord]) -> LogBatchCall<'a> {
        Box::pin(async move {
            let mut verdicts = Vec::with_capacity(recs.len());
            for rec in recs.iter_mut() {
                verdicts.push(self.on_log(rec).await);
            }
            verdicts
        })
    }
    /// The request header fields the hooks read (`plugin-info`).
    fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::All
    }
    /// The response header fields the hooks read (`plugin-info`).
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::All
    }
    /// The optional log-record fields the log hook reads (`plugin-info`).
    fn log_record_fields(&self) -> LogFieldSet {
        LogFieldSet::all()
    }
}

impl PluginHooks for ConfiguredPlugin {
    fn name(&self) -> &str {
        ConfiguredPlugin::name(self)
    }
    fn hooks(&self) -> HookSet {
        ConfiguredPlugin::hooks(self)
    }
    fn fixed_edits(&self) -> FixedEdits {
        self.info().fixed_edits.clone()
    }
    fn on_request<'a>(&'a self, req: &'a mut RequestHead) -> HookCall<'a, RequestAction> {
        Box::pin(self.request_hook(req))
    }
    fn on_response<'a>(
        &'a self,
        req: &'a mut RequestHead,
        resp: &'a mut ResponseHead,
    ) -> HookCall<'a, ResponseEdits> {
        Box::pin(self.response_hook(req, resp))
    }
    fn on_log<'a>(&'a self, rec: &'a mut LogRecord) -> HookCall<'a, LogVerdict> {
        Box::pin(self.log_hook(rec))
    }
    fn on_log_batch<'a>(&'a self, recs: &'a mut [LogRecord]) -> LogBatchCall<'a> {
        Box::pin(self.log_batch_hook(recs))
    }
    fn request_headers(&self) -> HeaderFilter {
        self.info().request_headers.clone()
    }
    fn response_headers(&self) -> HeaderFilter {
        self.info().response_headers.clone()
    }
    fn log_record_fields(&self) -> LogFieldSet {
        self.info().log_fields
    }
}

impl<P: PluginHooks + ?Sized> PluginHooks for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn hooks(&self) -> HookSet {
        (**self).hooks()
    }
    fn fixed_edits(&self) -> FixedEdits {
        (**self).fixed_edits()
    }
    fn on_request<'a>(&'a self, req: &'a mut RequestHead) -> HookCall<'a, RequestAction> {
        (**self).on_request(req)
    }
    fn on_response<'a>(
        &'a self,
        req: &'a mut RequestHead,
        resp: &'a mut ResponseHead,
    ) -> HookCall<'a, ResponseEdits> {
        (**self).on_response(req, resp)
    }
    fn on_log<'a>(&'a self, rec: &'a mut LogRecord) -> HookCall<'a, LogVerdict> {
        (**self).on_log(rec)
    }
    fn on_log_batch<'a>(&'a self, recs: &'a mut [LogRecord]) -> LogBatchCall<'a> {
        (**self).on_log_batch(recs)
    }
    fn request_headers(&self) -> HeaderFilter {
        (**self).request_headers()
    }
    fn response_headers(&self) -> HeaderFilter {
        (**self).response_headers()
    }
    fn log_record_fields(&self) -> LogFieldSet {
        (**self).log_record_fields()
    }
}

/// One plugin's fixed edits, ready for the wire.
#[derive(Debug, Clone, Default)]
struct PreparedFixedEdits {
    request: PreparedEdits,
    response: PreparedEdits,
    /// Also on responses the host made (nginx `add_header ... always`).
    response_always: bool,
}

impl PreparedFixedEdits {
    fn new(fixed: &FixedEdits) -> Result<PreparedFixedEdits, InvalidOutput> {
        Ok(PreparedFixedEdits {
            request: PreparedEdits::new(&fixed.request)?,
            response: PreparedEdits::new(&fixed.response)?,
            response_always: fixed.response_always,
        })
    }

    /// The response edits that apply, rendered for `req`: all of them, or
    /// none for a host-made response unless `response-always`.
    fn response_for(
        &self,
        req: &RequestHead,
        host_generated: bool,
    ) -> Result<Cow<'_, [WireEdit]>, InvalidOutput> {
        if host_generated && !self.response_always {
            Ok(Cow::Borrowed(&[]))
        } else {
            self.response.for_request(req)
        }
    }
}

/// What one plugin's request phase gave.
#[derive(Debug)]
pub enum RequestStep {
    /// The request goes on, with what the hook returned (its delay, vars
    /// and path; no hook: none).
    Continue(RequestEdits),
    /// The plugin answered (checked; names lower case).
    Respond(ImmediateResponse),
}

/// A plugin at its place in a chain: the plugin, the hooks that enter it,
/// the phases it takes part in and its fixed edits, parsed once.
pub struct ChainedPlugin<P> {
    plugin: P,
    hooks: HookSet,
    phases: HookSet,
    fixed: PreparedFixedEdits,
}

impl<P: PluginHooks> ChainedPlugin<P> {
    /// `plugin` ready for a chain; an error when its fixed edits could not
    /// go on the wire (the config is rejected then, not every request).
    pub fn new(plugin: P) -> Result<ChainedPlugin<P>, InvalidOutput> {
        let hooks = plugin.hooks();
        let declared = plugin.fixed_edits();
        let fixed = PreparedFixedEdits::new(&declared)?;
        Ok(ChainedPlugin {
            plugin,
            hooks,
            phases: hooks | declared.phases(),
            fixed,
        })
    }

    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The hooks that enter the plugin: what reads the heads' fields.
    pub fn hooks(&self) -> HookSet {
        self.hooks
    }

    /// The phases it runs in: its hooks and its fixed edits' sides.
    pub fn phases(&self) -> HookSet {
        self.phases
    }

    /// The plugin's request phase: its hook (when it has one), then its
    /// fixed edits and the hook's applied to `head`, all or nothing, for
    /// the next plugin to see, and appended to `header_edits` (the fixed
    /// ones first) for the header map that goes upstream. The hook's path
    /// and header edits are checked before anything is touched.
    pub async fn request_phase(
        &self,
        head: &mut RequestHead,
        header_edits: &mut Vec<WireEdit>,
    ) -> Result<RequestStep, HookFault> {
        let action = if self.hooks.contains(HookSet::REQUEST) {
            self.plugin.on_request(head).await?
        } else {
            RequestAction::go_on(Vec::new())
        };
        match action {
            RequestAction::Continue(edits) => {
                if let Some(target) = &edits.path {
                    check_path(target)?;
                }
                let checked = check_header_edits(&edits.headers)?;
                let fixed = self.fixed.request.for_request(head)?;
                if !fixed.is_empty() || !checked.is_empty() {
                    let list = head.headers.get_or_insert_default();
                    apply_to_list(list, &fixed);
                    apply_to_list(list, &checked);
                }
                if let Some(target) = &edits.path {
                    set_target(head, target);
                }
                extend_with(header_edits, fixed);
                header_edits.extend(checked);
                Ok(RequestStep::Continue(edits))
            }
            RequestAction::Respond(mut resp) => {
                check_immediate_response(&mut resp)?;
                Ok(RequestStep::Respond(resp))
            }
        }
    }

    /// The plugin's response phase: its hook (when it has one), then the
    /// fixed edits that apply to `resp` and the hook's, checked, appended
    /// to `applied` in order for the header map that goes on the wire. With
    /// `read_after` (a response hook earlier in the chain runs after this
    /// one) they are applied to `resp`'s list too, for it to read. On a
    /// fault nothing is appended.
    pub async fn response_phase(
        &self,
        req: &mut RequestHead,
        resp: &mut ResponseHead,
        read_after: bool,
        applied: &mut Vec<WireEdit>,
    ) -> Result<(), HookFault> {
        let hook_edits = if self.hooks.contains(HookSet::RESPONSE) {
            let edits = self.plugin.on_response(req, resp).await?;
            check_header_edits(&edits.headers)?
        } else {
            Vec::new()
        };
        let fixed = self.fixed.response_for(req, resp.host_generated)?;
        if read_after {
            let list = resp.headers.get_or_insert_default();
            apply_to_list(list, &fixed);
            apply_to_list(list, &hook_edits);
        }
        extend_with(applied, fixed);
        applied.extend(hook_edits);
        Ok(())
    }
}

/// Appends `edits` to `out`: rendered ones moved, parsed-once ones cloned.
fn extend_with(out: &mut Vec<WireEdit>, edits: Cow<'_, [WireEdit]>) {
    match edits {
        Cow::Borrowed(edits) => out.extend_from_slice(edits),
        Cow::Owned(edits) => out.extend(edits),
    }
}
