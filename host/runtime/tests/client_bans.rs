//! Request checks of the client's address in ban lists
//! (`plugin-info.request-checks.client-bans`) on the real fault-injector:
//! a client banned in none of the jails goes on with the declared vars and
//! the request hook (which would trap here) is not entered; a client
//! banned in one enters it; a jail name `ban-check` would refuse rejects
//! the config.

mod common;

use common::*;
use tailgate_runtime::{BanRequest, ConfigureError, PluginFault, RequestAction};

/// The request hook traps when entered; two jails checked by the host.
const CHECKED: &str = r#"{"mode":"trap","hook":"request","hooks":["request"],
    "client_bans":["login","api"]}"#;

#[test]
fn only_a_client_banned_in_a_checked_jail_enters_the_request_hook() {
    let metrics = metrics_of(|| {
        let runtime = runtime();
        let plugin = configured(&runtime, "banned", CHECKED);
        let mut req = request("banned", "/", "203.0.113.9");
        match plugin.on_request(&mut req).expect("not entered") {
            RequestAction::Continue(edits) => assert!(edits.vars.is_empty()),
            RequestAction::Respond(resp) => panic!("answered {}", resp.status),
        }
        // Another address banned, and this one in a jail not checked.
        runtime
            .bans()
            .add("login", "203.0.113.10", &BanRequest::fixed(60_000));
        runtime
            .bans()
            .add("other", "203.0.113.9", &BanRequest::fixed(60_000));
        plugin.on_request(&mut req).expect("still not entered");
        // Banned in the second checked jail: the hook is entered (and traps).
        runtime
            .bans()
            .add("api", "203.0.113.9", &BanRequest::fixed(60_000));
        assert!(matches!(
            plugin.on_request(&mut req),
            Err(PluginFault::Trap(_))
        ));
    });
    let calls = metrics.counter(
        "tailgate_plugin_calls_total",
        &[
            ("plugin", "fault-injector"),
            ("route", "banned"),
            ("hook", "request"),
        ],
    );
    assert_eq!(calls, 1, "only the banned client's request");
}

#[test]
fn an_empty_jail_name_rejects_the_config() {
    let runtime = runtime();
    let plugin = load(&runtime, "fault-injector");
    let err = runtime
        .configure(
            &plugin,
            "bad-jail",
            r#"{"mode":"ok","client_bans":[""]}"#,
            limits(),
        )
        .map(|_| ())
        .expect_err("an empty jail name");
    match err {
        ConfigureError::Rejected { message, .. } => assert!(
            message.contains("request-checks.client-bans names the jail \"\""),
            "{message}"
        ),
        other => panic!("not a rejection: {other}"),
    }
}
