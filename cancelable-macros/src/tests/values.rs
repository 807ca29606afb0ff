//! Durations and signal names: the values the arguments take.

use super::*;

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
pub(super) fn assert_same_as_runtime(text: &str) {
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
