//! The attribute's arguments: keys, values, duplicates, unknown keys and
//! syntax errors, every error at once.

use super::*;

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
