//! Host-side bindings generated from `wit/plugin.wit`: the one `bindgen!`.
//! Host imports are synchronous and trappable: a plugin that misuses one
//! (a zero rate, an oversized key) traps with a message saying why.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
    imports: { default: trappable },
    additional_derives: [PartialEq],
});

pub use tailgate::plugin::host;
pub use tailgate::plugin::types;
