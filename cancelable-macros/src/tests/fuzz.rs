//! Property tests: whatever the input, parsing and expansion never panic; they give
//! a configuration or a diagnostic (`cargo fuzz` would need nightly).

use std::str::FromStr;

use proc_macro2::TokenStream;
use proptest::prelude::*;
use quote::quote;

use crate::parse::{parse_args, KEYS};
use crate::value::parse_duration;

/// Pieces that argument lists are made of besides the valid keys, to reach
/// deep into the parser more often than random characters do.
const OTHER_PIECES: &[&str] = &[
    "register",
    "r#crate",
    "self",
    "=",
    "==",
    ",",
    ";",
    ":",
    "::",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "||",
    "|x|",
    "async",
    "move",
    "\"5s\"",
    "\"0s\"",
    "\"1y\"",
    "\"1.5s\"",
    "\"\"",
    "\"SIGINT\"",
    "\"sigterm\"",
    "\"SIGKILL\"",
    "\"::a::b\"",
    "\"1 + \"",
    "5",
    "5.0",
    "true",
    "'c'",
    "b\"x\"",
    "tok",
    "Duration::from_secs(1)",
    "self.limit",
    "self.stop",
    "job.token",
    "self.0",
    "#",
    "!",
    "&",
    "-",
    "<",
    ">",
    "'a",
    "_",
    "..",
    "r\"raw\"",
];

fn piece_stream() -> impl Strategy<Value = String> {
    let pieces: Vec<&'static str> = KEYS
        .iter()
        .map(|key| key.name)
        .chain(OTHER_PIECES.iter().copied())
        .collect();
    proptest::collection::vec(proptest::sample::select(pieces), 0..24)
        .prop_map(|pieces| pieces.join(" "))
}

/// Items to put the attribute on, valid and not.
const ITEMS: &[&str] = &[
    "async fn job(tok: Token, n: u32) -> Result<u32, E> { Ok(n) }",
    "async fn job(&self) -> io::Result<()> { Ok(()) }",
    "fn job() -> Option<u8> { None }",
    "fn job(job: Job) -> impl Future<Output = Result<u8, E>> + Send { async { Ok(1) } }",
    "async fn job(&self) -> types::Fallible<u8> { Ok(1) }",
    "async fn job() -> impl Future<Output = str> { todo!() }",
    "async fn job() {}",
    "async fn job(&self);",
    "struct S;",
    "impl S {}",
];

fn run_macro(args: TokenStream, item: &str) -> TokenStream {
    let item = TokenStream::from_str(item).expect("the items lex");
    crate::expand::cancellable(args, item)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn durations_never_panic(text in ".{0,24}") {
        let _ = parse_duration(&text, "timeout");
    }

    #[test]
    fn duration_like_strings_never_panic(text in "[0-9 .]{0,12}[a-zA-Zµ ]{0,6}[0-9]{0,25}[a-zA-Z]{0,3}") {
        if let Ok(duration) = parse_duration(&text, "timeout") {
            prop_assert!(!duration.is_zero());
        }
    }

    #[test]
    fn valid_durations_round_trip(n in 1u64..1_000_000, unit in 0usize..5) {
        let (suffix, nanos_per_unit) = [("ns", 1u128), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)][unit];
        let duration = parse_duration(&format!("{n}{suffix}"), "timeout").unwrap();
        prop_assert_eq!(duration.as_nanos(), u128::from(n) * nanos_per_unit);
    }

    #[test]
    fn signal_names_never_panic_and_read_as_the_runtime_reads_them(text in prop_oneof![
        "\\s{0,2}(?i)(sig)?(int|term|hup|quit|usr[0-9]|[a-z0-9+_-]{0,6})\\s{0,2}",
        ".{0,16}",
    ]) {
        super::values::assert_same_as_runtime(&text);
    }

    #[test]
    fn arbitrary_argument_strings_never_panic(text in ".{0,64}") {
        if let Ok(tokens) = TokenStream::from_str(&text) {
            let _ = parse_args(tokens.clone());
            let _ = run_macro(tokens, ITEMS[0]);
        }
    }

    #[test]
    fn argument_like_streams_never_panic(text in piece_stream(), item in 0..ITEMS.len()) {
        if let Ok(tokens) = TokenStream::from_str(&text) {
            let parsed = parse_args(tokens.clone());
            let out = run_macro(tokens, ITEMS[item]);
            // The output is always items: the function, or errors and the item.
            prop_assert!(syn::parse2::<syn::File>(out.clone()).is_ok(), "{}", out);
            // Valid arguments on a valid function expand without any error.
            if parsed.is_ok() && item == 0 && !text.contains("check_every") && !text.contains("token") {
                prop_assert!(!out.to_string().contains("compile_error"), "{}", out);
            }
        }
    }

    #[test]
    fn arbitrary_items_never_panic(text in ".{0,64}", wrap in any::<bool>()) {
        let text = if wrap { format!("async fn f() -> Result<(), E> {{ {text} }}") } else { text };
        if let Ok(item) = TokenStream::from_str(&text) {
            let _ = crate::expand::cancellable(quote!(timeout = "1s"), item.clone());
            let _ = crate::expand::cancellable(TokenStream::new(), item);
        }
    }
}
