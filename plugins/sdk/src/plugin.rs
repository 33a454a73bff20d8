//! The [`Plugin`] trait a plugin author implements, and the
//! [`export_plugin!`](crate::export_plugin) macro that wires an implementation
//! to the component's exported `hooks` interface: `configure` builds and keeps
//! the one instance, each hook call is dispatched to it.

use std::cell::OnceCell;

use crate::bindings::tailgate::plugin::types as wit;
use crate::{
    Config, FixedEdits, HeaderFilter, HookGate, HookSet, LogFieldSet, LogGate, LogRecord,
    LogVerdict, PluginInfo, RequestAction, RequestChecks, RequestFieldSet, RequestHead,
    ResponseEdits, ResponseHead, StateScope,
};

/// One plugin: built from a route's config by [`Plugin::configure`], then
/// called per request.
///
/// The host calls only the hooks that [`Plugin::hooks`] reports, in this
/// order: `on_request` -> (upstream or cache) -> `on_response` -> `on_log`.
/// Every hook has a default, so implement only the ones you need, and mark
/// the impl block [`#[plugin]`](macro@crate::plugin): it writes
/// [`Plugin::HOOKS`] from the hooks the block defines, so a hook you wrote
/// is always called.
///
/// A component instance is single-threaded and may serve many requests in a
/// row, so `&self` is all a hook gets; keep per-request state out of `self`
/// (use `Cell`s only for things like caches that any request may share).
pub trait Plugin: Sized + 'static {
    /// The hooks this type implements, e.g.
    /// `HookSet::REQUEST.union(HookSet::RESPONSE)`. Written by
    /// [`#[plugin]`](macro@crate::plugin) from the hooks the impl block
    /// defines; write it by hand only without the attribute.
    const HOOKS: HookSet;

    /// Validate this route's plugin config and build the plugin. Runs once
    /// per instance, at load time; an `Err` is shown to the operator with
    /// the route and plugin name, and the config is rejected. Parse with
    /// [`Config::parse`] and check everything here, not per request.
    fn configure(config: &Config) -> Result<Self, String>;

    /// The hooks the host should call for this configured instance. Defaults
    /// to [`Plugin::HOOKS`]; narrow it when a config leaves a hook with
    /// nothing to do, so the host skips the call. A hook outside
    /// [`Plugin::HOOKS`] here fails `configure`, naming it.
    fn hooks(&self) -> HookSet {
        Self::HOOKS
    }

    /// The request header fields the hooks read (in
    /// [`RequestHead::headers`] and [`LogRecord::request_headers`]); the host
    /// copies only those into the instance. Defaults to every field; name
    /// the few this config reads ([`HeaderFilter::only`]) and each call is
    /// cheaper: every field copied costs two allocations in the guest.
    fn request_headers(&self) -> HeaderFilter {
        HeaderFilter::All
    }

    /// The response header fields the hooks read (in
    /// [`ResponseHead::headers`] and [`LogRecord::response_headers`]), like
    /// [`Plugin::request_headers`]. Defaults to every field.
    fn response_headers(&self) -> HeaderFilter {
        HeaderFilter::All
    }

    /// The [`RequestHead`] text fields the hooks read (headers aside: see
    /// [`Plugin::request_headers`]; method, scheme and client address always
    /// come). Defaults to every field; each one left out saves the guest an
    /// allocation per call. Reading a field left out panics, naming it
    /// (see [`Field`](crate::Field)): the mistake shows at the first call.
    fn request_fields(&self) -> RequestFieldSet {
        RequestFieldSet::all()
    }

    /// The [`LogRecord`] text fields and vars `on_log` reads (headers aside;
    /// numbers, enums and addresses always come), as
    /// [`Plugin::request_fields`]. Defaults to every field.
    fn log_fields(&self) -> LogFieldSet {
        LogFieldSet::all()
    }

    /// Whose counters, window counters, kv and gauges this configured
    /// plugin's [`host`](crate::host) calls use: the plugin's own (the
    /// default), its route's, or a named scope shared by the configs that
    /// name it. The ban list is scoped by jail names instead.
    fn state_scope(&self) -> StateScope {
        StateScope::Plugin
    }

    /// Header edits this configured plugin makes to every request and
    /// every response by one recipe: text ([`FixedEdit::text`](crate::FixedEdit::text), or a
    /// [`HeaderEdit`](crate::HeaderEdit)), or a template whose
    /// placeholders the host fills in from each request
    /// ([`FixedEdit::template`](crate::FixedEdit::template): `X-Real-IP: {client_ip}`). The host
    /// applies them at the plugin's place in the chain without calling into
    /// it, so a side whose edits are all here needs no hook (leave it out of
    /// [`Plugin::hooks`]) and costs the request no call. A hook the plugin
    /// keeps adds its edits after these, and sees the head without them.
    /// Defaults to none.
    fn fixed_edits(&self) -> FixedEdits {
        FixedEdits::none()
    }

    /// Rate-limit checks the host makes on every request before
    /// [`Plugin::on_request`], entering the plugin only when one does not
    /// pass ([`RequestChecks`](crate::RequestChecks)): declare them when
    /// the hook would check these zone uses (registered in `configure`),
    /// keyed by the client address, on every request, and would then go on
    /// with `passed`'s vars and nothing else when all pass. The hook's own
    /// `rate_limit_check` of a checked use gets the host's decision for the
    /// request, not a second count. Defaults to none.
    fn request_checks(&self) -> RequestChecks {
        RequestChecks::none()
    }

    /// The requests the host enters [`Plugin::on_request`] for: every one
    /// by default; declare a [`HookGate`] (methods, request header fields
    /// that must be present) when the hook has nothing to do for the rest,
    /// and they go on as if it had returned [`RequestAction::proceed`],
    /// costing no call (cors answers preflights only:
    /// `HookGate::methods([Method::Options]).with_header("origin")`). The
    /// fixed edits still apply to every request, and a request check that
    /// does not pass enters the hook whatever the gate says.
    fn request_gate(&self) -> HookGate {
        HookGate::every()
    }

    /// The requests the host enters [`Plugin::on_response`] for, as
    /// [`Plugin::request_gate`]: the others' responses get no edits from
    /// the hook (the fixed edits still apply). The gate reads the
    /// request, not the response.
    fn response_gate(&self) -> HookGate {
        HookGate::every()
    }

    /// The log records the host enters [`Plugin::on_log`] for: every one
    /// by default; declare a [`LogGate`] of response statuses when the
    /// hook has nothing to do for the rest, and they are kept as if it had
    /// returned [`LogVerdict::Keep`] (the host's own line), costing no call
    /// (ban counts failures: `LogGate::statuses([401, 403])`).
    fn log_gate(&self) -> LogGate {
        LogGate::every()
    }

    /// Before the request goes upstream: go on with edits
    /// ([`RequestAction::proceed`], a [`RequestEdits`](crate::RequestEdits)
    /// `.into()`), or answer now ([`RequestAction::respond`],
    /// [`RequestAction::redirect`]). When it answers, later plugins' request
    /// hooks and the upstream are skipped; response and log hooks still run.
    ///
    /// Default: go on unchanged.
    fn on_request(&self, req: &RequestHead) -> RequestAction {
        let _ = req;
        RequestAction::proceed()
    }

    /// After the response head is known, before it is sent; also for
    /// responses a plugin or the host produced (see
    /// `ResponseHead::host_generated`).
    ///
    /// Default: no edits.
    fn on_response(&self, req: &RequestHead, resp: &ResponseHead) -> ResponseEdits {
        let _ = (req, resp);
        ResponseEdits::new()
    }

    /// After the exchange, for every request (also failed ones): keep the
    /// line as it is ([`LogVerdict::Keep`], an observer), shape it
    /// ([`LogVerdict::Shape`]) or drop it ([`LogVerdict::Drop`]). Every
    /// plugin of a route that has this hook runs, in chain order; the last
    /// shape or drop decides the line.
    ///
    /// Default: keep.
    fn on_log(&self, rec: &LogRecord) -> LogVerdict {
        let _ = rec;
        LogVerdict::Keep
    }
}

/// Exports a [`Plugin`] type as the component's `hooks`.
///
/// `export_plugin!(MyPlugin);` once, in the plugin crate's `lib.rs` (a
/// `cdylib`). `configure` builds `MyPlugin` and keeps it for the instance's
/// lifetime; the hooks are dispatched to it.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            struct TailgateHooks;

            ::std::thread_local! {
                static TAILGATE_PLUGIN: ::std::cell::OnceCell<$plugin> =
                    const { ::std::cell::OnceCell::new() };
            }

            impl $crate::__private::Guest for TailgateHooks {
                fn configure(
                    config: ::std::string::String,
                ) -> ::std::result::Result<$crate::PluginInfo, ::std::string::String> {
                    TAILGATE_PLUGIN.with(|slot| $crate::__private::dispatch::configure(slot, config))
                }

                fn on_request(req: $crate::__private::wit::RequestHead) -> $crate::RequestAction {
                    TAILGATE_PLUGIN.with(|slot| $crate::__private::dispatch::on_request(slot, req))
                }

                fn on_response(
                    req: $crate::__private::wit::RequestHead,
                    resp: $crate::__private::wit::ResponseHead,
                ) -> $crate::ResponseEdits {
                    TAILGATE_PLUGIN.with(|slot| $crate::__private::dispatch::on_response(slot, req, resp))
                }
            }

            /// `on-log`, written by the SDK (log_export.rs), not by
            /// wit-bindgen.
            #[unsafe(export_name = "tailgate:plugin/hooks@0.11.0#on-log")]
            unsafe extern "C" fn tailgate_export_on_log(
                records: *mut u8,
                count: usize,
            ) -> *mut u8 {
                TAILGATE_PLUGIN.with(|slot| unsafe { $crate::__private::on_log(slot, records, count) })
            }

            #[unsafe(export_name = "cabi_post_tailgate:plugin/hooks@0.11.0#on-log")]
            unsafe extern "C" fn tailgate_post_return_on_log(ret: *mut u8) {
                unsafe { $crate::__private::post_return_on_log(ret) }
            }

            $crate::bindings::__export_tailgate_hooks!(TailgateHooks with_types_in $crate::bindings);
        };
    };
}

/// What the exported functions do, kept out of the macro so it stays small
/// and this logic is compiled (and tested) once, in this crate.
pub mod dispatch {
    use super::*;
    use std::cell::Cell;

    std::thread_local! {
        /// The fields the configured instance asked for, to build the
        /// records its hooks read (an instance is single-threaded and
        /// configured once).
        static ASKED: Cell<(RequestFieldSet, LogFieldSet)> =
            const { Cell::new((RequestFieldSet::all(), LogFieldSet::all())) };
    }

    /// `configure`: build the plugin from the JSON config and keep it.
    pub fn configure<P: Plugin>(
        slot: &OnceCell<P>,
        config_json: String,
    ) -> Result<PluginInfo, String> {
        if slot.get().is_some() {
            return Err("configure called twice on one instance".to_owned());
        }
        let plugin = P::configure(&Config::new(config_json))?;
        check_hooks(plugin.hooks(), P::HOOKS)?;
        let info = PluginInfo {
            hooks: plugin.hooks(),
            request_headers: plugin.request_headers(),
            response_headers: plugin.response_headers(),
            request_fields: plugin.request_fields(),
            log_fields: plugin.log_fields(),
            fixed_edits: plugin.fixed_edits(),
            state_scope: plugin.state_scope(),
            request_checks: plugin.request_checks(),
            request_gate: plugin.request_gate(),
            response_gate: plugin.response_gate(),
            log_gate: plugin.log_gate(),
        };
        ASKED.with(|asked| asked.set((info.request_fields, info.log_fields)));
        // Cannot fail: checked empty above and an instance is single-threaded.
        let _ = slot.set(plugin);
        Ok(info)
    }

    /// `hooks()` may narrow `HOOKS`, never widen it: a hook it adds is not
    /// implemented, and calling its default would hide the mistake.
    fn check_hooks(asked: HookSet, implemented: HookSet) -> Result<(), String> {
        let missing = asked - implemented;
        if missing.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = [
            (HookSet::REQUEST, "on_request"),
            (HookSet::RESPONSE, "on_response"),
            (HookSet::LOG, "on_log"),
        ]
        .into_iter()
        .filter(|(flag, _)| missing.contains(*flag))
        .map(|(_, name)| name)
        .collect();
        Err(format!(
            "plugin bug: hooks() reports {}, which the plugin does not implement \
             (Plugin::HOOKS; #[plugin] derives it from the hooks the impl defines)",
            names.join(", ")
        ))
    }

    /// `on-request`: the contract's record as the SDK's, to the plugin.
    pub fn on_request<P: Plugin>(slot: &OnceCell<P>, req: wit::RequestHead) -> RequestAction {
        configured(slot).on_request(&request(req))
    }

    fn request(req: wit::RequestHead) -> RequestHead {
        RequestHead::from_wit(req, ASKED.with(|asked| asked.get().0))
    }

    /// `on-response`, like [`on_request`].
    pub fn on_response<P: Plugin>(
        slot: &OnceCell<P>,
        req: wit::RequestHead,
        resp: wit::ResponseHead,
    ) -> ResponseEdits {
        configured(slot).on_response(&request(req), &resp.into())
    }

    /// The log fields the configured instance asked for (`on-log` builds
    /// its records with them: log_export.rs).
    pub fn log_fields() -> LogFieldSet {
        ASKED.with(|asked| asked.get().1)
    }

    /// The configured plugin for a hook call. The host calls `configure`
    /// before any hook; a hook without it is a host bug, and trapping is
    /// the only honest answer.
    pub fn configured<P: Plugin>(slot: &OnceCell<P>) -> &P {
        match slot.get() {
            Some(plugin) => plugin,
            None => panic!("tailgate plugin hook called before configure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dispatch;
    use super::*;
    use crate::RequestEdits;

    struct Echo {
        greeting: String,
    }

    #[crate::plugin]
    impl Plugin for Echo {
        fn configure(config: &Config) -> Result<Self, String> {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Settings {
                greeting: String,
            }
            let settings: Settings = config.parse()?;
            Ok(Echo {
                greeting: settings.greeting,
            })
        }

        fn hooks(&self) -> HookSet {
            if self.greeting.is_empty() {
                HookSet::empty()
            } else {
                Self::HOOKS
            }
        }

        fn response_headers(&self) -> HeaderFilter {
            HeaderFilter::only(["X-Greeting"])
        }

        fn on_response(&self, _: &RequestHead, _: &ResponseHead) -> ResponseEdits {
            ResponseEdits::new().set_header("x-greeting", self.greeting.as_str())
        }

        fn on_log(&self, _: &LogRecord) -> LogVerdict {
            LogVerdict::Drop
        }
    }

    /// Claims a log hook it does not have.
    struct Boaster;

    #[crate::plugin]
    impl Plugin for Boaster {
        fn configure(_: &Config) -> Result<Self, String> {
            Ok(Boaster)
        }

        fn hooks(&self) -> HookSet {
            HookSet::REQUEST | HookSet::LOG
        }

        fn on_request(&self, _: &RequestHead) -> RequestAction {
            RequestAction::proceed()
        }
    }

    #[test]
    fn the_hooks_are_the_ones_the_impl_defines() {
        assert_eq!(Echo::HOOKS, HookSet::RESPONSE | HookSet::LOG);
        assert_eq!(Boaster::HOOKS, HookSet::REQUEST);
    }

    #[test]
    fn reporting_a_hook_not_implemented_fails_configure_naming_it() {
        let slot = OnceCell::new();
        let err = dispatch::configure::<Boaster>(&slot, "{}".to_owned()).expect_err("refused");
        assert!(err.contains("hooks() reports on_log"), "{err}");
        assert!(slot.get().is_none());
    }

    #[test]
    fn configure_keeps_the_instance_and_reports_its_hooks() {
        let slot = OnceCell::new();
        let info = dispatch::configure::<Echo>(&slot, r#"{"greeting":"hi"}"#.to_owned());
        assert_eq!(
            info,
            Ok(PluginInfo {
                hooks: HookSet::RESPONSE | HookSet::LOG,
                request_headers: HeaderFilter::All,
                response_headers: HeaderFilter::only(["X-Greeting"]),
                request_fields: RequestFieldSet::all(),
                log_fields: LogFieldSet::all(),
                fixed_edits: FixedEdits::none(),
                state_scope: StateScope::Plugin,
                request_checks: RequestChecks::none(),
                request_gate: HookGate::every(),
                response_gate: HookGate::every(),
                log_gate: LogGate::every(),
            })
        );
        assert_eq!(dispatch::configured(&slot).greeting, "hi");
    }

    #[test]
    fn configure_lets_the_instance_narrow_its_hooks() {
        let slot = OnceCell::new();
        let info = dispatch::configure::<Echo>(&slot, r#"{"greeting":""}"#.to_owned());
        assert_eq!(info.map(|info| info.hooks), Ok(HookSet::empty()));
    }

    #[test]
    fn configure_passes_the_plugins_error_through_and_keeps_nothing() {
        let slot = OnceCell::new();
        let err = dispatch::configure::<Echo>(&slot, r#"{"greting":"hi"}"#.to_owned());
        assert_eq!(
            err,
            Err("greting: unknown field `greting`, expected `greeting`".to_owned())
        );
        assert!(slot.get().is_none());
    }

    #[test]
    fn configure_twice_is_refused() {
        let slot = OnceCell::new();
        let first = dispatch::configure::<Echo>(&slot, r#"{"greeting":"a"}"#.to_owned());
        assert!(first.is_ok());
        let second = dispatch::configure::<Echo>(&slot, r#"{"greeting":"b"}"#.to_owned());
        assert_eq!(
            second,
            Err("configure called twice on one instance".to_owned())
        );
        assert_eq!(dispatch::configured(&slot).greeting, "a");
    }

    #[test]
    fn default_hooks_go_on_unchanged() {
        let slot = OnceCell::new();
        assert!(dispatch::configure::<Echo>(&slot, r#"{"greeting":"a"}"#.to_owned()).is_ok());
        let plugin = dispatch::configured(&slot);
        let req = crate::head::tests::request(&[]);
        match plugin.on_request(&req) {
            RequestAction::Continue(edits) => assert_eq!(edits, RequestEdits::new()),
            RequestAction::Respond(resp) => panic!("default on_request answered {}", resp.status),
        }
    }
}
