//! A request scope's operation name, `"METHOD route"` (`GET /users/{id}`),
//! shared instead of formatted for every request.
//!
//! The first [`KEPT`] distinct names of the process, each at most
//! [`KEPT_LEN`] bytes, are made once and kept for the life of the process
//! (`&'static str`): a request whose name is one of them costs a look-up
//! in its thread's table, and every reader of the name (errors, logs, the
//! registry's statistics and history) shares the one copy. Any other name
//! is formatted for its request, as before: routes (or, without axum's
//! matched path, request paths) that come from outside cannot make the
//! kept names grow past `KEPT × KEPT_LEN` (256 KiB).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::context::NameHasher;
use crate::sync::lock;

/// How many distinct names the process keeps.
const KEPT: usize = 1024;
/// The longest name kept, in bytes.
const KEPT_LEN: usize = 256;

/// Every name kept so far (at most [`KEPT`]).
static KEPT_NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
/// Set once [`KEPT`] names are kept: the others are formatted without
/// taking the lock.
static FULL: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The kept names this thread has used, by route: a request finds
    /// its name without a lock. Bounded by the kept names.
    static THREAD_NAMES: RefCell<HashMap<&'static str, Vec<&'static str>, BuildHasherDefault<NameHasher>>> =
        RefCell::new(HashMap::default());
    /// The kept name this thread used last: a server's requests mostly
    /// repeat a route, and comparing the text costs less than hashing it.
    static LAST_NAME: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// `true` if `name` is `"{method} {route}"`.
fn is_name_of(name: &str, method: &str, route: &str) -> bool {
    name.len() == method.len() + 1 + route.len()
        && name.as_bytes()[method.len()] == b' '
        && name.starts_with(method)
        && name.ends_with(route)
}

/// The operation name of a `method` request to `route`: a kept name,
/// else one formatted for this request.
pub(super) fn operation_name(method: &str, route: &str) -> Cow<'static, str> {
    let len = method.len() + 1 + route.len();
    if len > KEPT_LEN {
        return Cow::Owned(format(method, route));
    }
    if let Ok(Some(last)) = LAST_NAME.try_with(Cell::get) {
        if is_name_of(last, method, route) {
            return Cow::Borrowed(last);
        }
    }
    let found = THREAD_NAMES.try_with(|names| {
        let known = names.borrow().get(route).and_then(|kept| {
            kept.iter()
                .find(|name| name.len() == len && name.starts_with(method))
                .copied()
        });
        if known.is_some() {
            return known;
        }
        let name = keep(method, route)?;
        names
            .borrow_mut()
            .entry(&name[method.len() + 1..])
            .or_default()
            .push(name);
        Some(name)
    });
    match found {
        Ok(Some(name)) => {
            let _ = LAST_NAME.try_with(|last| last.set(Some(name)));
            Cow::Borrowed(name)
        }
        _ => Cow::Owned(format(method, route)),
    }
}

/// The route part of a name [`operation_name`] returned, borrowed when the
/// name is a kept one: the request's path, when it is its route, costs no
/// copy either.
#[cfg(feature = "registry")]
#[allow(
    clippy::ptr_arg,
    reason = "only a borrowed name is a kept one: the variant matters"
)]
pub(super) fn route_of(name: &Cow<'static, str>, method: &str) -> Option<&'static str> {
    match name {
        Cow::Borrowed(name) => name.get(method.len() + 1..),
        Cow::Owned(_) => None,
    }
}

/// The kept name of `method` and `route`, made (and kept) now if the
/// process keeps fewer than [`KEPT`]; `None` past that.
fn keep(method: &str, route: &str) -> Option<&'static str> {
    if FULL.load(Ordering::Relaxed) {
        return None;
    }
    let name = format(method, route);
    let mut kept = lock(&KEPT_NAMES);
    let kept = kept.get_or_insert_with(HashSet::new);
    if let Some(name) = kept.get(name.as_str()) {
        return Some(name);
    }
    if kept.len() >= KEPT {
        FULL.store(true, Ordering::Relaxed);
        return None;
    }
    let name: &'static str = Box::leak(name.into_boxed_str());
    kept.insert(name);
    Some(name)
}

fn format(method: &str, route: &str) -> String {
    let mut name = String::with_capacity(method.len() + 1 + route.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(route);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the process-wide bound is filled at its end.
    #[test]
    fn names_are_kept_up_to_the_bound_then_formatted() {
        let first = operation_name("GET", "/names-test/{id}");
        let second = operation_name("GET", "/names-test/{id}");
        assert_eq!(first, "GET /names-test/{id}");
        match (&first, &second) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(*a, *b)),
            _ => panic!("a short name is kept"),
        }
        #[cfg(feature = "registry")]
        assert_eq!(route_of(&first, "GET"), Some("/names-test/{id}"));
        // Another method on the same route is another name.
        assert_eq!(
            operation_name("POST", "/names-test/{id}"),
            "POST /names-test/{id}"
        );
        // The thread's last name answers only for its own method and route.
        assert_eq!(operation_name("GET", "/names-test/{id}"), first);
        assert_eq!(
            operation_name("GET", "/names-test/{ix}"),
            "GET /names-test/{ix}"
        );
        assert_eq!(operation_name("GET", "/names-test"), "GET /names-test");
        // From another thread: the same kept text.
        let other = std::thread::spawn(|| operation_name("GET", "/names-test/{id}"))
            .join()
            .unwrap();
        assert!(matches!(other, Cow::Borrowed(name) if std::ptr::eq(name, &*first)));

        // Too long to keep: formatted each time.
        let route = format!("/{}", "x".repeat(KEPT_LEN));
        let name = operation_name("GET", &route);
        assert!(matches!(name, Cow::Owned(_)));
        assert_eq!(name, format!("GET {route}"));
        #[cfg(feature = "registry")]
        assert_eq!(route_of(&name, "GET"), None);

        // Past the bound, distinct routes are formatted, not kept.
        for n in 0..=KEPT {
            let _ = operation_name("GET", &format!("/names-test/{n}"));
        }
        let late = operation_name("GET", "/names-test/late");
        assert!(matches!(late, Cow::Owned(_)));
        assert_eq!(late, "GET /names-test/late");
        assert_eq!(lock(&KEPT_NAMES).as_ref().map(HashSet::len), Some(KEPT));
        // A kept name stays kept.
        assert!(matches!(
            operation_name("GET", "/names-test/{id}"),
            Cow::Borrowed(_)
        ));
    }
}
