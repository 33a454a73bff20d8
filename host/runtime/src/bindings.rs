//! Host-side bindings generated from `wit/plugin.wit`: the one `bindgen!`.
//! Exports (the hooks) are called async, on a fiber that yields at epoch
//! ticks. Host imports are trappable: a plugin that misuses one (a zero
//! rate, an oversized key) traps with a message saying why. Most are
//! synchronous; the state imports that may consult the shared backend
//! (`[state] backend = "redis"`) are async, named below; see
//! docs/plugin-runtime.md.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
    imports: {
        // The state imports may wait for the shared backend (Redis).
        "tailgate:plugin/host.rate-limit-check": async | trappable,
        "tailgate:plugin/host.counter-incr": async | trappable,
        "tailgate:plugin/host.counter-get": async | trappable,
        "tailgate:plugin/host.window-add": async | trappable,
        "tailgate:plugin/host.window-count": async | trappable,
        "tailgate:plugin/host.window-reset": async | trappable,
        "tailgate:plugin/host.kv-get": async | trappable,
        "tailgate:plugin/host.kv-set": async | trappable,
        "tailgate:plugin/host.kv-delete": async | trappable,
        "tailgate:plugin/host.kv-set-if-absent": async | trappable,
        "tailgate:plugin/host.kv-compare-and-set": async | trappable,
        "tailgate:plugin/host.kv-ttl": async | trappable,
        "tailgate:plugin/host.ban-add": async | trappable,
        "tailgate:plugin/host.ban-check": async | trappable,
        "tailgate:plugin/host.ban-remove": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use tailgate::plugin::host;
pub use tailgate::plugin::types;
