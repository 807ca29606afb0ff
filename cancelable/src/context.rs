//! What a running operation looks like from outside: status, progress,
//! timestamps, reason and metadata.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
#[cfg(any(feature = "registry", feature = "tower"))]
use std::hash::Hasher;
use std::time::{Duration, Instant, SystemTime};

use crate::spare;
use crate::CancelReason;

/// Where an operation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
#[repr(u8)]
pub enum OperationStatus {
    /// Built but not yet polled.
    Pending = 0,
    /// Its body is running.
    Running = 1,
    /// The body finished with a value (or an `Ok`).
    Completed = 2,
    /// A source cancelled it, or the body returned an error after a
    /// checkpoint had observed the cancellation.
    Cancelled = 3,
    /// The body returned an `Err` of its own, or panicked.
    Failed = 4,
}

impl OperationStatus {
    /// The status as stored in a scope's atomic (see [`from_u8`](Self::from_u8)).
    pub(crate) const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The status stored as `value` by [`as_u8`](Self::as_u8), or `None`
    /// for a value no status encodes to.
    pub(crate) const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => OperationStatus::Pending,
            1 => OperationStatus::Running,
            2 => OperationStatus::Completed,
            3 => OperationStatus::Cancelled,
            4 => OperationStatus::Failed,
            _ => return None,
        })
    }

    /// `true` for `Completed`, `Cancelled` and `Failed`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            OperationStatus::Completed | OperationStatus::Cancelled | OperationStatus::Failed
        )
    }
}

impl fmt::Display for OperationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationStatus::Pending => "pending",
            OperationStatus::Running => "running",
            OperationStatus::Completed => "completed",
            OperationStatus::Cancelled => "cancelled",
            OperationStatus::Failed => "failed",
        })
    }
}

/// A progress report from inside a scope (see [`report_progress`](crate::report_progress)).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Progress {
    /// How far along, from 0.0 to 1.0, if known.
    pub fraction: Option<f64>,
    /// What is happening, in words.
    pub message: String,
    /// Key/value details given with the report (see
    /// [`report_progress_with`](crate::report_progress_with)).
    pub metadata: BTreeMap<String, String>,
}

impl Progress {
    /// A report with `fraction` clamped to `0.0..=1.0` (a NaN counts as
    /// unknown) — what [`report_progress`](crate::report_progress) hands to
    /// the `on_progress` callbacks; build one to test a callback.
    ///
    /// ```
    /// use cancelable::Progress;
    ///
    /// let progress = Progress::new(Some(1.5), "done".to_owned());
    /// assert_eq!(progress.fraction, Some(1.0));
    /// assert_eq!(Progress::new(Some(f64::NAN), String::new()).fraction, None);
    /// ```
    pub fn new(fraction: Option<f64>, message: String) -> Self {
        Progress {
            fraction: fraction
                .filter(|fraction| !fraction.is_nan())
                .map(|fraction| fraction.clamp(0.0, 1.0)),
            message,
            metadata: BTreeMap::new(),
        }
    }

    /// The report with `metadata` attached (see
    /// [`report_progress_with`](crate::report_progress_with)).
    pub(crate) fn with_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A snapshot of an operation: one scope's identity, status and progress.
///
/// Get one from [`ScopeHandle::context`](crate::ScopeHandle::context) or in
/// the `on_complete` / `on_error` callbacks.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OperationContext {
    /// Unique id within the process; not contiguous (each thread hands out
    /// ids from blocks of its own: see [`ScopeHandle::id`](crate::ScopeHandle::id)).
    pub id: u64,
    /// The scope's name, if it has one.
    pub name: Option<String>,
    /// The id of the enclosing scope, if any.
    pub parent_id: Option<u64>,
    /// Where the operation is in its life.
    pub status: OperationStatus,
    /// When the body started (wall clock), if it has.
    pub started_at: Option<SystemTime>,
    /// When it finished (wall clock), if it has.
    pub ended_at: Option<SystemTime>,
    /// How long it ran, or has run so far.
    pub elapsed: Option<Duration>,
    /// The last progress reported.
    pub progress: Option<Progress>,
    /// Why it was cancelled, if it was.
    pub reason: Option<CancelReason>,
    /// Metadata given with [`CancelScope::metadata`](crate::CancelScope::metadata).
    pub metadata: BTreeMap<String, String>,
    /// The text of the body's own error, once it failed, if the scope
    /// keeps it (see [`ScopeTryRun::keep_error_text`](crate::ScopeTryRun::keep_error_text)).
    pub error: Option<String>,
}

/// The mutable part of a scope's context, kept behind the scope's lock.
#[derive(Default)]
pub(crate) struct ContextData {
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) started: Option<Instant>,
    pub(crate) ended: Option<Instant>,
    /// Boxed: most scopes never report progress nor carry metadata. The
    /// box comes from, and goes back to, a per-thread pool
    /// ([`ExtraBox`]).
    pub(crate) extra: Option<ExtraBox>,
}

/// What few scopes use: progress, its handlers, metadata.
#[derive(Default)]
pub(crate) struct ContextExtra {
    pub(crate) progress: Option<Progress>,
    pub(crate) progress_callbacks: Vec<ProgressCallback>,
    pub(crate) metadata: Metadata,
    /// The text of the body's error, when it failed and the text is kept.
    pub(crate) error: Option<String>,
    /// The scope's grace period, and when it ends once the scope saw its
    /// cancellation (see `CancelScope::grace`).
    pub(crate) grace: Option<(std::time::Duration, Option<Instant>)>,
    /// The grace is held by a layer that ends it at its recorded end (a
    /// task group, `CancelScope::held_grace`).
    pub(crate) grace_held: bool,
}

pub(crate) type ProgressCallback = std::sync::Arc<dyn Fn(&Progress) + Send + Sync>;

/// A boxed [`ContextExtra`] from a small per-thread pool: made by
/// `Default` (a pooled box if the thread has one), handed back emptied
/// when the [`ContextData`] holding it drops (a scope's state reset for
/// reuse, or freed). A scope given metadata or a grace on every run (a
/// registered request: its method and path) allocates no box once the
/// pool is warm. Reads and writes go through `Deref`, as to the box; one
/// pointer wide, as the box.
pub(crate) struct ExtraBox(Box<ContextExtra>);

/// How many emptied [`ExtraBox`]es a thread keeps: enough for scopes
/// nested a few deep, little memory when idle.
const SPARE_EXTRAS: usize = 8;

thread_local! {
    // Boxed: the box is the scope's `extra`, reused whole.
    #[allow(clippy::vec_box)]
    static SPARE_EXTRA: RefCell<Vec<Box<ContextExtra>>> = const { RefCell::new(Vec::new()) };
}

impl Default for ExtraBox {
    #[inline]
    fn default() -> Self {
        ExtraBox(spare::take(&SPARE_EXTRA).unwrap_or_default())
    }
}

impl std::ops::Deref for ExtraBox {
    type Target = ContextExtra;

    #[inline]
    fn deref(&self) -> &ContextExtra {
        &self.0
    }
}

impl std::ops::DerefMut for ExtraBox {
    #[inline]
    fn deref_mut(&mut self) -> &mut ContextExtra {
        &mut self.0
    }
}

impl ExtraBox {
    /// Empties the box (its metadata buffer goes back to its own pool)
    /// and keeps it for the thread's next scope, if the pool has room.
    #[inline(never)]
    fn recycle(self) {
        let ExtraBox(mut emptied) = self;
        // The pattern names every field: a field added later does not
        // compile here until it is emptied too.
        let ContextExtra {
            progress,
            progress_callbacks,
            metadata,
            error,
            grace,
            grace_held,
        } = &mut *emptied;
        *progress = None;
        if !progress_callbacks.is_empty() {
            *progress_callbacks = Vec::new();
        }
        if !metadata.as_slice().is_empty() {
            *metadata = Metadata::default();
        }
        *error = None;
        *grace = None;
        *grace_held = false;
        spare::keep(&SPARE_EXTRA, emptied, SPARE_EXTRAS);
    }
}

impl Drop for ContextData {
    /// Its extras, if any, go back to the thread's pool ([`ExtraBox`]).
    #[inline]
    fn drop(&mut self) {
        if let Some(extra) = self.extra.take() {
            extra.recycle();
        }
    }
}

impl ContextData {
    pub(crate) fn snapshot(
        &self,
        id: u64,
        parent_id: Option<u64>,
        status: OperationStatus,
        reason: Option<CancelReason>,
        now: Instant,
    ) -> OperationContext {
        let wall = |at: Instant| SystemTime::now().checked_sub(now.saturating_duration_since(at));
        OperationContext {
            id,
            name: self.name.as_deref().map(str::to_owned),
            parent_id,
            status,
            started_at: self.started.and_then(wall),
            ended_at: self.ended.and_then(wall),
            elapsed: self
                .started
                .map(|started| self.ended.unwrap_or(now).saturating_duration_since(started)),
            progress: self.extra.as_ref().and_then(|extra| extra.progress.clone()),
            reason,
            metadata: self
                .extra
                .as_ref()
                .map(|extra| extra.metadata.to_map())
                .unwrap_or_default(),
            error: self.extra.as_ref().and_then(|extra| extra.error.clone()),
        }
    }
}

/// Hashes operation names eight bytes at a time: the tables keyed by
/// name (the registry's statistics, the services' kept request names).
#[cfg(any(feature = "registry", feature = "tower"))]
#[derive(Default)]
pub(crate) struct NameHasher(u64);

#[cfg(any(feature = "registry", feature = "tower"))]
impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().expect("chunks of eight bytes"));
            self.0 = (self.0.rotate_left(29) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        for &byte in words.remainder() {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// The most bytes a scope keeps of a name, a metadata key or a value.
const MAX_TEXT_LEN: usize = 1024;

/// `text`, cut to at most 1 KiB (at a character boundary, with `…` in
/// place of the rest); borrowed text within the bound stays borrowed.
#[inline]
pub(crate) fn bounded(text: Cow<'static, str>) -> Cow<'static, str> {
    if text.len() <= MAX_TEXT_LEN {
        return text;
    }
    cut(&text)
}

/// [`bounded`]'s rare case: `text`, longer than 1 KiB, cut.
#[cold]
fn cut(text: &str) -> Cow<'static, str> {
    let marker = '…';
    let mut end = MAX_TEXT_LEN - marker.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = String::with_capacity(end + marker.len_utf8());
    kept.push_str(&text[..end]);
    kept.push(marker);
    Cow::Owned(kept)
}

/// A scope's metadata: key/value pairs in the order given (a key given
/// again replaces its value), each at most 1 KiB ([`bounded`]). Keys and
/// values given as `&'static str` are kept borrowed: a scope whose
/// metadata is known at compile time copies none. Made into a map only
/// when read.
///
/// Its buffer comes from, and goes back to, a small per-thread pool
/// ([`SPARE_BUFFERS`]): a scope given metadata on every run (a registered
/// request's method and path) allocates none once the pool is warm.
#[derive(Clone, Default, Debug)]
pub(crate) struct Metadata(Vec<Pair>);

/// A metadata key and its value.
type Pair = (Cow<'static, str>, Cow<'static, str>);

/// How many emptied metadata buffers a thread keeps, and the largest
/// kept (in pairs): little memory, enough for scopes nested a few deep.
const SPARE_BUFFERS: usize = 8;
const SPARE_PAIRS: usize = 16;

thread_local! {
    static SPARE: RefCell<Vec<Vec<Pair>>> = const { RefCell::new(Vec::new()) };
}

impl Metadata {
    /// Sets `key` to `value`, both cut to 1 KiB.
    pub(crate) fn insert(&mut self, key: Cow<'static, str>, value: Cow<'static, str>) {
        let (key, value) = (bounded(key), bounded(value));
        match self.0.iter_mut().find(|(held, _)| *held == key) {
            Some((_, held)) => *held = value,
            None => self.push((key, value)),
        }
    }

    /// Appends a pair whose key is new, in a pooled buffer if this is the
    /// first.
    #[inline]
    fn push(&mut self, pair: Pair) {
        if self.0.capacity() == 0 {
            if let Some(buffer) = spare::take(&SPARE) {
                self.0 = buffer;
            }
        }
        self.0.push(pair);
    }

    /// [`insert`](Self::insert) with a key known at compile time (a
    /// layer's: short, never cut): the value alone is bounded, and the
    /// keys are compared by address first.
    #[cfg(all(feature = "tower", feature = "registry"))]
    #[inline]
    pub(crate) fn insert_static(&mut self, key: &'static str, value: Cow<'static, str>) {
        debug_assert!(key.len() <= MAX_TEXT_LEN, "a static metadata key is short");
        let value = bounded(value);
        let held = self.0.iter_mut().find(|(held, _)| match held {
            Cow::Borrowed(held) => std::ptr::eq(*held, key) || *held == key,
            Cow::Owned(held) => held == key,
        });
        match held {
            Some((_, held)) => *held = value,
            None => self.push((Cow::Borrowed(key), value)),
        }
    }

    /// The pairs, in the order given.
    pub(crate) fn as_slice(&self) -> &[(Cow<'static, str>, Cow<'static, str>)] {
        &self.0
    }

    /// The pairs, as a map of owned strings (the public views' form).
    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }
}

impl Drop for Metadata {
    /// The buffer, emptied, goes back to the thread's pool (if it has
    /// room and the buffer is not a large one).
    fn drop(&mut self) {
        let capacity = self.0.capacity();
        if capacity == 0 || capacity > SPARE_PAIRS {
            return;
        }
        self.0.clear();
        spare::keep(&SPARE, std::mem::take(&mut self.0), SPARE_BUFFERS);
    }
}

#[cfg(test)]
mod tests {
    use super::OperationStatus;

    #[test]
    fn metadata_keeps_the_order_given_and_the_last_value_of_a_key() {
        use super::Metadata;

        let mut metadata = Metadata::default();
        metadata.insert("b".into(), "1".into());
        metadata.insert("a".into(), String::from("2").into());
        metadata.insert("b".into(), "3".into());
        let pairs: Vec<(&str, &str)> = metadata
            .as_slice()
            .iter()
            .map(|(key, value)| (&**key, &**value))
            .collect();
        assert_eq!(pairs, [("b", "3"), ("a", "2")]);
        assert_eq!(metadata.to_map().len(), 2);
    }

    #[test]
    fn a_pooled_metadata_buffer_comes_back_empty() {
        use super::Metadata;

        let mut first = Metadata::default();
        first.insert("secret".into(), String::from("value").into());
        let buffer = first.as_slice().as_ptr();
        drop(first);
        // The next metadata on this thread reuses the buffer, with none of
        // the pairs it held.
        let mut second = Metadata::default();
        second.insert("method".into(), "GET".into());
        assert_eq!(second.as_slice().as_ptr(), buffer);
        assert_eq!(second.as_slice().len(), 1);
        assert_eq!(&*second.as_slice()[0].0, "method");
        // A clone owns a buffer of its own.
        let copy = second.clone();
        assert_ne!(copy.as_slice().as_ptr(), second.as_slice().as_ptr());
        assert_eq!(copy.to_map(), second.to_map());
    }

    #[test]
    fn a_pooled_context_extra_comes_back_empty() {
        use super::{ExtraBox, Progress};
        use std::time::{Duration, Instant};

        let mut first = ExtraBox::default();
        first
            .metadata
            .insert("secret".into(), String::from("value").into());
        first.progress = Some(Progress::new(Some(0.5), "halfway".to_owned()));
        first
            .progress_callbacks
            .push(std::sync::Arc::new(|_: &Progress| {}));
        first.error = Some("failed".to_owned());
        first.grace = Some((Duration::from_secs(1), Some(Instant::now())));
        first.grace_held = true;
        let place: *const super::ContextExtra = &*first;
        // Handed back when the context holding it drops.
        let mut data = super::ContextData::default();
        data.extra = Some(first);
        drop(data);
        // The next scope's extra on this thread is the same box, with
        // nothing of the last one's.
        let second = ExtraBox::default();
        assert!(std::ptr::eq(&*second, place));
        assert!(second.metadata.as_slice().is_empty());
        assert!(second.progress.is_none() && second.progress_callbacks.is_empty());
        assert!(second.error.is_none() && second.grace.is_none() && !second.grace_held);
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        use super::{bounded, MAX_TEXT_LEN};
        use std::borrow::Cow;

        assert!(matches!(bounded("short".into()), Cow::Borrowed("short")));
        let exact = "a".repeat(MAX_TEXT_LEN);
        assert_eq!(bounded(exact.clone().into()), exact);
        for filler in ["a", "é", "😀"] {
            let cut = bounded(filler.repeat(2 * MAX_TEXT_LEN).into());
            assert!(cut.len() <= MAX_TEXT_LEN, "{}", cut.len());
            assert!(cut.ends_with('…'));
            assert!(cut.starts_with(filler));
        }
    }

    #[test]
    fn every_status_decodes_to_itself_and_nothing_else_decodes() {
        let all = [
            OperationStatus::Pending,
            OperationStatus::Running,
            OperationStatus::Completed,
            OperationStatus::Cancelled,
            OperationStatus::Failed,
        ];
        for status in all {
            assert_eq!(OperationStatus::from_u8(status.as_u8()), Some(status));
        }
        assert_eq!(OperationStatus::from_u8(all.len() as u8), None);
        assert_eq!(OperationStatus::from_u8(u8::MAX), None);
    }
}
