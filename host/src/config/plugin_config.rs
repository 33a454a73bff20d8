//! A route's plugin `config` table, laid over the plugin's own
//! (`[plugins.NAME] config`), as the JSON text its plugin's `configure`
//! receives. Part of config loading; the plugin validates the content itself
//! when the plugin chains are loaded. The conversion lives in the plugin
//! runtime (`tailgate_runtime::plugin_config`), shared with the plugin
//! harness so a cases file's config reaches a plugin exactly as the proxy's.

pub use tailgate_runtime::plugin_config::{layered_config, table_to_json};
