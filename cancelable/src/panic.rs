//! One way to contain a panic of user code: callbacks, progress handlers
//! and condition predicates run through [`contain`], which catches the
//! panic, extracts its message and reports it (a `tracing` error event when
//! that feature is on), so that a panic is handled the same way wherever
//! user code runs inside the crate.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A panic of user code that [`contain`] caught.
#[derive(Clone, Debug)]
pub(crate) struct Panicked {
    message: String,
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `run`, containing a panic: `Err` with its message if it panicked.
///
/// `what` names the user code for the report, such as `"an on_cancel
/// callback"`. The panic has already been printed by the panic hook; with
/// the `tracing` feature an error event records it too.
pub(crate) fn contain<T>(what: &'static str, run: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(run)).map_err(|payload| {
        let panicked = Panicked {
            message: message(payload),
        };
        #[cfg(feature = "tracing")]
        tracing::error!(panic = %panicked, "{what} panicked; the panic was contained");
        #[cfg(not(feature = "tracing"))]
        let _ = what;
        panicked
    })
}

/// The text of a panic payload, as the default panic hook would print it.
fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload_message(&*payload)
}

/// The text of a panic payload that is to be resumed afterwards.
pub(crate) fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
