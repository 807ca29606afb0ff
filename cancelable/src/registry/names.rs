//! The operation names a registry counts under their own name, in its
//! statistics and in the metrics' `operation` label: the first
//! [`COUNTED_NAMES`] distinct names it sees; operations with any other
//! name are counted under [`OTHER_NAMES`].
//!
//! Names can come from outside the program (the request layer names a
//! request by its path when no route matched): without a bound, traffic
//! with ever new paths would grow the statistics and the metrics
//! recorder's label set without end. Names are at most 1 KiB already (the
//! scope cuts them).
//!
//! # Invariants
//!
//! 1. A name once counted stays counted, and the table only grows, up to
//!    [`COUNTED_NAMES`]: the same name gets the same answer at an
//!    operation's start and at its exit (a gauge goes up and down under
//!    one label).
//! 2. Asked only off the hot path: when a shard's statistics do not know
//!    the name yet, and for the metrics (feature `metrics`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::RwLock;

use crate::sync::{read, write};

/// How many distinct operation names a registry counts under their own
/// name in its [`statistics`](super::Registry::statistics) and its
/// metrics: the first 1,000 it sees. Operations with any other name are
/// counted under [`OTHER_NAMES`].
pub const COUNTED_NAMES: usize = 1_000;

/// The name under which a registry counts operations whose name came
/// after the first [`COUNTED_NAMES`] distinct ones (in its statistics'
/// `by_name` and in the metrics' `operation` label).
pub const OTHER_NAMES: &str = "(other names)";

/// The names a registry counts under their own name.
#[derive(Default)]
pub(crate) struct CountedNames {
    names: RwLock<HashSet<Box<str>>>,
}

impl CountedNames {
    /// The name `name` is counted under: itself while it is one of the
    /// first [`COUNTED_NAMES`] distinct names, else [`OTHER_NAMES`].
    pub(crate) fn counted(&self, name: Cow<'static, str>) -> Cow<'static, str> {
        if read(&self.names).contains(name.as_ref()) {
            return name;
        }
        let mut names = write(&self.names);
        if names.contains(name.as_ref()) {
            return name;
        }
        if names.len() < COUNTED_NAMES {
            names.insert(name.as_ref().into());
            return name;
        }
        Cow::Borrowed(OTHER_NAMES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_names_count_under_their_own_and_stay_so() {
        let names = CountedNames::default();
        for n in 0..COUNTED_NAMES {
            assert_eq!(
                names.counted(Cow::Owned(format!("op-{n}"))),
                format!("op-{n}")
            );
        }
        assert_eq!(names.counted(Cow::Borrowed("late")), OTHER_NAMES);
        assert_eq!(names.counted(Cow::Borrowed("op-7")), "op-7");
        assert_eq!(names.counted(Cow::Borrowed("late")), OTHER_NAMES);
    }
}
