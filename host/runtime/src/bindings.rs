//! Host-side bindings generated from `wit/plugin.wit`: the one `bindgen!`.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
});

pub use tailgate::plugin::types;
