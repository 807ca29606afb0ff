//! Parsing: the attribute arguments into [`Args`], the annotated item into [`ItemFn`].
//!
//! Each argument is parsed and checked on its own here and stored with the span of
//! its key; checks that involve several arguments or the function live in
//! `validate.rs`. Nothing here panics, whatever the tokens.

use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{
    Attribute, Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Signature, Token, Visibility,
};

use crate::value::{self, edit_distance, Signal};

/// Every argument the attribute accepts, in the order the docs list them.
pub(crate) const KEYS: [&str; 8] = [
    "timeout",
    "on_signal",
    "token",
    "condition",
    "check_every",
    "name",
    "register",
    "crate",
];

/// Collects the errors of one expansion, so that all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A duration argument: a literal checked at compile time, or a `Duration` expression.
#[derive(Clone)]
pub(crate) enum DurationArg {
    Literal(Duration, Span),
    Expr(Box<Expr>),
}

/// The attribute arguments, each with the span of its key.
///
/// A field is `None` when the argument is absent or its value was rejected (the
/// error is then in [`Errors`]).
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) timeout: Option<(DurationArg, Span)>,
    pub(crate) on_signal: Option<(Vec<(Signal, Span)>, Span)>,
    pub(crate) token: Option<(Ident, Span)>,
    pub(crate) condition: Option<(Box<Expr>, Span)>,
    pub(crate) check_every: Option<(DurationArg, Span)>,
    pub(crate) name: Option<(LitStr, Span)>,
    pub(crate) register: Option<(LitBool, Span)>,
    pub(crate) krate: Option<(Path, Span)>,
    /// Valid keys seen so far, with the span of each, whether its value was
    /// accepted or not: duplicates and cross-argument checks use them.
    seen: Vec<(String, Span)>,
}

/// Parses the attribute arguments; `Err` holds every problem found, combined.
#[cfg(test)]
pub(crate) fn parse_args(tokens: TokenStream) -> syn::Result<Args> {
    let mut errors = Errors::default();
    let args = Args::parse(tokens, &mut errors);
    errors.finish().map(|()| args)
}

impl Args {
    /// Parses `key = value, ...`, recording problems in `errors` and going on with
    /// the next argument after each one.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let parser = |input: ParseStream<'_>| {
            args.parse_list(input, errors);
            Ok(())
        };
        // `parse_list` consumes every token and reports its own errors.
        if let Err(err) = parser.parse2(tokens) {
            errors.push(err);
        }
        args
    }

    fn parse_list(&mut self, input: ParseStream<'_>, errors: &mut Errors) {
        while !input.is_empty() {
            let fork = input.fork();
            match parse_entry(&fork) {
                Ok((key, value)) => {
                    input.advance_to(&fork);
                    self.set(key, value, errors);
                }
                Err(err) => {
                    errors.push(err);
                    skip_to_comma(input);
                }
            }
            if input.is_empty() {
                break;
            }
            if input.peek(Token![,]) {
                let _ = input.parse::<Token![,]>();
            } else {
                errors.push(input.error("expected `,` between arguments"));
                skip_to_comma(input);
                let _ = input.parse::<Token![,]>();
            }
        }
    }

    /// The span of `key` if the argument was written (even with an invalid value).
    pub(crate) fn key_span(&self, key: &str) -> Option<Span> {
        self.seen
            .iter()
            .find(|(seen, _)| seen == key)
            .map(|(_, span)| *span)
    }

    /// Whether the argument was written (even with an invalid value).
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.key_span(key).is_some()
    }

    fn set(&mut self, key: Ident, value: Expr, errors: &mut Errors) {
        let name = key.unraw().to_string();
        let span = key.span();
        if !KEYS.contains(&name.as_str()) {
            errors.push(syn::Error::new(span, unknown_key_message(&name)));
            return;
        }
        if self.is_set(&name) {
            errors.push(syn::Error::new(
                span,
                format!("`{name}` is set more than once; keep one `{name} = ...`"),
            ));
            return;
        }
        self.seen.push((name.clone(), span));
        let parsed = match name.as_str() {
            "timeout" => duration_arg(value, "timeout").map(|v| self.timeout = Some((v, span))),
            "check_every" => {
                duration_arg(value, "check_every").map(|v| self.check_every = Some((v, span)))
            }
            "on_signal" => signals(value).map(|v| self.on_signal = Some((v, span))),
            "token" => token(value).map(|v| self.token = Some((v, span))),
            "condition" => condition(value).map(|v| self.condition = Some((v, span))),
            "name" => op_name(value).map(|v| self.name = Some((v, span))),
            "register" => register(value).map(|v| self.register = Some((v, span))),
            _ => krate(value).map(|v| self.krate = Some((v, span))),
        };
        if let Err(err) = parsed {
            errors.push(err);
        }
    }
}

/// Parses one `key = value`.
fn parse_entry(input: ParseStream<'_>) -> syn::Result<(Ident, Expr)> {
    let key = match input.call(Ident::parse_any) {
        Ok(key) => key,
        Err(_) => {
            return Err(input.error(format!(
                "expected an argument like `timeout = \"5s\"`; the arguments are {}",
                key_list()
            )))
        }
    };
    if !input.peek(Token![=]) {
        let name = key.unraw().to_string();
        let message = match example(&name) {
            Some(example) => format!("expected `{name} = ...`, e.g. `{example}`"),
            None => unknown_key_message(&name),
        };
        return Err(syn::Error::new(key.span(), message));
    }
    input.parse::<Token![=]>()?;
    if input.is_empty() || input.peek(Token![,]) {
        return Err(syn::Error::new(
            key.span(),
            format!("`{}` has no value", key.unraw()),
        ));
    }
    let value = input.parse::<Expr>()?;
    Ok((key, value))
}

/// Skips token trees up to (not including) the next top-level comma.
fn skip_to_comma(input: ParseStream<'_>) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

fn key_list() -> String {
    KEYS.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn example(key: &str) -> Option<&'static str> {
    Some(match key {
        "timeout" => "timeout = \"5s\"",
        "on_signal" => "on_signal = \"SIGINT\"",
        "token" => "token = tok",
        "condition" => "condition = stop_requested",
        "check_every" => "check_every = \"100ms\"",
        "name" => "name = \"job\"",
        "register" => "register = true",
        "crate" => "crate = \"cancelable\"",
        _ => return None,
    })
}

fn unknown_key_message(key: &str) -> String {
    let hint = KEYS
        .iter()
        .find(|valid| is_close(key, valid))
        .map(|valid| format!("did you mean `{valid}`? "));
    match hint {
        Some(hint) => format!(
            "unknown argument `{key}`; {hint}(the arguments of `#[cancellable]` are {})",
            key_list()
        ),
        None => format!(
            "unknown argument `{key}`; the arguments of `#[cancellable]` are {}",
            key_list()
        ),
    }
}

/// Whether an unknown key is probably a misspelling of `valid`.
fn is_close(key: &str, valid: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    let aliases: &[&str] = match valid {
        "on_signal" => &["signal", "signals", "on_signals", "onsignal"],
        "timeout" => &["time_out", "deadline", "timeout_after"],
        "check_every" => &["check_interval", "interval", "every", "poll_every"],
        "token" => &["cancel_token", "cancellation_token"],
        "condition" => &["cond", "when", "until"],
        _ => &[],
    };
    aliases.contains(&key.as_str()) || edit_distance(&key, valid) <= 2
}

/// Strips the invisible groups that `macro_rules!` puts around `$e:expr`.
fn unwrap_expr(mut expr: Expr) -> Expr {
    loop {
        match expr {
            Expr::Group(group) => expr = *group.expr,
            other => return other,
        }
    }
}

/// `timeout`, `check_every`: a duration string, or a `Duration` expression.
fn duration_arg(value: Expr, key: &str) -> syn::Result<DurationArg> {
    match unwrap_expr(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => value::parse_duration(&lit.value(), key)
            .map(|duration| DurationArg::Literal(duration, lit.span()))
            .map_err(|message| syn::Error::new(lit.span(), message)),
        Expr::Lit(ExprLit {
            lit: lit @ (Lit::Int(_) | Lit::Float(_)),
            ..
        }) => {
            let digits = match &lit {
                Lit::Int(int) => int.base10_digits().to_owned(),
                Lit::Float(float) => float.base10_digits().to_owned(),
                _ => String::new(),
            };
            Err(syn::Error::new(
                lit.span(),
                format!(
                    "a bare number has no unit; write a duration string like \"{digits}s\" or \
                     \"{digits}ms\", or a `Duration` expression"
                ),
            ))
        }
        Expr::Lit(ExprLit { lit, .. }) => Err(syn::Error::new(
            lit.span(),
            format!(
                "expected a duration string like \"5s\" or a `Duration` expression, e.g. \
                 `{key} = \"5s\"` or `{key} = Duration::from_secs(5)`"
            ),
        )),
        expr @ (Expr::Array(_) | Expr::Tuple(_) | Expr::Range(_) | Expr::Closure(_)) => {
            Err(syn::Error::new_spanned(
                expr,
                format!(
                    "expected a duration string like \"5s\" or a `Duration` expression, e.g. \
                     `{key} = \"5s\"` or `{key} = self.limit`"
                ),
            ))
        }
        expr => Ok(DurationArg::Expr(Box::new(expr))),
    }
}

/// `on_signal = "SIGINT"` or `on_signal = ["SIGINT", "SIGTERM"]`.
fn signals(value: Expr) -> syn::Result<Vec<(Signal, Span)>> {
    let elems: Vec<Expr> = match unwrap_expr(value) {
        Expr::Array(array) => {
            if array.elems.is_empty() {
                return Err(syn::Error::new_spanned(
                    array,
                    "`on_signal` lists no signal; name at least one, e.g. \
                     `on_signal = [\"SIGINT\", \"SIGTERM\"]`, or remove `on_signal`",
                ));
            }
            array.elems.into_iter().collect()
        }
        single => vec![single],
    };
    let mut errors = Errors::default();
    let mut signals: Vec<(Signal, Span)> = Vec::new();
    for elem in elems {
        let lit = match unwrap_expr(elem) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => lit,
            other => {
                errors.push(syn::Error::new_spanned(
                    other,
                    "expected a signal name as a string, e.g. `on_signal = \"SIGINT\"` or \
                     `on_signal = [\"SIGINT\", \"SIGTERM\"]`",
                ));
                continue;
            }
        };
        match value::parse_signal(&lit.value()) {
            Ok(signal) if signals.iter().any(|(seen, _)| *seen == signal) => {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!(
                        "`{}` is listed more than once in `on_signal`; remove the duplicate",
                        signal.name()
                    ),
                ));
            }
            Ok(signal) => signals.push((signal, lit.span())),
            Err(message) => errors.push(syn::Error::new(lit.span(), message)),
        }
    }
    errors.finish().map(|()| signals)
}

/// `token = param`: the name of a parameter (checked against the function later).
fn token(value: Expr) -> syn::Result<Ident> {
    match unwrap_expr(value) {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
            match path.path.get_ident() {
                Some(ident) => Ok(ident.clone()),
                None => Err(syn::Error::new_spanned(
                    path,
                    "`token` takes the name of a parameter of this function, e.g. `token = tok`",
                )),
            }
        }
        other => Err(syn::Error::new_spanned(
            other,
            "`token` takes the name of a parameter of this function, e.g. `token = tok`",
        )),
    }
}

/// `condition = path_or_closure`.
fn condition(value: Expr) -> syn::Result<Box<Expr>> {
    match unwrap_expr(value) {
        expr @ (Expr::Lit(_)
        | Expr::Array(_)
        | Expr::Tuple(_)
        | Expr::Range(_)
        | Expr::Assign(_)) => Err(syn::Error::new_spanned(
            expr,
            "`condition` takes a function or closure returning `bool` (or a future of `bool`), \
             e.g. `condition = stop_requested` or `condition = || STOP.load(Ordering::Relaxed)`",
        )),
        expr => Ok(Box::new(expr)),
    }
}

/// `name = "..."`: a non-empty string literal.
fn op_name(value: Expr) -> syn::Result<LitStr> {
    match unwrap_expr(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value().trim().is_empty() => Err(syn::Error::new(
            lit.span(),
            "`name` is empty; write a name like `name = \"job\"`, or remove `name` to use the \
             function's name",
        )),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            "`name` takes a string literal, e.g. `name = \"job\"`",
        )),
    }
}

/// `register = true`: a boolean literal.
fn register(value: Expr) -> syn::Result<LitBool> {
    match unwrap_expr(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            "`register` takes `true` or `false`, e.g. `register = true` (the scope then joins \
             `cancelable::registry::global()` while it runs)",
        )),
    }
}

/// `crate = "path"`: a string literal holding the path of the `cancelable` crate.
fn krate(value: Expr) -> syn::Result<Path> {
    match unwrap_expr(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.parse_with(Path::parse_mod_style) {
            Ok(path) => Ok(path),
            Err(_) => Err(syn::Error::new(
                lit.span(),
                format!(
                    "{:?} is not a path; write the path of the `cancelable` crate, e.g. \
                     `crate = \"my_cancelable\"` or `crate = \"::deps::cancelable\"`",
                    lit.value()
                ),
            )),
        },
        Expr::Path(path) => Err(syn::Error::new_spanned(
            &path,
            format!(
                "`crate` takes the path as a string literal: `crate = \"{}\"`",
                path.path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect::<Vec<_>>()
                    .join("::")
            ),
        )),
        other => Err(syn::Error::new_spanned(
            other,
            "`crate` takes a string literal holding a path, e.g. `crate = \"my_cancelable\"`",
        )),
    }
}

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
    use quote::ToTokens;
    use syn::Item;

    let parsed = match syn::parse2::<Item>(item.clone()) {
        Ok(parsed) => parsed,
        Err(_) => {
            return syn::Error::new(
                first_span(item),
                "`#[cancellable]` can only be applied to an `async fn`",
            )
        }
    };
    let mut tokens = TokenStream::new();
    let what = match &parsed {
        Item::Struct(i) => {
            i.struct_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a struct"
        }
        Item::Enum(i) => {
            i.enum_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "an enum"
        }
        Item::Union(i) => {
            i.union_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a union"
        }
        Item::Const(i) => {
            i.const_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a constant"
        }
        Item::Static(i) => {
            i.static_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a static"
        }
        Item::Trait(i) => {
            i.trait_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a trait; put it on an `async fn` with a body"
        }
        Item::Impl(i) => {
            i.impl_token.to_tokens(&mut tokens);
            i.self_ty.to_tokens(&mut tokens);
            "an `impl` block; put it on each `async fn` inside"
        }
        Item::Mod(i) => {
            i.mod_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a module"
        }
        Item::Type(i) => {
            i.type_token.to_tokens(&mut tokens);
            i.ident.to_tokens(&mut tokens);
            "a type alias"
        }
        Item::Use(i) => {
            i.use_token.to_tokens(&mut tokens);
            "a `use` item"
        }
        Item::Verbatim(verbatim) if is_bodyless_fn(verbatim) => {
            return syn::Error::new_spanned(
                verbatim,
                "`#[cancellable]` needs the function's body: in a trait, put it on the \
                 `async fn` of the `impl` block, not on the declaration",
            )
        }
        other => {
            other.to_tokens(&mut tokens);
            "this item"
        }
    };
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
