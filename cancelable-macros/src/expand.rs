//! Code generation: the annotated function with its body wrapped in a scope.

use std::time::Duration;

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::visit_mut::{self, VisitMut};
use syn::{ReturnType, Token, Type, TypeInfer};

use crate::errors::Errors;
use crate::parse::{self, Args, DurationArg, ItemFn};
use crate::validate::{self, Config};

/// How often `condition` is checked when `check_every` is absent.
const DEFAULT_CHECK_EVERY: Duration = Duration::from_millis(100);

/// The whole macro: arguments and item in, function (or errors and the untouched
/// item) out.
pub(crate) fn cancellable(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.push(parse::not_a_function(item.clone()));
            return fallback(errors, item);
        }
    };
    match validate::build(args, &function, &mut errors) {
        Some(config) if errors.is_empty() => expand(&config, function),
        _ => fallback(errors, item),
    }
}

/// The errors, next to the user's item unchanged, so that the rest of the crate
/// still type-checks against the function as written.
fn fallback(errors: Errors, item: TokenStream) -> TokenStream {
    let mut tokens = errors.into_compile_errors();
    tokens.extend(item);
    tokens
}

/// Generates the function: same attributes and signature, body run in a scope.
pub(crate) fn expand(config: &Config, function: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        brace_span,
        body,
    } = function;
    let scope = Ident::new("__cancelable_scope", Span::mixed_site());
    let future = Ident::new("__cancelable_body", Span::mixed_site());
    let ret = Ident::new("__cancelable_ret", Span::mixed_site());
    let private = |span: Span| {
        let krate = respan(config.krate.to_token_stream(), span);
        quote_spanned!(span=> #krate::__private)
    };
    let call_site = Span::call_site();
    let private_here = private(call_site);

    let name = &config.name;
    let timeout = config.timeout.as_ref().map(|timeout| {
        let value = duration(timeout);
        quote!(.timeout(#value))
    });
    let grace = config.grace.as_ref().map(|grace| {
        let value = duration(grace);
        quote!(.grace(#value))
    });
    let signals = config.signals.iter().map(|(signal, span)| {
        let variant = Ident::new(signal.variant(), *span);
        let private = private(Span::mixed_site().located_at(*span));
        quote_spanned!(*span=> .on_signal(#private::Signal::#variant))
    });
    let token = config.token.as_ref().map(|token| {
        // The call at the attribute, the reference at the user's path: a
        // token of the wrong type is underlined on the whole path.
        let span = Span::mixed_site();
        let private = private(span);
        let path = &token.expr;
        // The reference is spanned at the user's own tokens (not the
        // macro's hygiene), so that a token of the wrong type is reported
        // on the whole path, `self.count`, not on its first segment.
        let reference = quote_spanned!(token.base.span()=> &);
        quote_spanned!(span=> let #scope = #private::link_token(#scope, #reference #path);)
    });
    // `register = true`: spanned at the key, where a missing `registry`
    // feature is reported.
    let register = config.register.map(|span| {
        let span = Span::mixed_site().located_at(span);
        let private = private(span);
        quote_spanned!(span=> let #scope = #private::register_scope::<#private::RegistryFeature>(#scope);)
    });
    let condition = config.condition.as_ref().map(|(predicate, every)| {
        let every = match every {
            Some(every) => duration(every),
            None => duration(&DurationArg::Literal(
                DEFAULT_CHECK_EVERY,
                Span::call_site(),
            )),
        };
        quote!(let #scope = #scope.condition(#predicate, #every);)
    });

    // Tokens spanned at the first and the last token of the declared return type:
    // an expression that starts with one and ends with the other underlines the
    // whole type. Compiler errors about the function's result land there.
    let (first, last) = match &sig.output {
        ReturnType::Type(_, ty) => first_last_spans(ty.to_token_stream()),
        ReturnType::Default => (call_site, call_site),
    };
    let (first, last) = (
        Span::mixed_site().located_at(first),
        Span::mixed_site().located_at(last),
    );

    // The declared return type (`impl Trait` erased to `_`) gives the body's type
    // to the compiler before it checks the body, so type errors in the body point
    // at the user's lines, with "return type inferred here" on the return type.
    let anchor = erase_impl_trait(config.ret.clone());
    let ret_here = Ident::new("__cancelable_ret", first);
    let fake_return = quote_spanned! {first=>
        if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#anchor> {
            return #ret_here;
        }
    };

    // `run(scope, identity(body)).await`: the argument spans the whole return type,
    // so an unsatisfied `CancellableResult` bound (e.g. `io::Result`, or an alias of
    // `Option`) underlines it; `run` itself is spanned at the attribute, where the
    // compiler's "required by a bound introduced by this call" belongs.
    let private_run = quote_spanned!(call_site=> #private_here::run);
    let scope_arg = Ident::new("__cancelable_scope", first);
    let mut body_arg = Group::new(
        Delimiter::Parenthesis,
        Ident::new("__cancelable_body", first).into_token_stream(),
    );
    body_arg.set_span(last);
    let run = quote_spanned! {first=>
        #private_run(#scope_arg, ::core::convert::identity #body_arg).await
    };

    let mut body_group = Group::new(Delimiter::Brace, body);
    body_group.set_span(brace_span);

    let block = quote! {
        {
            #(#inner_attrs)*
            let #scope = #private_here::CancelScope::new()
                .name(#name)
                #timeout
                #grace
                #(#signals)*;
            #token
            #condition
            #register
            let #future = async move {
                #fake_return
                #body_group
            };
            #run
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig #block
    }
}

/// A duration argument as an expression of type `::core::time::Duration`.
fn duration(arg: &DurationArg) -> TokenStream {
    match arg {
        DurationArg::Literal(duration, span) => {
            let secs = duration.as_secs();
            let nanos = duration.subsec_nanos();
            let span = Span::mixed_site().located_at(*span);
            quote_spanned!(span=> ::core::time::Duration::new(#secs, #nanos))
        }
        DurationArg::Expr(expr) => expr.to_token_stream(),
    }
}

/// Replaces every `impl Trait` in a type by `_`, which is allowed in a turbofish:
/// `Result<impl Iterator<Item = impl Display>, E>` becomes `Result<_, E>`, and an
/// `impl Trait` nested anywhere else (a tuple, a reference, a `dyn` or `fn` type, an
/// associated-type binding) becomes `_` where it stands.
fn erase_impl_trait(mut ty: Type) -> Type {
    struct ImplTraitEraser;

    impl VisitMut for ImplTraitEraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                let underscore_token = Token![_](impl_trait.impl_token.span);
                *ty = Type::Infer(TypeInfer { underscore_token });
            } else {
                visit_mut::visit_type_mut(self, ty);
            }
        }
    }

    ImplTraitEraser.visit_type_mut(&mut ty);
    ty
}

/// The spans of the first and the last token of a stream.
fn first_last_spans(tokens: TokenStream) -> (Span, Span) {
    let mut spans = tokens.into_iter().map(|tt| tt.span());
    let first = spans.next().unwrap_or_else(Span::call_site);
    (first, spans.last().unwrap_or(first))
}

/// Re-spans every token of `tokens` at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tt = TokenTree::Group(new);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}
