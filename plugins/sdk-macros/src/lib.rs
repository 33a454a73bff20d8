//! `#[tailgate_plugin_sdk::plugin]`, re-exported by the SDK: put on a
//! plugin's `impl Plugin for X { ... }`, it writes `const HOOKS` from the
//! hooks the block defines (`on_request`, `on_response`, `on_log`), so a
//! hook that is implemented is always called and one that is not never is.
//! Writing `const HOOKS` by hand in such a block is a compile error.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl};

/// The hook methods and the `HookSet` flag each one stands for.
const HOOKS: [(&str, &str); 3] = [
    ("on_request", "REQUEST"),
    ("on_response", "RESPONSE"),
    ("on_log", "LOG"),
];

/// Derives `const HOOKS: HookSet` of an `impl Plugin for X` block from
/// the hooks it defines:
///
/// ```ignore
/// #[tailgate_plugin_sdk::plugin]
/// impl Plugin for Tagger {
///     fn configure(config: &Config) -> Result<Self, String> { ... }
///     fn on_request(&self, req: &RequestHead) -> RequestAction { ... }
/// }
/// // HOOKS = HookSet::REQUEST
/// ```
///
/// Narrow the set per config with `fn hooks(&self)`.
#[proc_macro_attribute]
pub fn plugin(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand(attr.into(), item.into()).into()
}

/// The attribute's work, on `proc_macro2` tokens so it can be unit-tested.
fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error(
            attr.span(),
            "#[plugin] takes no arguments: the hooks come from the methods the impl defines",
        );
    }
    let mut block: ItemImpl = match syn::parse2(item.clone()) {
        Ok(block) => block,
        Err(_) => {
            let mut out = error(
                Span::call_site(),
                "#[plugin] goes on the plugin's `impl Plugin for YourType { ... }` block",
            );
            out.extend(item);
            return out;
        }
    };
    let is_plugin_impl = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|segment| segment.ident == "Plugin");
    if !is_plugin_impl {
        let mut out = error(
            block.self_ty.span(),
            "#[plugin] goes on `impl Plugin for YourType { ... }`, not on another impl block",
        );
        out.extend(quote!(#block));
        return out;
    }
    let mut errors = TokenStream::new();
    let mut flags = Vec::new();
    for item in &block.items {
        match item {
            ImplItem::Const(constant) if constant.ident == "HOOKS" => {
                errors.extend(error(
                    constant.ident.span(),
                    "#[plugin] derives `const HOOKS` from the hooks this impl defines \
                     (on_request, on_response, on_log): remove this one (to leave a hook \
                     out for some configs, override `fn hooks(&self)`)",
                ));
            }
            ImplItem::Fn(method) => {
                if let Some((_, flag)) = HOOKS.iter().find(|(name, _)| method.sig.ident == name) {
                    flags.push(syn::Ident::new(flag, Span::call_site()));
                }
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        errors.extend(quote!(#block));
        return errors;
    }
    let set = flags.iter().fold(
        quote!(::tailgate_plugin_sdk::HookSet::empty()),
        |set, flag| quote!(#set.union(::tailgate_plugin_sdk::HookSet::#flag)),
    );
    block.items.insert(
        0,
        syn::parse_quote! {
            /// The hooks this impl defines (written by `#[plugin]`).
            const HOOKS: ::tailgate_plugin_sdk::HookSet = #set;
        },
    );
    quote!(#block)
}

fn error(span: Span, message: &str) -> TokenStream {
    quote_spanned!(span=> ::core::compile_error!(#message);)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(item: &str) -> String {
        let item: TokenStream = item.parse().expect("tokens");
        expand(TokenStream::new(), item).to_string()
    }

    #[test]
    fn hooks_are_the_ones_the_impl_defines() {
        let out = expanded(
            "impl Plugin for X {
                fn configure(config: &Config) -> Result<Self, String> { todo!() }
                fn on_log(&self, rec: &LogRecord) -> LogVerdict { todo!() }
                fn on_request(&self, req: &RequestHead) -> RequestAction { todo!() }
            }",
        );
        let hooks = out.split("const HOOKS").nth(1).expect("HOOKS written");
        let hooks = hooks.split(';').next().unwrap_or_default().replace(' ', "");
        assert_eq!(
            hooks,
            ":::tailgate_plugin_sdk::HookSet=::tailgate_plugin_sdk::HookSet::empty()\
             .union(::tailgate_plugin_sdk::HookSet::LOG)\
             .union(::tailgate_plugin_sdk::HookSet::REQUEST)"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn an_impl_without_hooks_gets_the_empty_set() {
        let out = expanded("impl tailgate_plugin_sdk::Plugin for X { fn configure(c: &Config) -> Result<Self, String> { todo!() } }");
        assert!(
            out.replace(' ', "").contains(
                "HOOKS:::tailgate_plugin_sdk::HookSet=::tailgate_plugin_sdk::HookSet::empty();"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_hand_written_hooks_is_refused() {
        let out = expanded(
            "impl Plugin for X {
                const HOOKS: HookSet = HookSet::REQUEST;
                fn on_request(&self, req: &RequestHead) -> RequestAction { todo!() }
            }",
        );
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("derives `const HOOKS`"), "{out}");
    }

    #[test]
    fn other_items_and_arguments_are_refused() {
        for item in [
            "impl X { fn on_request(&self) {} }",
            "impl Other for X {}",
            "fn f() {}",
        ] {
            assert!(expanded(item).contains("compile_error"), "{item}");
        }
        let attr: TokenStream = "log".parse().expect("tokens");
        let item: TokenStream = "impl Plugin for X {}".parse().expect("tokens");
        assert!(expand(attr, item)
            .to_string()
            .contains("takes no arguments"));
    }
}
