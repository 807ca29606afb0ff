//! Unit tests of parsing, validation and expansion, without a compiler run.

mod fuzz;

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

// ---------------------------------------------------------------- durations

#[test]
fn durations_in_humantime_syntax() {
    let ok = |text| parse_duration(text, "timeout").unwrap();
    assert_eq!(ok("5s"), Duration::from_secs(5));
    assert_eq!(ok("250ms"), Duration::from_millis(250));
    assert_eq!(ok("1m30s"), Duration::from_secs(90));
    assert_eq!(ok("1m 30s"), Duration::from_secs(90));
    assert_eq!(ok("2h"), Duration::from_secs(7200));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("3days"), Duration::from_secs(3 * 86400));
    assert_eq!(ok("1w"), Duration::from_secs(7 * 86400));
    assert_eq!(ok("10us"), Duration::from_micros(10));
    assert_eq!(ok("1ns"), Duration::from_nanos(1));
}

#[test]
fn zero_duration_is_rejected() {
    let timeout = parse_duration("0s", "timeout").unwrap_err();
    assert!(timeout.contains("zero `timeout`"), "{timeout}");
    assert!(timeout.contains("\"5s\""), "{timeout}");
    let every = parse_duration("0ms", "check_every").unwrap_err();
    assert!(
        every.contains("`check_every` must be a positive duration"),
        "{every}"
    );
}

#[test]
fn grace_takes_a_duration_and_zero_means_none() {
    assert_eq!(
        literal(&args(quote!(grace = "2s")).grace.unwrap().0),
        Duration::from_secs(2)
    );
    assert_eq!(
        literal(&args(quote!(grace = "0s")).grace.unwrap().0),
        Duration::ZERO
    );
    assert!(matches!(
        args(quote!(grace = self.grace)).grace.unwrap().0,
        DurationArg::Expr(_)
    ));
    let err = one_error(arg_errors(quote!(grace = "-2s")));
    assert!(
        err.starts_with("a grace period cannot be negative"),
        "{err}"
    );
    let err = one_error(arg_errors(quote!(grace = -2)));
    assert!(err.starts_with("`grace` cannot be negative"), "{err}");
    let err = one_error(arg_errors(quote!(grace = "soon")));
    assert!(err.starts_with("invalid duration \"soon\""), "{err}");
    let err = one_error(arg_errors(quote!(grace = 2)));
    assert!(err.starts_with("a bare number has no unit"), "{err}");
    let err = one_error(arg_errors(quote!(grace_period = "2s")));
    assert!(err.contains("did you mean `grace`?"), "{err}");
}

#[test]
fn calendar_units_are_rejected() {
    for text in ["1month", "2months", "1y", "1year", "3yrs", "1h 2M"] {
        let err = parse_duration(text, "timeout").unwrap_err();
        assert!(err.contains("calendar unit"), "{text}: {err}");
        assert!(err.contains("\"1m30s\""), "{text}: {err}");
    }
    let err = parse_duration("5M", "timeout").unwrap_err();
    assert!(err.contains("`m` for minutes"), "{err}");
}

#[test]
fn invalid_durations_explain_what_to_write() {
    let cases = [
        ("", "empty"),
        ("5", "`5` has no unit"),
        ("5 seconds please", "expected a number before `please`"),
        ("5 parsecs", "unknown unit `parsecs`"),
        ("s", "expected a number"),
        ("5s!", "unexpected character `!`"),
        ("99999999999999999999s", "too large"),
    ];
    for (text, expected) in cases {
        let err = parse_duration(text, "timeout").unwrap_err();
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(err.contains("write a duration like"), "{text:?}: {err}");
    }
}

// ---------------------------------------------------------------- signals

#[test]
fn signal_names() {
    for (signal, name, _) in Signal::ALL {
        assert_eq!(parse_signal(name), Ok(signal));
        assert_eq!(signal.name(), name);
    }
    assert_eq!(Signal::Interrupt.variant(), "Interrupt");
    assert_eq!(Signal::User2.variant(), "User2");
}

/// Every spelling of every signal: `SIG` in any case or absent, the rest in any
/// case, surrounding whitespace.
fn spellings() -> Vec<(String, Signal)> {
    let mut spellings = Vec::new();
    for (signal, name, _) in Signal::ALL {
        let bare = &name[3..];
        let title: String = bare
            .chars()
            .enumerate()
            .map(|(i, c)| if i == 0 { c } else { c.to_ascii_lowercase() })
            .collect();
        let alternating: String = bare
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 1 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect();
        for prefix in ["", "SIG", "sig", "Sig", "sIG"] {
            for rest in [
                bare.to_owned(),
                bare.to_ascii_lowercase(),
                title.clone(),
                alternating.clone(),
            ] {
                for (before, after) in [
                    ("", ""),
                    (" ", ""),
                    ("", " "),
                    ("\t", "\n "),
                    ("\u{a0}", "\u{3000}"),
                ] {
                    spellings.push((format!("{before}{prefix}{rest}{after}"), signal));
                }
            }
        }
    }
    spellings
}

#[test]
fn signal_names_in_any_case_with_or_without_sig() {
    for (text, signal) in spellings() {
        assert_eq!(parse_signal(&text), Ok(signal), "{text:?}");
    }
    let args = args(quote!(on_signal = ["sigint", "TERM", " SigHup "]));
    let signals: Vec<Signal> = args.on_signal.unwrap().0.into_iter().map(|s| s.0).collect();
    assert_eq!(
        signals,
        [Signal::Interrupt, Signal::Terminate, Signal::Hangup]
    );
    // Two spellings of one signal are one signal listed twice.
    let err = one_error(arg_errors(quote!(on_signal = ["SIGINT", "int"])));
    assert!(err.contains("`SIGINT` is listed more than once"), "{err}");
}

/// The attribute and `cancelable::Signal::from_str` read a name the same way:
/// both accept it, as the same signal, or both reject it.
fn assert_same_as_runtime(text: &str) {
    let runtime = text
        .parse::<cancelable::Signal>()
        .ok()
        .map(cancelable::Signal::name);
    let attribute = parse_signal(text).ok().map(Signal::name);
    assert_eq!(attribute, runtime, "{text:?}");
}

#[test]
fn signal_grammar_is_the_runtime_one() {
    for (text, _) in spellings() {
        assert_same_as_runtime(&text);
    }
    for text in [
        "",
        " ",
        "SIG",
        "sig",
        "SIGSIGINT",
        "SIG INT",
        "SIG-INT",
        "SIG_INT",
        "INT!",
        "Interrupt",
        "SIGKILL",
        "SIGWINCH",
        "SIGUSR3",
        "ctrl-c",
        "SIGİNT",
        "ſigint",
        "SIGINT\0",
        "2",
    ] {
        assert_same_as_runtime(text);
    }
}

#[test]
fn signal_hints() {
    let hint = |text: &str| parse_signal(text).unwrap_err();
    for (text, name) in [
        ("Interrupt", "SIGINT"),
        ("terminate", "SIGTERM"),
        ("SIGHANGUP", "SIGHUP"),
        ("SIGTREM", "SIGTERM"),
        ("sigtrem", "SIGTERM"),
        ("SIGUSR3", "SIGUSR1"),
        ("ctrl-c", "SIGINT"),
    ] {
        let err = hint(text);
        assert!(
            err.contains(&format!("did you mean `{name}`?")),
            "{text}: {err}"
        );
    }
    for text in ["SIGKILL", "sigkill", "STOP"] {
        assert!(hint(text).contains("cannot be caught"), "{text}");
    }
    let err = hint("SIGWINCH");
    assert!(
        err.ends_with(
            "expected one of \"SIGINT\", \"SIGTERM\", \"SIGHUP\", \"SIGQUIT\", \"SIGUSR1\", \
             \"SIGUSR2\" (in any case, `SIG` optional)"
        ),
        "{err}"
    );
    assert!(hint("").contains("expected one of"));
}

// ---------------------------------------------------------------- arguments

#[test]
fn empty_arguments() {
    let args = args(quote!());
    assert!(args.timeout.is_none() && args.on_signal.is_none() && args.token.is_none());
    assert!(args.condition.is_none() && args.check_every.is_none());
    assert!(args.name.is_none() && args.krate.is_none());
}

#[test]
fn every_argument() {
    let args = args(quote!(
        timeout = "5s",
        on_signal = ["SIGINT", "SIGTERM"],
        token = tok,
        condition = stop_requested,
        check_every = "250ms",
        name = "job",
        crate = "my_cancelable",
    ));
    assert_eq!(literal(&args.timeout.unwrap().0), Duration::from_secs(5));
    let signals: Vec<Signal> = args.on_signal.unwrap().0.into_iter().map(|s| s.0).collect();
    assert_eq!(signals, [Signal::Interrupt, Signal::Terminate]);
    assert_eq!(args.token.unwrap().0.base, "tok");
    let condition = args.condition.unwrap().0;
    assert_eq!(quote!(#condition).to_string(), "stop_requested");
    assert_eq!(
        literal(&args.check_every.unwrap().0),
        Duration::from_millis(250)
    );
    assert_eq!(args.name.unwrap().0.value(), "job");
    let krate = args.krate.unwrap().0;
    assert_eq!(quote!(#krate).to_string(), "my_cancelable");
}

#[test]
fn single_signal_and_expressions() {
    let args = args(quote!(
        on_signal = "SIGHUP",
        timeout = self.limit,
        check_every = Duration::from_millis(10),
        condition = || STOP.load(Ordering::Relaxed),
        crate = "::deps::cancelable"
    ));
    assert_eq!(args.on_signal.unwrap().0[0].0, Signal::Hangup);
    match args.timeout.unwrap().0 {
        DurationArg::Expr(expr) => assert_eq!(quote!(#expr).to_string(), "self . limit"),
        DurationArg::Literal(..) => panic!("expected an expression"),
    }
    assert!(matches!(args.check_every.unwrap().0, DurationArg::Expr(_)));
    let krate = args.krate.unwrap().0;
    assert_eq!(quote!(#krate).to_string(), ":: deps :: cancelable");
}

#[test]
fn wrong_value_types() {
    let err = one_error(arg_errors(quote!(timeout = 5)));
    assert!(err.contains("write a duration string like \"5s\""), "{err}");
    let err = one_error(arg_errors(quote!(timeout = 1.5)));
    assert!(err.contains("\"1.5s\""), "{err}");
    let err = one_error(arg_errors(quote!(timeout = true)));
    assert!(err.contains("expected a duration string like \"5s\" or a `Duration` expression"));
    let err = one_error(arg_errors(quote!(timeout = ["5s"])));
    assert!(err.contains("expected a duration string"), "{err}");
    let err = one_error(arg_errors(quote!(on_signal = SIGINT)));
    assert!(err.contains("signal name as a string"), "{err}");
    let err = one_error(arg_errors(quote!(token = "tok")));
    assert!(err.contains("e.g. `token = tok`"), "{err}");
    for not_a_path in [
        quote!(token = self.token()),
        quote!(token = tokens[0]),
        quote!(token = &tok),
        quote!(token = a::b),
        quote!(token = (self).stop),
    ] {
        let err = one_error(arg_errors(not_a_path.clone()));
        assert!(
            err.contains("`token` takes a parameter of this function or a field of one"),
            "{not_a_path}: {err}"
        );
    }
    let err = one_error(arg_errors(quote!(condition = true)));
    assert!(
        err.contains("function or closure returning `bool`"),
        "{err}"
    );
    let err = one_error(arg_errors(quote!(name = job)));
    assert!(err.contains("`name` takes a string literal"), "{err}");
    let err = one_error(arg_errors(quote!(name = "  ")));
    assert!(err.contains("`name` is empty"), "{err}");
    let err = one_error(arg_errors(quote!(crate = cancelable)));
    assert!(err.contains("crate = \"cancelable\""), "{err}");
    let err = one_error(arg_errors(quote!(crate = "not a path")));
    assert!(err.contains("is not a path"), "{err}");
}

#[test]
fn signal_lists() {
    let err = one_error(arg_errors(quote!(on_signal = [])));
    assert!(err.contains("`on_signal` lists no signal"), "{err}");
    let err = one_error(arg_errors(quote!(
        on_signal = ["SIGINT", "SIGTERM", "SIGINT"]
    )));
    assert!(err.contains("`SIGINT` is listed more than once"), "{err}");
    let errors = arg_errors(quote!(on_signal = ["Interrupt", "SIGKILL", 3]));
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn every_key_has_a_valid_example_and_its_aliases_point_to_it() {
    for key in &KEYS {
        let example: TokenStream = key.example.parse().unwrap();
        let parsed = args(example.clone());
        assert!(parsed.written(key.name).is_some(), "{}", key.example);
        let err = one_error(arg_errors(quote!(#example, #example)));
        assert!(err.starts_with(&format!("`{}` is set more than once", key.name)));
        for alias in key.aliases {
            let alias = syn::Ident::new(alias, proc_macro2::Span::call_site());
            let err = one_error(arg_errors(quote!(#alias = 1)));
            assert!(
                err.contains(&format!("did you mean `{}`?", key.name)),
                "{alias}: {err}"
            );
        }
    }
}

#[test]
fn register_takes_a_boolean() {
    assert!(args(quote!(register = true)).register.unwrap().0.value);
    assert!(!args(quote!(register = false)).register.unwrap().0.value);
    for value in [quote!("yes"), quote!(1), quote!(yes)] {
        let err = one_error(arg_errors(quote!(register = #value)));
        assert!(
            err.starts_with("`register` takes `true` or `false`"),
            "{err}"
        );
    }
}

#[test]
fn unknown_and_duplicate_arguments() {
    let err = one_error(arg_errors(quote!(retries = 3)));
    assert!(err.starts_with("unknown argument `retries`;"), "{err}");
    assert!(
        err.ends_with(
            "`timeout`, `on_signal`, `token`, `condition`, `check_every`, `name`, `register`, \
             `grace`, `crate`"
        ),
        "{err}"
    );
    let err = one_error(arg_errors(quote!(signal = "SIGINT")));
    assert!(err.contains("did you mean `on_signal`?"), "{err}");
    let err = one_error(arg_errors(quote!(timout = "5s")));
    assert!(err.contains("did you mean `timeout`?"), "{err}");
    let err = one_error(arg_errors(quote!(timeout = "5s", timeout = "6s")));
    assert_eq!(
        err,
        "`timeout` is set more than once; keep one `timeout = ...`"
    );
    // A duplicate is reported even when the first value was invalid.
    let errors = arg_errors(quote!(timeout = "0s", timeout = "6s"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn syntax_errors_recover_at_the_next_comma() {
    let err = one_error(arg_errors(quote!(timeout)));
    assert!(err.contains("expected `timeout = ...`"), "{err}");
    let err = one_error(arg_errors(quote!(timeout("5s"))));
    assert!(err.contains("expected `timeout = ...`"), "{err}");
    let err = one_error(arg_errors(quote!(frobnicate)));
    assert!(err.contains("unknown argument `frobnicate`"), "{err}");
    let err = one_error(arg_errors(quote!(timeout = )));
    assert!(err.contains("`timeout` has no value"), "{err}");
    let err = one_error(arg_errors(quote!("5s")));
    assert!(err.contains("expected an argument like"), "{err}");
    // One error per broken argument, and the valid ones are still read.
    let errors = arg_errors(quote!(timeout = , name = "x" "y", on_signal = "SIGINT", 42));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let errors = arg_errors(quote!(timeout = "1s" name = "x"));
    assert!(
        errors.iter().any(|e| e.contains("expected `,`")),
        "{errors:#?}"
    );
}

#[test]
fn all_errors_of_an_attribute_at_once() {
    let errors = arg_errors(quote!(
        timeout = "0s",
        on_signal = "SIGTREM",
        bogus = 1,
        name = "",
        name = "again",
        check_every = "1y"
    ));
    assert_eq!(errors.len(), 6, "{errors:#?}");
}

// ---------------------------------------------------------------- the function

#[test]
fn function_must_be_async() {
    let err = one_error(macro_errors(
        quote!(),
        quote!(
            fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert_eq!(
        err,
        "`#[cancellable]` can only be applied to an `async fn`; write `async fn job`"
    );
}

#[test]
fn sync_fn_returning_a_future_is_told_to_become_async() {
    // One error, on `fn`: the return type is not judged as the function's result,
    // and nothing suggests wrapping the future in a `Result`.
    let err = one_error(macro_errors(
        quote!(timeout = "5s"),
        quote!(
            fn fetch(n: u32) -> impl Future<Output = Result<u32, Cancelled>> + Send {
                async move { Ok(n) }
            }
        ),
    ));
    assert_eq!(
        err,
        "`#[cancellable]` can only be applied to an `async fn`; `fetch` returns a future \
         instead: make it `async fn fetch(..) -> Result<u32, Cancelled>` and move the body of \
         that future into the function"
    );
    let err = one_error(macro_errors(
        quote!(),
        quote!(
            fn fetch() -> impl std::future::Future {
                async {}
            }
        ),
    ));
    assert!(
        err.contains("make it `async fn fetch(..) -> <the future's output>`"),
        "{err}"
    );
    // A boxed future is a path type: only the missing `async` is reported.
    let err = one_error(macro_errors(
        quote!(),
        quote!(
            fn fetch() -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send>> {
                Box::pin(async { Ok(1) })
            }
        ),
    ));
    assert!(err.ends_with("write `async fn fetch`"), "{err}");
}

#[test]
fn sync_fn_from_tokio_attributes_gets_a_hint() {
    for item in [
        quote!(
            fn main() -> Result<(), E> {
                Ok(())
            }
        ),
        quote!(
            #[::core::prelude::v1::test]
            fn check() -> Result<(), E> {
                Ok(())
            }
        ),
    ] {
        let err = one_error(macro_errors(quote!(), item));
        assert!(err.contains("move `#[cancellable]` above it"), "{err}");
    }
}

#[test]
fn return_type_must_be_a_result() {
    let cases = [
        (
            quote!(
                async fn f() {}
            ),
            "`f` returns `()`",
        ),
        (
            quote!(
                async fn f() -> () {}
            ),
            "`()` cannot carry the cancellation",
        ),
        (
            quote!(
                async fn f() -> (u8, u8) {}
            ),
            "the tuple `(u8, u8)`",
        ),
        (
            quote!(
                async fn f() -> Option<u8> {}
            ),
            "`Option<u8>` cannot",
        ),
        (
            quote!(
                async fn f() -> &'static str {}
            ),
            "the reference `&'static str`",
        ),
        (
            quote!(
                async fn f() -> impl Display {}
            ),
            "`impl Display` cannot",
        ),
        (
            quote!(
                async fn f() -> u32 {}
            ),
            "e.g. `-> Result<u32, cancelable::Cancelled>`",
        ),
        (
            quote!(
                async fn f() -> std::option::Option<u8> {}
            ),
            "e.g. `-> Result<std::option::Option<u8>, cancelable::Cancelled>`",
        ),
    ];
    for (item, expected) in cases {
        let err = one_error(macro_errors(quote!(), item.clone()));
        assert!(err.contains(expected), "{item}: {err}");
        assert!(
            err.contains("must return `Result<T, E>` where `E: From<cancelable::Cancelled>`"),
            "{err}"
        );
    }
    // Any other path type is accepted: the compiler checks, through aliases, that
    // it is a `Result` whose error type converts from `Cancelled`.
    for ret in [
        quote!(Result<(), E>),
        quote!(io::Result<u8>),
        quote!(anyhow::Result<u8>),
        quote!(::core::result::Result<u8, E>),
        quote!(AppResult<u8>),
        quote!((Result<u8, E>)),
        quote!(Fallible<u8>),
        quote!(errors::Outcome<u8>),
        quote!(Count),
        quote!(types::Maybe<u8>),
        quote!(<Self as Job>::Output),
        quote!(Pin<Box<dyn Future<Output = u8>>>),
        quote!(outcome!()),
    ] {
        expand_ok(quote!(), quote!(async fn f() -> #ret { todo!() }));
    }
}

#[test]
fn return_type_suggestions_are_only_ones_that_can_be_right() {
    let cases = [
        // A future inside the `async fn`'s own future: declare its output.
        (
            quote!(impl Future<Output = Result<u8, E>>),
            "`impl Future<Output = Result<u8, E>>` is a future inside the future of this \
             `async fn`, which already returns one: declare what it produces instead; a \
             `#[cancellable]` function must return `Result<T, E>` where \
             `E: From<cancelable::Cancelled>`, e.g. `-> Result<u8, E>`",
        ),
        (
            quote!(impl core::future::Future<Output = u8> + Send),
            "e.g. `-> Result<u8, cancelable::Cancelled>`",
        ),
        (
            quote!(impl Future<Output = ()> + Send),
            "e.g. `-> Result<(), cancelable::Cancelled>`",
        ),
        // Other `impl Trait` can be the `Ok` type.
        (
            quote!(impl Iterator<Item = u8>),
            "e.g. `-> Result<impl Iterator<Item = u8>, cancelable::Cancelled>`",
        ),
        (
            quote!(!),
            "e.g. `-> Result<core::convert::Infallible, cancelable::Cancelled>`",
        ),
    ];
    for (ret, expected) in cases {
        let err = one_error(macro_errors(quote!(), quote!(async fn f() -> #ret {})));
        assert!(err.ends_with(expected), "{ret}: {err}");
    }
    // No suggestion where none can be right (unsized types, no declared output).
    for ret in [
        quote!(impl Future),
        quote!(impl Future<Output = str>),
        quote!(str),
        quote!([u8]),
        quote!(dyn Display),
    ] {
        let err = one_error(macro_errors(quote!(), quote!(async fn f() -> #ret {})));
        assert!(!err.contains("e.g."), "{ret}: {err}");
        assert!(
            err.ends_with("must return `Result<T, E>` where `E: From<cancelable::Cancelled>`"),
            "{ret}: {err}"
        );
    }
}

#[test]
fn token_must_name_a_parameter() {
    let err = one_error(macro_errors(
        quote!(token = tk),
        quote!(
            async fn job(tok: Token, (a, b): (u8, u8)) -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert_eq!(
        err,
        "`tk` is not a parameter of `job`; `token` must name the `CancellationToken` parameter, \
         one of `tok`, `a`, `b`"
    );
    let err = one_error(macro_errors(
        quote!(token = tok),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert!(err.contains("`job` has none"), "{err}");
    let err = one_error(macro_errors(
        quote!(token = jobs.token),
        quote!(
            async fn job(job: Job, n: u32) -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert_eq!(
        err,
        "`jobs` is not a parameter of `job`; a field path in `token` must start at a \
         parameter, one of `job`, `n`"
    );
    for (token, item) in [
        (
            quote!(self),
            quote!(
                async fn job(self) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(t),
            quote!(
                async fn job(&self, Wrapper { t, .. }: W) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(t),
            quote!(
                async fn job(mut t: Token) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(self.stop),
            quote!(
                async fn job(&self) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(self.inner.0),
            quote!(
                async fn job(&mut self) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(job.token),
            quote!(
                async fn run(job: &Job) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
    ] {
        expand_ok(quote!(token = #token), item);
    }
}

#[test]
fn token_field_path_is_linked_as_written() {
    let body = expanded_body(
        quote!(token = self.inner.stop),
        quote!(
            async fn job(&self) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        body.contains(
            "let __cancelable_scope = :: cancelable :: __private :: link_token \
             (__cancelable_scope , & self . inner . stop) ;"
        ),
        "{body}"
    );
}

#[test]
fn check_every_needs_condition() {
    let err = one_error(macro_errors(
        quote!(check_every = "1s"),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert!(
        err.starts_with("`check_every` sets how often `condition` is checked"),
        "{err}"
    );
    // Also when `check_every` itself is invalid: both problems are reported.
    let errors = macro_errors(
        quote!(check_every = "0s"),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn errors_of_arguments_and_function_together() {
    let errors = macro_errors(
        quote!(timeout = "0s", token = nope, check_every = "1s", bogus = 1),
        quote!(
            fn job(tok: Token) -> Option<u8> {
                None
            }
        ),
    );
    assert_eq!(errors.len(), 6, "{errors:#?}");
}

#[test]
fn the_function_is_emitted_unchanged_next_to_errors() {
    let item = quote!(
        /// Docs.
        #[inline]
        pub fn job(tok: Token) -> Option<u8> {
            None
        }
    );
    let out = crate::expand::cancellable(quote!(timeout = "0s"), item.clone()).to_string();
    assert!(out.ends_with(&item.to_string()), "{out}");
}

#[test]
fn not_a_function() {
    let cases = [
        (
            quote!(
                struct S;
            ),
            "not to a struct",
        ),
        (
            quote!(
                enum E {
                    A,
                }
            ),
            "not to an enum",
        ),
        (quote!(impl S { async fn f() {} }), "not to an `impl` block"),
        (
            quote!(
                trait T {}
            ),
            "not to a trait",
        ),
        (
            quote!(
                const C: u8 = 1;
            ),
            "not to a constant",
        ),
        (
            quote!(
                mod m {}
            ),
            "not to a module",
        ),
        (
            quote!(
                async fn f(&self) -> Result<(), E>;
            ),
            "needs the function's body",
        ),
        (
            quote!(
                extern crate alloc;
            ),
            "not to an `extern crate` item",
        ),
        (
            quote!(
                extern "C" {}
            ),
            "not to an `extern` block",
        ),
        (
            quote!(
                macro_rules! m {
                    () => {};
                }
            ),
            "not to a macro",
        ),
        (
            quote!(
                use std::fmt;
            ),
            "not to a `use` item",
        ),
    ];
    for (item, expected) in cases {
        let err = one_error(macro_errors(quote!(), item.clone()));
        assert!(err.contains(expected), "{item}: {err}");
    }
    let out = crate::expand::cancellable(
        quote!(),
        quote!(
            struct S;
        ),
    )
    .to_string();
    assert!(out.ends_with("struct S ;"), "{out}");
}

// ---------------------------------------------------------------- expansion

#[test]
fn expansion_keeps_the_signature_and_attributes() {
    let item = quote!(
        /// Docs.
        #[inline]
        pub(crate) async fn job<'a, T: Clone + 'a, U>(
            &'a self,
            x: &'a T,
            y: impl Into<U>,
            (a, b): (u8, u8),
        ) -> Result<&'a T, E>
        where
            U: Send,
        {
            #![allow(unused_variables)]
            Ok(x)
        }
    );
    let original: syn::ItemFn = syn::parse2(item.clone()).unwrap();
    let expanded = expand_ok(quote!(), item);
    assert_eq!(expanded.sig, original.sig);
    assert_eq!(expanded.attrs, original.attrs);
    assert_eq!(expanded.vis, original.vis);
    assert_eq!(expanded.block.stmts.len(), 3, "scope, body, run");
    let block = &expanded.block;
    let body = quote!(#block).to_string();
    let whole = quote!(#expanded).to_string();
    assert!(
        whole.contains("{ # ! [allow (unused_variables)] let __cancelable_scope"),
        "{whole}"
    );
    assert!(body.contains(". name (\"job\")"), "{body}");
}

#[test]
fn expansion_of_every_argument() {
    let body = expanded_body(
        quote!(
            timeout = "1m30s",
            on_signal = ["SIGINT", "SIGUSR2"],
            token = tok,
            condition = stop_requested,
            check_every = "250ms",
            name = "the job"
        ),
        quote!(
            async fn job(tok: Token) -> Result<u32, E> {
                Ok(1)
            }
        ),
    );
    for expected in [
        "let __cancelable_scope = :: cancelable :: __private :: CancelScope :: new () \
         . name (\"the job\") \
         . timeout (:: core :: time :: Duration :: new (90u64 , 0u32)) \
         . on_signal (:: cancelable :: __private :: Signal :: Interrupt) \
         . on_signal (:: cancelable :: __private :: Signal :: User2) ;",
        "let __cancelable_scope = :: cancelable :: __private :: link_token (__cancelable_scope , & tok) ;",
        "let __cancelable_scope = __cancelable_scope . condition (stop_requested , \
         :: core :: time :: Duration :: new (0u64 , 250000000u32)) ;",
        "let __cancelable_body = async move { if let :: core :: option :: Option :: Some (__cancelable_ret) \
         = :: core :: option :: Option :: None :: < Result < u32 , E > > { return __cancelable_ret ; } { Ok (1) } } ;",
        ":: cancelable :: __private :: run (__cancelable_scope , :: core :: convert :: identity (__cancelable_body)) . await }",
    ] {
        assert!(body.contains(expected), "missing {expected}\nin {body}");
    }
}

#[test]
fn expansion_details() {
    // Default check period.
    let body = expanded_body(
        quote!(condition = || true),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        body.contains("Duration :: new (0u64 , 100000000u32)"),
        "{body}"
    );
    // Duration expressions are used as written.
    let body = expanded_body(
        quote!(timeout = self.limit),
        quote!(
            async fn job(&self) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(body.contains(". timeout (self . limit)"));
    // The crate path override.
    let body = expanded_body(
        quote!(crate = "::deps::cancel"),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        body.contains(":: deps :: cancel :: __private :: CancelScope"),
        "{body}"
    );
    assert!(
        body.contains(":: deps :: cancel :: __private :: run"),
        "{body}"
    );
    assert!(!body.contains(":: cancelable ::"), "{body}");
    // A raw identifier names the scope without `r#`.
    let body = expanded_body(
        quote!(),
        quote!(
            async fn r#type() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(body.contains(". name (\"type\")"));
    // `impl Trait` in the return type is erased in the type anchor.
    let body = expanded_body(
        quote!(),
        quote!(
            async fn job() -> Result<Vec<impl Display>, E> {
                Ok(vec![])
            }
        ),
    );
    assert!(
        body.contains("None :: < Result < Vec < _ > , E > >"),
        "{body}"
    );
    // Wherever it is nested: bindings, `dyn` and `fn` types, tuples, references.
    for (ret, anchor) in [
        (
            quote!(Result<impl Iterator<Item = impl Display>, E>),
            "Result < _ , E >",
        ),
        (
            quote!(Result<Box<dyn Iterator<Item = impl Display>>, E>),
            "Result < Box < dyn Iterator < Item = _ > > , E >",
        ),
        (
            quote!(Result<Box<dyn Fn(impl Display) -> impl Debug>, E>),
            "Result < Box < dyn Fn (_) -> _ > , E >",
        ),
        (
            quote!(Result<(impl Display, &'static [impl Debug]), E>),
            "Result < (_ , & 'static [_]) , E >",
        ),
        (
            quote!(Result<fn(u8) -> impl Debug, E>),
            "Result < fn (u8) -> _ , E >",
        ),
    ] {
        let body = expanded_body(quote!(), quote!(async fn job() -> #ret { todo!() }));
        assert!(
            body.contains(&format!("None :: < {anchor} >")),
            "{ret}: {body}"
        );
    }
}
