//! [`OperationRecorder`]: the life of scopes as a list of events, and
//! assertions on their order.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use crate::CancelScope;

/// What happened to a recorded scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// The scope started (its first poll): `on_start`.
    Start,
    /// The body reported progress: `on_progress`.
    Progress,
    /// The scope ended cancelled: `on_cancel`.
    Cancel,
    /// The body completed: `on_complete`.
    Complete,
    /// The body of `try_run` returned an error of its own: `on_error`.
    Error,
}

impl EventKind {
    fn word(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Progress => "progress",
            EventKind::Cancel => "cancel",
            EventKind::Complete => "complete",
            EventKind::Error => "error",
        }
    }
}

/// One recorded event: what happened, to which operation, with details.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The scope's name, or `#id` for a scope without one.
    pub operation: String,
    /// The progress message, the cancellation (its `Display`), or the
    /// error text if the scope keeps it; empty otherwise.
    pub detail: String,
}

impl Event {
    /// `"<kind> <operation>"`, as [`OperationRecorder::assert_order`]
    /// matches it: `"start load"`, `"progress load"`, `"cancel load"`,
    /// `"complete load"`, `"error load"`.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.word(), self.operation)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.word(), self.operation)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Records the start, progress, cancellation and completion of the scopes
/// it is given, through their callbacks, and asserts on their order.
///
/// Clones share the record: hand one to each scope, nested or on other
/// tasks. Events are recorded in the order the callbacks run.
///
/// ```
/// use std::time::Duration;
/// use cancelable::testing::OperationRecorder;
/// use cancelable::{report_progress, CancelScope};
///
/// # futures::executor::block_on(async {
/// let recorder = OperationRecorder::new();
/// let inner = recorder.record(CancelScope::new().name("inner").timeout(Duration::from_millis(5)));
/// recorder
///     .record(CancelScope::new().name("outer"))
///     .run(async {
///         report_progress(0.5, "half way");
///         let _ = inner.run(std::future::pending::<()>()).await;
///     })
///     .await
///     .unwrap();
/// recorder.assert_order(&["start outer", "progress outer", "cancel inner", "complete outer"]);
/// recorder.assert_events(&[
///     "start outer",
///     "progress outer",
///     "start inner",
///     "cancel inner",
///     "complete outer",
/// ]);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct OperationRecorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl fmt::Debug for OperationRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationRecorder")
            .field("events", &self.events())
            .finish()
    }
}

impl OperationRecorder {
    /// An empty record.
    pub fn new() -> Self {
        OperationRecorder::default()
    }

    /// `scope` with callbacks that record its events here (added to the
    /// callbacks it already has).
    pub fn record(&self, scope: CancelScope) -> CancelScope {
        // Known from the start callback on; progress callbacks carry no
        // name of their own.
        let label: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let fallback = format!("#{}", scope.handle().id());
        let operation = {
            let label = label.clone();
            move || label.get().cloned().unwrap_or_else(|| fallback.clone())
        };
        let on_start = {
            let events = self.clone();
            let label = label.clone();
            move |context: &crate::OperationContext| {
                let name = context
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("#{}", context.id));
                let name = label.get_or_init(|| name).clone();
                events.push(EventKind::Start, name, String::new());
            }
        };
        let on_progress = {
            let events = self.clone();
            let operation = operation.clone();
            move |progress: &crate::Progress| {
                events.push(EventKind::Progress, operation(), progress.message.clone())
            }
        };
        let on_cancel = {
            let events = self.clone();
            let operation = operation.clone();
            move |cancelled: &crate::Cancelled| {
                events.push(EventKind::Cancel, operation(), cancelled.to_string())
            }
        };
        let on_complete = {
            let events = self.clone();
            let operation = operation.clone();
            move |_: &crate::OperationContext| {
                events.push(EventKind::Complete, operation(), String::new())
            }
        };
        let on_error = {
            let events = self.clone();
            move |context: &crate::OperationContext| {
                events.push(
                    EventKind::Error,
                    operation(),
                    context.error.clone().unwrap_or_default(),
                )
            }
        };
        scope
            .on_start(on_start)
            .on_progress(on_progress)
            .on_cancel(on_cancel)
            .on_complete(on_complete)
            .on_error(on_error)
    }

    fn push(&self, kind: EventKind, operation: String, detail: String) {
        self.lock().push(Event {
            kind,
            operation,
            detail,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        crate::sync::lock(&*self.events)
    }

    /// The events recorded so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// The [labels](Event::label) of the events recorded so far.
    pub fn labels(&self) -> Vec<String> {
        self.lock().iter().map(Event::label).collect()
    }

    /// How many events of `kind` were recorded so far.
    pub fn count(&self, kind: EventKind) -> usize {
        self.lock()
            .iter()
            .filter(|event| event.kind == kind)
            .count()
    }

    /// Forgets the events recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Asserts that the events labelled `expected` (see [`Event::label`])
    /// were recorded in this order; other events may come between them.
    ///
    /// # Panics
    ///
    /// If one is missing or out of order: the message names it and lists
    /// every event recorded.
    #[track_caller]
    pub fn assert_order(&self, expected: &[&str]) {
        let events = self.events();
        let mut from = 0;
        for (position, wanted) in expected.iter().enumerate() {
            match events[from..]
                .iter()
                .position(|event| event.label() == *wanted)
            {
                Some(found) => from += found + 1,
                None => {
                    let context = match position {
                        0 => String::new(),
                        _ => format!(" after `{}`", expected[position - 1]),
                    };
                    let anywhere = events.iter().any(|event| event.label() == *wanted);
                    panic!(
                        "expected `{wanted}`{context}, but it {}\nexpected order: {expected:?}\n{}",
                        if anywhere {
                            "was recorded earlier"
                        } else {
                            "was never recorded"
                        },
                        listing(&events)
                    );
                }
            }
        }
    }

    /// Asserts that exactly the events labelled `expected` were recorded,
    /// in this order.
    ///
    /// # Panics
    ///
    /// If the labels differ: the message shows both lists.
    #[track_caller]
    pub fn assert_events(&self, expected: &[&str]) {
        let events = self.events();
        let labels: Vec<String> = events.iter().map(Event::label).collect();
        if labels != expected {
            panic!(
                "the recorded events differ\nexpected: {expected:?}\nrecorded: {labels:?}\n{}",
                listing(&events)
            );
        }
    }
}

fn listing(events: &[Event]) -> String {
    if events.is_empty() {
        return "no events were recorded".to_owned();
    }
    let mut out = String::from("recorded events:");
    for (number, event) in events.iter().enumerate() {
        out.push_str(&format!("\n  {}. {event}", number + 1));
    }
    out
}
