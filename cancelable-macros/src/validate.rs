//! Validation: the parsed arguments and the function, checked together, into a
//! [`Config`] that expansion can use without further checks.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Expr, FnArg, Ident, LitStr, Pat, Path, ReturnType, Signature, Type};

use crate::parse::{Args, DurationArg, Errors, ItemFn};
use crate::value::Signal;

/// Everything expansion needs, checked.
pub(crate) struct Config {
    /// The path of the runtime crate: `::cancelable` or the `crate = "..."` override.
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) signals: Vec<(Signal, Span)>,
    pub(crate) token: Option<Ident>,
    /// The predicate and how often to check it (`None`: the default period).
    pub(crate) condition: Option<(Box<Expr>, Option<DurationArg>)>,
    /// The declared return type, a path whose last segment is `Result`.
    pub(crate) ret: Type,
    /// `register = true`: the span of the `register` key.
    pub(crate) register: Option<Span>,
}

/// What a `#[cancellable]` function must return, quoted in every return-type error.
const RETURN_RULE: &str =
    "a `#[cancellable]` function must return `Result<T, E>` where `E: From<cancelable::Cancelled>`";

/// Checks the arguments against each other and against the function. Returns `None`
/// if anything is wrong; every problem is then in `errors`.
pub(crate) fn build(args: Args, item: &ItemFn, errors: &mut Errors) -> Option<Config> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        // `#[tokio::main]` / `#[tokio::test]` above `#[cancellable]` expand first and
        // hand it a sync `fn main` or a `#[test] fn`.
        let made_sync = sig.ident == "main"
            || item.attrs.iter().any(|attr| {
                attr.path()
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == "test")
            });
        let message = if made_sync {
            "`#[cancellable]` can only be applied to an `async fn`; if `#[tokio::main]`, \
             `#[tokio::test]` or a similar attribute is above `#[cancellable]`, it has already \
             made the function sync: move `#[cancellable]` above it"
                .to_owned()
        } else {
            format!(
                "`#[cancellable]` can only be applied to an `async fn`; write `async fn {}`",
                sig.ident
            )
        };
        errors.push(syn::Error::new_spanned(sig.fn_token, message));
    }
    let ret = check_return(sig).map_err(|err| errors.push(err)).ok();

    if let (Some(span), false) = (args.key_span("check_every"), args.is_set("condition")) {
        errors.push(syn::Error::new(
            span,
            "`check_every` sets how often `condition` is checked, but there is no `condition`; \
             add `condition = ...` or remove `check_every`",
        ));
    }
    if let Some((token, _)) = &args.token {
        check_token(token, sig).map_err(|err| errors.push(err)).ok();
    }

    if !errors.is_empty() {
        return None;
    }
    let name = args.name.map_or_else(
        || LitStr::new(&sig.ident.unraw().to_string(), sig.ident.span()),
        |(name, _)| name,
    );
    Some(Config {
        krate: args
            .krate
            .map_or_else(|| syn::parse_quote!(::cancelable), |(path, _)| path),
        name,
        timeout: args.timeout.map(|(timeout, _)| timeout),
        signals: args.on_signal.map(|(s, _)| s).unwrap_or_default(),
        token: args.token.map(|(token, _)| token),
        condition: args
            .condition
            .map(|(cond, _)| (cond, args.check_every.map(|(every, _)| every))),
        ret: ret?,
        register: args
            .register
            .filter(|(register, _)| register.value)
            .map(|(_, span)| span),
    })
}

/// The return type must be a path ending in `Result` (`Result<T, E>`, `io::Result<T>`).
fn check_return(sig: &Signature) -> syn::Result<Type> {
    let ty = match &sig.output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.paren_token.span.close(),
                format!(
                    "`{}` returns `()`, which cannot carry the cancellation; {RETURN_RULE}: add \
                     `-> Result<(), cancelable::Cancelled>` or your own error type",
                    sig.ident
                ),
            ))
        }
    };
    let peeled = peel(ty);
    if let Type::Path(path) = peeled {
        let is_result = path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident.to_string().ends_with("Result"));
        if is_result {
            return Ok((**ty).clone());
        }
    }
    let written = type_string(peeled);
    let what = match peeled {
        Type::Tuple(tuple) if tuple.elems.is_empty() => "`()`".to_owned(),
        Type::Tuple(_) => format!("the tuple `{written}`"),
        Type::Reference(_) => format!("the reference `{written}`"),
        Type::ImplTrait(_) => format!("`{written}`"),
        Type::Never(_) => "`!`".to_owned(),
        _ => format!("`{written}`"),
    };
    let ok = match peeled {
        Type::Tuple(tuple) if tuple.elems.is_empty() => "()".to_owned(),
        Type::Never(_) => "core::convert::Infallible".to_owned(),
        _ => written,
    };
    Err(syn::Error::new_spanned(
        ty,
        format!(
            "{what} cannot carry the cancellation; {RETURN_RULE}, e.g. \
             `-> Result<{ok}, cancelable::Cancelled>`"
        ),
    ))
}

/// Strips parentheses and the invisible groups of `macro_rules!` around a type.
pub(crate) fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            other => return other,
        }
    }
}

/// A type as the user would write it, for messages.
fn type_string(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" :: ", "::"),
        (":: ", "::"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("' ", "'"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// `token = x` must name a parameter of the function (or `self`).
fn check_token(token: &Ident, sig: &Signature) -> syn::Result<()> {
    let params = param_names(sig);
    if params.iter().any(|param| param == token) {
        return Ok(());
    }
    let message = if params.is_empty() {
        format!(
            "`{token}` is not a parameter: `{}` has none; add a `CancellationToken` parameter \
             and name it here, e.g. `token = tok`",
            sig.ident
        )
    } else {
        format!(
            "`{token}` is not a parameter of `{}`; `token` must name the `CancellationToken` \
             parameter, one of {}",
            sig.ident,
            params
                .iter()
                .map(|param| format!("`{param}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(syn::Error::new(token.span(), message))
}

/// The names bound by the function's parameters, `self` included.
fn param_names(sig: &Signature) -> Vec<Ident> {
    let mut names = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                names.push(Ident::new("self", receiver.self_token.span));
            }
            FnArg::Typed(typed) => bound_names(&typed.pat, &mut names),
        }
    }
    names
}

fn bound_names(pat: &Pat, names: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(ident) => {
            names.push(ident.ident.clone());
            if let Some((_, sub)) = &ident.subpat {
                bound_names(sub, names);
            }
        }
        Pat::Tuple(tuple) => tuple.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::Struct(strukt) => strukt
            .fields
            .iter()
            .for_each(|field| bound_names(&field.pat, names)),
        Pat::Slice(slice) => slice.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::Reference(reference) => bound_names(&reference.pat, names),
        Pat::Paren(paren) => bound_names(&paren.pat, names),
        Pat::Type(typed) => bound_names(&typed.pat, names),
        Pat::Or(or) => or.cases.iter().for_each(|p| bound_names(p, names)),
        _ => {}
    }
}
