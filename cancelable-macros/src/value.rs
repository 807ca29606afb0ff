//! The values checked at compile time: duration strings and signal names.
//!
//! These functions work on plain strings and never panic, whatever the input; the
//! caller puts the returned message on the offending literal.

use std::time::Duration;

/// Examples of valid duration strings, quoted in every duration error.
const DURATION_EXAMPLES: &str = "\"5s\", \"250ms\" or \"1m30s\"";

/// Parses a humantime duration string (`"5s"`, `"250ms"`, `"1m30s"`, `"1.5s"`).
///
/// Rejects the calendar units months and years, which have no fixed length, and a
/// zero duration — except for `grace`, where zero means no grace period. `what`
/// names the argument in messages (`timeout`, `check_every`, `grace`).
pub(crate) fn parse_duration(text: &str, what: &str) -> Result<Duration, String> {
    if what == "grace" && text.trim_start().starts_with('-') {
        return Err(format!(
            "a grace period cannot be negative ({text:?}); write how long a cancelled body may \
             go on to clean up, e.g. \"2s\" or \"500ms\" (\"0s\" means no grace period)"
        ));
    }
    let duration = humantime::parse_duration(text).map_err(|err| describe(text, &err))?;
    if let Some(unit) = calendar_unit(text) {
        let hint = if unit == "M" {
            " (`M` means months; write `m` for minutes)"
        } else {
            ""
        };
        return Err(format!(
            "`{unit}` is a calendar unit with no fixed length{hint}; write the duration in \
             fixed units, e.g. \"30days\", \"12h\" or \"1m30s\""
        ));
    }
    if duration.is_zero() && what != "grace" {
        return Err(match what {
            "timeout" => format!(
                "a zero `timeout` would cancel the function before it starts; write a positive \
                 duration, e.g. {DURATION_EXAMPLES}"
            ),
            _ => format!("`{what}` must be a positive duration, e.g. \"100ms\" or \"1s\""),
        });
    }
    Ok(duration)
}

/// The first calendar unit (months, years) of a duration string that humantime accepted.
fn calendar_unit(text: &str) -> Option<&str> {
    text.split(|c: char| !(c.is_ascii_alphabetic() || c == 'µ'))
        .find(|unit| {
            matches!(
                *unit,
                "months" | "month" | "M" | "years" | "year" | "yr" | "yrs" | "y"
            )
        })
}

/// A message for a duration string that humantime rejected.
fn describe(text: &str, err: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    let problem = match err {
        E::Empty => "the duration is empty".to_owned(),
        E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("`{value}` has no unit (write \"{value}s\" for seconds or \"{value}ms\" for milliseconds)")
        }
        E::UnknownUnit { unit, .. } => format!(
            "unknown unit `{unit}` (the units are ns, us, ms, s, m, h, d and w, and their long \
             forms such as `sec`, `min`, `hours`)"
        ),
        E::InvalidCharacter(at) => match text.get(*at..).and_then(|rest| rest.chars().next()) {
            Some(c) => format!("unexpected character `{}` at byte {at}", c.escape_debug()),
            None => format!("unexpected character at byte {at}"),
        },
        E::NumberExpected(at) => match text.get(*at..) {
            Some(rest) if !rest.trim().is_empty() => {
                format!("expected a number before `{}`", rest.trim())
            }
            _ => format!("expected a number at byte {at}"),
        },
        E::NumberOverflow => "the duration is too large or finer than a nanosecond".to_owned(),
    };
    format!(
        "invalid duration {:?}: {problem}; write a duration like {DURATION_EXAMPLES}",
        text
    )
}

/// A signal the runtime can listen for: the variants of `cancelable::Signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
    Hangup,
    Quit,
    User1,
    User2,
}

impl Signal {
    /// Every signal, with its POSIX name and its `Signal` variant name.
    pub(crate) const ALL: [(Signal, &'static str, &'static str); 6] = [
        (Signal::Interrupt, "SIGINT", "Interrupt"),
        (Signal::Terminate, "SIGTERM", "Terminate"),
        (Signal::Hangup, "SIGHUP", "Hangup"),
        (Signal::Quit, "SIGQUIT", "Quit"),
        (Signal::User1, "SIGUSR1", "User1"),
        (Signal::User2, "SIGUSR2", "User2"),
    ];

    /// The POSIX name, e.g. `SIGINT`.
    pub(crate) fn name(self) -> &'static str {
        Self::entry(self).1
    }

    /// The name of the `cancelable::Signal` variant, e.g. `Interrupt`.
    pub(crate) fn variant(self) -> &'static str {
        Self::entry(self).2
    }

    fn entry(self) -> (Signal, &'static str, &'static str) {
        // `ALL` lists every variant, so the fallback is never taken.
        Self::ALL
            .into_iter()
            .find(|entry| entry.0 == self)
            .unwrap_or(Self::ALL[0])
    }
}

/// Parses a signal name with the grammar of `cancelable::Signal::from_str`, so
/// that a name reads the same in the attribute and in a configuration file: a
/// name of [`Signal::ALL`] in any case, `SIG` optional, surrounding whitespace
/// ignored (`"SIGINT"`, `"sigint"`, `"INT"`, `" Int "`). Anything else gets a
/// message with a hint.
pub(crate) fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(signal, _, _)) = Signal::ALL.iter().find(|(_, name, _)| name[3..] == *bare) {
        return Ok(signal);
    }
    if matches!(bare, "KILL" | "STOP") {
        return Err(format!(
            "`SIG{bare}` cannot be caught by a process, so it cannot cancel a scope; \
             listen for `SIGINT` or `SIGTERM` instead"
        ));
    }
    let guess = Signal::ALL
        .iter()
        .find(|(_, _, variant)| variant.eq_ignore_ascii_case(bare))
        .or_else(|| {
            Signal::ALL
                .iter()
                .find(|(_, name, _)| bare.len() > 2 && edit_distance(bare, &name[3..]) <= 1)
        });
    let guess = match guess {
        Some(&(_, name, _)) => Some(name),
        None if matches!(bare, "CTRL-C" | "CTRL+C" | "CTRLC" | "CTRL_C") => Some("SIGINT"),
        None => None,
    };
    match guess {
        Some(name) => Err(format!("unknown signal {text:?}; did you mean `{name}`?")),
        None => Err(format!(
            "unknown signal {text:?}; expected one of {} (in any case, `SIG` optional)",
            Signal::ALL
                .iter()
                .map(|entry| format!("\"{}\"", entry.1))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Edit distance between two short strings (insertions, deletions, substitutions
/// and swaps of neighbours each count one), for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}
