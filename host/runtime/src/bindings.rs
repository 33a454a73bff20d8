//! Host-side bindings generated from `wit/plugin.wit`: the one `bindgen!`.
//! Exports (the hooks) are called async, on a fiber that yields at epoch
//! ticks. Host imports are synchronous and trappable: a plugin that misuses
//! one (a zero rate, an oversized key) traps with a message saying why. An
//! import that must wait is made async here by name
//! (`"tailgate:plugin/host.kv-get": async | trappable`); see
//! docs/plugin-runtime.md.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
    imports: { default: trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use tailgate::plugin::host;
pub use tailgate::plugin::types;
