//! Which operations a query is about: [`Filter`] and the glob [`Pattern`]
//! that matches operation names.

use std::fmt;
use std::time::Duration;

use crate::OperationStatus;

/// Selects operations for [`Registry::list`](super::Registry::list),
/// [`history`](super::Registry::history) and
/// [`cancel_all`](super::Registry::cancel_all). An empty filter selects
/// everything; each condition added narrows it.
///
/// ```
/// use std::time::Duration;
/// use cancelable::registry::Filter;
/// use cancelable::OperationStatus;
///
/// let filter = Filter::new()
///     .status(OperationStatus::Running)
///     .name("export-*")?
///     .older_than(Duration::from_secs(60));
/// assert!(Filter::new().name("job[").is_err());
/// # Ok::<(), cancelable::registry::RegistryError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Filter {
    statuses: Vec<OperationStatus>,
    name: Option<Pattern>,
    parent: Option<u64>,
    older_than: Option<Duration>,
}

impl Filter {
    /// A filter that selects every operation.
    pub fn new() -> Self {
        Filter::default()
    }

    /// Keeps operations with this status; called several times, keeps
    /// operations with any of the statuses given.
    pub fn status(mut self, status: OperationStatus) -> Self {
        if !self.statuses.contains(&status) {
            self.statuses.push(status);
        }
        self
    }

    /// Keeps operations whose name matches the glob `pattern` (see
    /// [`Pattern`]); unnamed operations match only patterns that match the
    /// empty string. A pattern that does not parse is an `Err` saying why.
    pub fn name(self, pattern: &str) -> Result<Self, super::RegistryError> {
        Ok(self.name_pattern(Pattern::new(pattern)?))
    }

    /// [`name`](Self::name) with a pattern parsed beforehand.
    pub fn name_pattern(mut self, pattern: Pattern) -> Self {
        self.name = Some(pattern);
        self
    }

    /// Keeps operations started directly inside the scope with id `parent`.
    pub fn parent(mut self, parent: u64) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Keeps operations older than `age`: live ones running for at least
    /// `age`, finished ones that ended at least `age` ago.
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Whether an operation with these properties passes the filter; `age`
    /// is as [`older_than`](Self::older_than) describes.
    /// `parent` is asked for only if the filter looks at it.
    pub(crate) fn accepts(
        &self,
        status: OperationStatus,
        name: Option<&str>,
        parent: impl FnOnce() -> Option<u64>,
        age: Option<Duration>,
    ) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&status))
            && self
                .name
                .as_ref()
                .is_none_or(|pattern| pattern.matches(name.unwrap_or("")))
            && self.parent.is_none_or(|wanted| parent() == Some(wanted))
            && self
                .older_than
                .is_none_or(|min| age.is_some_and(|age| age >= min))
    }
}

/// A glob pattern over operation names.
///
/// * `*` matches any run of characters, `?` exactly one;
/// * `[abc]`, `[a-z]` match one character of a set, `[!a-z]` one outside it;
/// * `\` makes the next character literal (`\*` matches a star).
///
/// Everything else matches itself; the whole name must match.
///
/// ```
/// use cancelable::registry::Pattern;
///
/// let pattern = Pattern::new("export-[0-9]*")?;
/// assert!(pattern.matches("export-42"));
/// assert!(!pattern.matches("export-x"));
/// let error = Pattern::new("job-[").unwrap_err();
/// assert!(error.to_string().contains("`[` at position 4 is never closed"));
/// # Ok::<(), cancelable::registry::PatternError>(())
/// ```
#[derive(Clone)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Literal(literal) => *literal == c,
            Token::AnyOne => true,
            Token::AnyRun => unreachable!("runs are matched by the caller"),
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) != *negated
            }
        }
    }
}

/// A name pattern that does not parse: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    position: usize,
    reason: &'static str,
}

impl PatternError {
    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The character position (from 0) of the problem.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid name pattern {:?}: {}; patterns use `*`, `?`, `[a-z]`, `[!a-z]` and \
             `\\` to escape, e.g. \"export-*\"",
            self.pattern,
            self.reason.replace("{pos}", &self.position.to_string()),
        )
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// Parses a glob pattern; `Err` says what is wrong and where.
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let error = |position, reason| PatternError {
            pattern: pattern.to_owned(),
            position,
            reason,
        };
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    // Consecutive stars match what one star matches.
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                }
                '?' => tokens.push(Token::AnyOne),
                '\\' => {
                    i += 1;
                    let Some(&escaped) = chars.get(i) else {
                        return Err(error(
                            i - 1,
                            "`\\` at position {pos}, the end, escapes nothing",
                        ));
                    };
                    tokens.push(Token::Literal(escaped));
                }
                '[' => {
                    let open = i;
                    i += 1;
                    let negated = chars.get(i) == Some(&'!');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err(error(open, "`[` at position {pos} is never closed"));
                        };
                        if c == ']' {
                            break;
                        }
                        let low = if c == '\\' {
                            i += 1;
                            *chars.get(i).ok_or_else(|| {
                                error(open, "`[` at position {pos} is never closed")
                            })?
                        } else {
                            c
                        };
                        if chars.get(i + 1) == Some(&'-')
                            && chars.get(i + 2).is_some_and(|c| *c != ']')
                        {
                            let high = chars[i + 2];
                            if high < low {
                                return Err(error(
                                    i,
                                    "the range at position {pos} goes from high to low: write `[a-z]`, not `[z-a]`",
                                ));
                            }
                            ranges.push((low, high));
                            i += 3;
                        } else {
                            ranges.push((low, low));
                            i += 1;
                        }
                    }
                    if ranges.is_empty() {
                        return Err(error(
                            open,
                            "the set at position {pos} is empty and would match nothing; write `\\[\\]` to match the brackets",
                        ));
                    }
                    tokens.push(Token::Class { negated, ranges });
                }
                c => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        Ok(Pattern {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// Whether the whole of `name` matches.
    ///
    /// Linear in the name for each star, with backtracking to the last star
    /// only: never exponential.
    pub fn matches(&self, name: &str) -> bool {
        let tokens = &self.tokens;
        let first_char = |at: usize| name[at..].chars().next().unwrap_or('\0');
        // `t` is a byte offset into `name`, `p` an index into `tokens`.
        let (mut t, mut p) = (0, 0);
        // Where to resume after the last star: (token after it, text offset).
        let mut resume: Option<(usize, usize)> = None;
        while t < name.len() {
            let c = first_char(t);
            match tokens.get(p) {
                Some(Token::AnyRun) => {
                    resume = Some((p + 1, t));
                    p += 1;
                }
                Some(token) if token.matches_one(c) => {
                    p += 1;
                    t += c.len_utf8();
                }
                _ => match resume {
                    Some((after_star, from)) => {
                        let next = from + first_char(from).len_utf8();
                        p = after_star;
                        t = next;
                        resume = Some((after_star, next));
                    }
                    None => return false,
                },
            }
        }
        tokens[p..].iter().all(|token| *token == Token::AnyRun)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        Pattern::new(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;
    use proptest::prelude::*;

    /// A slow, obviously right matcher to compare against.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
            Some(('?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    fn escape(text: &str) -> String {
        text.chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect()
    }

    #[test]
    fn classes_ranges_and_negation() {
        let pattern = Pattern::new("job-[a-c0-9]?[!x]").unwrap();
        assert!(pattern.matches("job-b7y"));
        assert!(pattern.matches("job-77z"));
        assert!(!pattern.matches("job-d7y"));
        assert!(!pattern.matches("job-b7x"));
        assert!(Pattern::new(r"a\*").unwrap().matches("a*"));
        assert!(!Pattern::new(r"a\*").unwrap().matches("ab"));
        assert!(Pattern::new("").unwrap().matches(""));
        assert!(!Pattern::new("").unwrap().matches("a"));
        assert!(Pattern::new("[]]").is_err());
        assert!(Pattern::new("[-]").unwrap().matches("-"));
        assert!(Pattern::new("[a-]").unwrap().matches("-"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (pattern, says) in [
            ("job-[", "never closed"),
            ("job\\", "escapes nothing"),
            ("[z-a]", "from high to low"),
            ("[]", "is empty"),
            ("[!]", "is empty"),
        ] {
            let error = Pattern::new(pattern).unwrap_err();
            assert!(error.to_string().contains(says), "{pattern}: {error}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_on_stars_and_marks(
            pattern in "[ab*?]{0,8}",
            text in "[ab]{0,10}",
        ) {
            let chars: Vec<char> = pattern.chars().collect();
            let text_chars: Vec<char> = text.chars().collect();
            prop_assert_eq!(
                Pattern::new(&pattern).unwrap().matches(&text),
                reference(&chars, &text_chars)
            );
        }

        #[test]
        fn an_escaped_name_matches_exactly_itself(name in ".{0,12}", other in ".{0,12}") {
            let pattern = Pattern::new(&escape(&name)).unwrap();
            prop_assert!(pattern.matches(&name));
            prop_assert_eq!(pattern.matches(&other), other == name);
        }

        #[test]
        fn stars_inserted_anywhere_still_match(name in "[a-z-]{0,12}", cuts in proptest::collection::vec(0usize..13, 0..4)) {
            let mut pattern: Vec<char> = name.chars().collect();
            let mut cuts = cuts;
            cuts.sort_unstable();
            for cut in cuts.into_iter().rev() {
                pattern.insert(cut.min(pattern.len()), '*');
            }
            let pattern: String = pattern.into_iter().collect();
            prop_assert!(Pattern::new(&pattern).unwrap().matches(&name));
        }

        #[test]
        fn never_panics(pattern in ".{0,16}", name in ".{0,16}") {
            if let Ok(pattern) = Pattern::new(&pattern) {
                let _ = pattern.matches(&name);
            }
        }
    }
}
