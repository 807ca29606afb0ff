//! Unit tests of parsing, validation and expansion, without a compiler run.

mod args;
mod expansion;
mod function;
mod fuzz;
mod values;

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::{parse_args, Args, DurationArg, KEYS};
use crate::value::{parse_duration, parse_signal, Signal};

/// The messages of a combined error, in order.
fn messages(err: syn::Error) -> Vec<String> {
    err.into_iter().map(|e| e.to_string()).collect()
}

fn args(tokens: TokenStream) -> Args {
    match parse_args(tokens) {
        Ok(args) => args,
        Err(err) => panic!("unexpected errors: {:?}", messages(err)),
    }
}

fn arg_errors(tokens: TokenStream) -> Vec<String> {
    match parse_args(tokens) {
        Ok(_) => panic!("expected errors"),
        Err(err) => messages(err),
    }
}

/// Runs the whole macro and returns the `compile_error!` messages it emitted.
fn macro_errors(attr: TokenStream, item: TokenStream) -> Vec<String> {
    let out = crate::expand::cancellable(attr, item);
    let file: syn::File = syn::parse2(out).expect("the output parses as items");
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Macro(m) if m.mac.path.segments.last().unwrap().ident == "compile_error" => {
                Some(m.mac.parse_body::<syn::LitStr>().unwrap().value())
            }
            _ => None,
        })
        .collect()
}

/// Runs the whole macro on a valid input and returns the generated function.
fn expand_ok(attr: TokenStream, item: TokenStream) -> syn::ItemFn {
    let out = crate::expand::cancellable(attr, item);
    let text = out.to_string();
    assert!(!text.contains("compile_error"), "{text}");
    syn::parse2(out).expect("the expansion parses as a function")
}

/// Runs the whole macro on a valid input and returns the generated body as text.
fn expanded_body(attr: TokenStream, item: TokenStream) -> String {
    let block = expand_ok(attr, item).block;
    quote!(#block).to_string()
}

fn literal(arg: &DurationArg) -> Duration {
    match arg {
        DurationArg::Literal(duration, _) => *duration,
        DurationArg::Expr(_) => panic!("expected a literal"),
    }
}

fn one_error(errors: Vec<String>) -> String {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}
