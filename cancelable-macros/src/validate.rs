//! Validation: the parsed arguments and the function, checked together, into a
//! [`Config`] that expansion can use without further checks.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    Expr, FnArg, GenericArgument, Ident, LitStr, Pat, Path, PathArguments, ReturnType, Signature,
    Type, TypeParamBound,
};

use crate::errors::Errors;
use crate::parse::{Args, DurationArg, ItemFn, TokenArg};
use crate::value::Signal;

/// Everything expansion needs, checked.
pub(crate) struct Config {
    /// The path of the runtime crate: `::cancelable` or the `crate = "..."` override.
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) signals: Vec<(Signal, Span)>,
    pub(crate) token: Option<TokenArg>,
    /// The predicate and how often to check it (`None`: the default period).
    pub(crate) condition: Option<(Box<Expr>, Option<DurationArg>)>,
    /// The declared return type, a path type (the compiler checks that it is a
    /// `Result` whose error type converts from `Cancelled`).
    pub(crate) ret: Type,
    /// `register = true`: the span of the `register` key.
    pub(crate) register: Option<Span>,
    /// The grace period (a zero literal is kept: the runtime reads zero as none).
    pub(crate) grace: Option<DurationArg>,
}

/// What a `#[cancellable]` function must return, quoted in every return-type error.
const RETURN_RULE: &str =
    "a `#[cancellable]` function must return `Result<T, E>` where `E: From<cancelable::Cancelled>`";

/// Checks the arguments against each other and against the function. Returns `None`
/// if anything is wrong; every problem is then in `errors`.
pub(crate) fn build(args: Args, item: &ItemFn, errors: &mut Errors) -> Option<Config> {
    let sig = &item.sig;
    // A sync fn that returns `impl Future` is an `async fn` written by hand: the
    // error on `fn` says how to rewrite it, and the return type is not judged as
    // if it were the function's result.
    let future_output = match sig.asyncness {
        None => impl_future(&sig.output),
        Some(_) => None,
    };
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
        } else if let Some(output) = future_output {
            let name = &sig.ident;
            let returns = match output {
                Some(output) => format!("async fn {name}(..) -> {}", type_string(output)),
                None => format!("async fn {name}(..) -> <the future's output>"),
            };
            format!(
                "`#[cancellable]` can only be applied to an `async fn`; `{name}` returns a \
                 future instead: make it `{returns}` and move the body of that future into the \
                 function"
            )
        } else {
            format!(
                "`#[cancellable]` can only be applied to an `async fn`; write `async fn {}`",
                sig.ident
            )
        };
        errors.push(syn::Error::new_spanned(sig.fn_token, message));
    }
    let ret = if future_output.is_some() {
        None
    } else {
        errors.ok(check_return(sig))
    };

    if let (Some(span), None) = (args.written("check_every"), args.written("condition")) {
        errors.push(syn::Error::new(
            span,
            "`check_every` sets how often `condition` is checked, but there is no `condition`; \
             add `condition = ...` or remove `check_every`",
        ));
    }
    if let Some((token, _)) = &args.token {
        errors.ok(check_token(token, sig));
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
        grace: args.grace.map(|(grace, _)| grace),
    })
}

/// The return type: any path type (`Result<T, E>`, `io::Result<T>`, an alias
/// such as `Fallible<T>`); whether it is a `Result` whose error type converts from
/// `Cancelled` is the compiler's check (`CancellableResult`), which sees through
/// aliases. Types that are obviously not a `Result` are rejected here, on the type,
/// with what to write instead when there is one that can be right.
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
    if may_be_result(peeled) {
        return Ok((**ty).clone());
    }
    let written = type_string(peeled);
    let message = match impl_future_bound(peeled) {
        // An `async fn` returns a future already: what it declares is the output.
        Some(output) => {
            let declare = match output.map(peel) {
                Some(output) if may_be_result(output) => Some(type_string(output)),
                Some(output) => suggestion(output),
                None => None,
            }
            .map(|declare| format!(", e.g. `-> {declare}`"))
            .unwrap_or_default();
            format!(
                "`{written}` is a future inside the future of this `async fn`, which already \
                 returns one: declare what it produces instead; {RETURN_RULE}{declare}"
            )
        }
        None => {
            let what = match peeled {
                Type::Tuple(tuple) if tuple.elems.is_empty() => "`()`".to_owned(),
                Type::Tuple(_) => format!("the tuple `{written}`"),
                Type::Reference(_) => format!("the reference `{written}`"),
                Type::Never(_) => "`!`".to_owned(),
                _ => format!("`{written}`"),
            };
            let example = suggestion(peeled)
                .map(|result| format!(", e.g. `-> {result}`"))
                .unwrap_or_default();
            format!("{what} cannot carry the cancellation; {RETURN_RULE}{example}")
        }
    };
    Err(syn::Error::new_spanned(ty, message))
}

/// Whether a (peeled) return type may be a `Result`: any path type except the
/// ones that obviously are not (`Option`, primitive types), and macro types,
/// which may expand to anything.
fn may_be_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            let last = path.path.segments.last().map(|last| last.ident.to_string());
            let primitive = path.qself.is_none()
                && path.path.leading_colon.is_none()
                && path.path.segments.len() == 1
                && last
                    .as_deref()
                    .is_some_and(|name| PRIMITIVES.contains(&name));
            !primitive && last.as_deref() != Some("Option")
        }
        Type::Macro(_) => true,
        _ => false,
    }
}

/// Primitive types that are a path to `syn`: obviously not a `Result`.
const PRIMITIVES: [&str; 17] = [
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
];

/// `Result<ty, cancelable::Cancelled>` when that is a return type that can be
/// right, i.e. when `ty` is a sized type that can be named in a return type.
fn suggestion(ty: &Type) -> Option<String> {
    let ok = match ty {
        Type::Tuple(tuple) if tuple.elems.is_empty() => "()".to_owned(),
        Type::Never(_) => "core::convert::Infallible".to_owned(),
        Type::Path(path) if path.path.is_ident("str") => return None,
        Type::Tuple(_)
        | Type::Reference(_)
        | Type::Path(_)
        | Type::Array(_)
        | Type::Ptr(_)
        | Type::BareFn(_)
        | Type::ImplTrait(_) => type_string(ty),
        _ => return None,
    };
    Some(format!("Result<{ok}, cancelable::Cancelled>"))
}

/// For a return type `impl Future<Output = T> + ..`: `Some(Some(T))`, or
/// `Some(None)` if the output is not written.
fn impl_future(output: &ReturnType) -> Option<Option<&Type>> {
    match output {
        ReturnType::Type(_, ty) => impl_future_bound(peel(ty)),
        ReturnType::Default => None,
    }
}

/// [`impl_future`] on a (peeled) type.
fn impl_future_bound(ty: &Type) -> Option<Option<&Type>> {
    let Type::ImplTrait(impl_trait) = ty else {
        return None;
    };
    impl_trait.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let output = match &last.arguments {
            PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
                _ => None,
            }),
            _ => None,
        };
        Some(output)
    })
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

/// `token = x` (or `token = x.field`) must start at a parameter of the function
/// (or `self`).
fn check_token(token: &TokenArg, sig: &Signature) -> syn::Result<()> {
    let base = &token.base;
    let params = param_names(sig);
    if params.iter().any(|param| param == base) {
        return Ok(());
    }
    let is_field = !matches!(&token.expr, Expr::Path(_));
    let message = if params.is_empty() {
        format!(
            "`{base}` is not a parameter: `{}` has none; add a `CancellationToken` parameter \
             and name it here, e.g. `token = tok`",
            sig.ident
        )
    } else {
        let list = params
            .iter()
            .map(|param| format!("`{param}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if is_field {
            format!(
                "`{base}` is not a parameter of `{}`; a field path in `token` must start at a \
                 parameter, one of {list}",
                sig.ident
            )
        } else {
            format!(
                "`{base}` is not a parameter of `{}`; `token` must name the \
                 `CancellationToken` parameter, one of {list}",
                sig.ident
            )
        }
    };
    Err(syn::Error::new(base.span(), message))
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
