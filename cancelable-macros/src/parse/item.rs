//! Parsing the annotated item into [`ItemFn`]: the head parsed, the body
//! kept as tokens; and the diagnostic for an item that is not a function.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Item, Signature, Visibility};

/// The annotated function: its head parsed, its body kept as tokens.
///
/// The body is not parsed (it is the compiler's job, and it keeps syntax newer than
/// `syn` working); its inner attributes are split off to stay on the function.
pub(crate) struct ItemFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) brace_span: Span,
    pub(crate) body: TokenStream,
}

impl Parse for ItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig: Signature = input.parse()?;
        let content;
        let brace = syn::braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body = content.parse()?;
        Ok(ItemFn {
            attrs,
            vis,
            sig,
            inner_attrs,
            brace_span: brace.span.join(),
            body,
        })
    }
}

/// The error for an item that is not a function with a body, on its keyword and name.
pub(crate) fn not_a_function(item: TokenStream) -> syn::Error {
    let Ok(parsed) = syn::parse2::<Item>(item.clone()) else {
        return syn::Error::new(
            first_span(item),
            "`#[cancellable]` can only be applied to an `async fn`",
        );
    };
    // What the item is, then the tokens underlined: its keyword and its name.
    let (what, keyword, name): (&str, &dyn ToTokens, Option<&dyn ToTokens>) = match &parsed {
        Item::Struct(i) => ("a struct", &i.struct_token, Some(&i.ident)),
        Item::Enum(i) => ("an enum", &i.enum_token, Some(&i.ident)),
        Item::Union(i) => ("a union", &i.union_token, Some(&i.ident)),
        Item::Const(i) => ("a constant", &i.const_token, Some(&i.ident)),
        Item::Static(i) => ("a static", &i.static_token, Some(&i.ident)),
        Item::Trait(i) => (
            "a trait; put it on an `async fn` with a body",
            &i.trait_token,
            Some(&i.ident),
        ),
        Item::TraitAlias(i) => ("a trait alias", &i.trait_token, Some(&i.ident)),
        Item::Impl(i) => (
            "an `impl` block; put it on each `async fn` inside",
            &i.impl_token,
            Some(&*i.self_ty),
        ),
        Item::Mod(i) => ("a module", &i.mod_token, Some(&i.ident)),
        Item::Type(i) => ("a type alias", &i.type_token, Some(&i.ident)),
        Item::Use(i) => ("a `use` item", &i.use_token, None),
        Item::ExternCrate(i) => ("an `extern crate` item", &i.crate_token, Some(&i.ident)),
        Item::ForeignMod(i) => (
            "an `extern` block; put it on an `async fn` with a body",
            &i.abi,
            None,
        ),
        Item::Macro(i) => (
            "a macro",
            &i.mac.path,
            i.ident.as_ref().map(|ident| ident as &dyn ToTokens),
        ),
        Item::Verbatim(verbatim) if is_bodyless_fn(verbatim) => {
            return syn::Error::new_spanned(
                verbatim,
                "`#[cancellable]` needs the function's body: in a trait, put it on the \
                 `async fn` of the `impl` block, not on the declaration",
            )
        }
        other => ("this item", other, None),
    };
    let mut tokens = keyword.to_token_stream();
    if let Some(name) = name {
        name.to_tokens(&mut tokens);
    }
    syn::Error::new_spanned(
        tokens,
        format!("`#[cancellable]` can only be applied to an `async fn`, not to {what}"),
    )
}

/// Whether a verbatim item is a function declaration without a body (`fn f();`).
fn is_bodyless_fn(tokens: &TokenStream) -> bool {
    tokens
        .clone()
        .into_iter()
        .any(|tt| matches!(&tt, TokenTree::Ident(ident) if ident == "fn"))
}

fn first_span(item: TokenStream) -> Span {
    item.into_iter()
        .next()
        .map_or_else(Span::call_site, |tt| tt.span())
}
