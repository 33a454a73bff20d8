//! The guest bindings of `wit/plugin.wit` (world `plugin`), generated once
//! here by wit-bindgen. Everything a plugin touches is re-exported from the
//! crate root with helpers; this module is public only so the export macro
//! can name the generated glue. The `on-log` export is not generated: the
//! SDK writes it (log_export.rs), lifting records straight into its own.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "__export_tailgate_hooks",
    default_bindings_module: "tailgate_plugin_sdk::bindings",
    ownership: Borrowing { duplicate_if_necessary: false },
    additional_derives: [PartialEq],
    skip: ["on-log"],
});
