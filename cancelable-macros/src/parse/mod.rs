//! Parsing: the attribute arguments into [`Args`], the annotated item into [`ItemFn`].
//!
//! Each argument is parsed and checked on its own here and stored with the span of
//! its key; checks that involve several arguments or the function live in
//! `validate.rs`. Nothing here panics, whatever the tokens.

use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Token};

use crate::errors::Errors;
use crate::value::{self, edit_distance, Signal};

mod item;

pub(crate) use item::{not_a_function, ItemFn};

/// One argument of `#[cancellable]`: a row of [`KEYS`].
pub(crate) struct Key {
    /// The key as written, e.g. `timeout`.
    pub(crate) name: &'static str,
    /// A whole valid argument, shown when the value is missing.
    pub(crate) example: &'static str,
    /// Other names users reach for, answered with "did you mean" (as are
    /// misspellings of `name`).
    pub(crate) aliases: &'static [&'static str],
    /// Parses the value and stores it, with the span of the key, in [`Args`].
    set: fn(&mut Args, Expr, Span) -> syn::Result<()>,
}

/// Every argument `#[cancellable]` accepts, in the order the docs and the messages
/// list them. Adding an argument is adding a row here and a field to [`Args`].
pub(crate) const KEYS: [Key; 9] = [
    Key {
        name: "timeout",
        example: "timeout = \"5s\"",
        aliases: &["time_out", "deadline", "timeout_after"],
        set: |args, value, span| {
            duration_arg(value, "timeout").map(|v| args.timeout = Some((v, span)))
        },
    },
    Key {
        name: "on_signal",
        example: "on_signal = \"SIGINT\"",
        aliases: &["signal", "signals", "on_signals", "onsignal"],
        set: |args, value, span| signals(value).map(|v| args.on_signal = Some((v, span))),
    },
    Key {
        name: "token",
        example: "token = tok",
        aliases: &["cancel_token", "cancellation_token"],
        set: |args, value, span| token(value).map(|v| args.token = Some((v, span))),
    },
    Key {
        name: "condition",
        example: "condition = stop_requested",
        aliases: &["cond", "when", "until"],
        set: |args, value, span| condition(value).map(|v| args.condition = Some((v, span))),
    },
    Key {
        name: "check_every",
        example: "check_every = \"100ms\"",
        aliases: &["check_interval", "interval", "every", "poll_every"],
        set: |args, value, span| {
            duration_arg(value, "check_every").map(|v| args.check_every = Some((v, span)))
        },
    },
    Key {
        name: "name",
        example: "name = \"job\"",
        aliases: &[],
        set: |args, value, span| op_name(value).map(|v| args.name = Some((v, span))),
    },
    Key {
        name: "register",
        example: "register = true",
        aliases: &["registered", "registry"],
        set: |args, value, span| register(value).map(|v| args.register = Some((v, span))),
    },
    Key {
        name: "grace",
        example: "grace = \"2s\"",
        aliases: &["grace_period", "cleanup", "drain"],
        set: |args, value, span| duration_arg(value, "grace").map(|v| args.grace = Some((v, span))),
    },
    Key {
        name: "crate",
        example: "crate = \"cancelable\"",
        aliases: &[],
        set: |args, value, span| krate(value).map(|v| args.krate = Some((v, span))),
    },
];

impl Key {
    /// The row of `name`, if it is an argument.
    fn named(name: &str) -> Option<&'static Key> {
        KEYS.iter().find(|key| key.name == name)
    }

    /// Whether an unknown key is probably a misspelling of this one.
    fn is_close_to(&self, unknown: &str) -> bool {
        let unknown = unknown.to_ascii_lowercase().replace('-', "_");
        self.aliases.contains(&unknown.as_str()) || edit_distance(&unknown, self.name) <= 2
    }
}

/// A duration argument: a literal checked at compile time, or a `Duration` expression.
#[derive(Clone)]
pub(crate) enum DurationArg {
    Literal(Duration, Span),
    Expr(Box<Expr>),
}

/// `token = ...`: a parameter (`tok`, `self`) or a field path from one
/// (`self.stop`, `job.token`, `self.inner.0`).
#[derive(Clone)]
pub(crate) struct TokenArg {
    /// The parameter the path starts at, checked against the function later.
    pub(crate) base: Ident,
    /// The whole path, as written.
    pub(crate) expr: Expr,
}

/// The attribute arguments, each with the span of its key.
///
/// A field is `None` when the argument is absent or its value was rejected (the
/// error is then in [`Errors`]).
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) timeout: Option<(DurationArg, Span)>,
    pub(crate) on_signal: Option<(Vec<(Signal, Span)>, Span)>,
    pub(crate) token: Option<(TokenArg, Span)>,
    pub(crate) condition: Option<(Box<Expr>, Span)>,
    pub(crate) check_every: Option<(DurationArg, Span)>,
    pub(crate) name: Option<(LitStr, Span)>,
    pub(crate) register: Option<(LitBool, Span)>,
    pub(crate) grace: Option<(DurationArg, Span)>,
    pub(crate) krate: Option<(Path, Span)>,
    /// The keys written so far, with the span of each, whether its value was
    /// accepted or not: duplicates and cross-argument checks use them.
    seen: Vec<(&'static Key, Span)>,
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
                    self.set(&key, value, errors);
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

    /// The span of the key `name` if the argument was written (even with an
    /// invalid value).
    pub(crate) fn written(&self, name: &str) -> Option<Span> {
        debug_assert!(Key::named(name).is_some(), "`{name}` is not a key");
        self.seen
            .iter()
            .find(|(seen, _)| seen.name == name)
            .map(|(_, span)| *span)
    }

    fn set(&mut self, key: &Ident, value: Expr, errors: &mut Errors) {
        let span = key.span();
        let name = key.unraw().to_string();
        let Some(key) = Key::named(&name) else {
            errors.push(syn::Error::new(span, unknown_key_message(&name)));
            return;
        };
        if self.written(&name).is_some() {
            errors.push(syn::Error::new(
                span,
                format!("`{name}` is set more than once; keep one `{name} = ...`"),
            ));
            return;
        }
        self.seen.push((key, span));
        errors.ok((key.set)(self, value, span));
    }
}

/// Parses one `key = value`; the key is looked up afterwards, so that an unknown
/// key's value is skipped as a whole expression.
fn parse_entry(input: ParseStream<'_>) -> syn::Result<(Ident, Expr)> {
    let Ok(key) = input.call(Ident::parse_any) else {
        return Err(input.error(format!(
            "expected an argument like `timeout = \"5s\"`; the arguments are {}",
            key_list()
        )));
    };
    let name = key.unraw().to_string();
    if !input.peek(Token![=]) {
        let message = match Key::named(&name) {
            Some(known) => format!("expected `{name} = ...`, e.g. `{}`", known.example),
            None => unknown_key_message(&name),
        };
        return Err(syn::Error::new(key.span(), message));
    }
    input.parse::<Token![=]>()?;
    if input.is_empty() || input.peek(Token![,]) {
        return Err(syn::Error::new(
            key.span(),
            format!("`{name}` has no value"),
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
        .map(|key| format!("`{}`", key.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_key_message(name: &str) -> String {
    match KEYS.iter().find(|key| key.is_close_to(name)) {
        Some(key) => format!(
            "unknown argument `{name}`; did you mean `{}`? (the arguments of `#[cancellable]` \
             are {})",
            key.name,
            key_list()
        ),
        None => format!(
            "unknown argument `{name}`; the arguments of `#[cancellable]` are {}",
            key_list()
        ),
    }
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

/// `timeout`, `check_every`, `grace`: a duration string, or a `Duration`
/// expression.
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
        Expr::Unary(negative)
            if matches!(negative.op, syn::UnOp::Neg(_))
                && matches!(unwrap_expr((*negative.expr).clone()), Expr::Lit(_)) =>
        {
            Err(syn::Error::new_spanned(
                negative,
                format!(
                    "`{key}` cannot be negative; write a duration string like \"5s\" or \
                     \"250ms\", or a `Duration` expression"
                ),
            ))
        }
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

/// `token = param` or `token = param.field...`: a parameter, or a field path
/// starting at one (the parameter is checked against the function later).
fn token(value: Expr) -> syn::Result<TokenArg> {
    let expr = unwrap_expr(value);
    match token_base(&expr) {
        Some(base) => Ok(TokenArg { base, expr }),
        None => Err(syn::Error::new_spanned(
            expr,
            "`token` takes a parameter of this function or a field of one, e.g. `token = tok`, \
             `token = self.token` or `token = job.token`",
        )),
    }
}

/// The parameter a `token` path starts at, if the expression is such a path.
fn token_base(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Group(group) => token_base(&group.expr),
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
            path.path.get_ident().cloned()
        }
        Expr::Field(field) if field.attrs.is_empty() => token_base(&field.base),
        _ => None,
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
