//! Metrics of registered operations through the `metrics` facade: whatever
//! recorder the application installs (Prometheus, StatsD, …) receives them.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `cancelable_operations_started_total` | counter | `operation` |
//! | `cancelable_operations_completed_total` | counter | `operation` |
//! | `cancelable_operations_cancelled_total` | counter | `operation`, `reason` |
//! | `cancelable_operations_failed_total` | counter | `operation` |
//! | `cancelable_operations_stuck_total` | counter | `operation` |
//! | `cancelable_operations_live` | gauge | `operation` |
//! | `cancelable_operation_duration_seconds` | histogram | `operation` |
//! | `cancelable_cancellation_lag_seconds` | histogram | `operation` |
//!
//! The `operation` label is the operation's name for the first
//! [`COUNTED_NAMES`](super::COUNTED_NAMES) distinct names a registry sees,
//! then [`OTHER_NAMES`](super::OTHER_NAMES): the label set stays bounded
//! however many names come from outside.

use std::borrow::Cow;
use std::sync::Once;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Unit};

use super::record::Record;
use crate::{CancelReason, OperationStatus};

pub(crate) const STARTED: &str = "cancelable_operations_started_total";
pub(crate) const COMPLETED: &str = "cancelable_operations_completed_total";
pub(crate) const CANCELLED: &str = "cancelable_operations_cancelled_total";
pub(crate) const FAILED: &str = "cancelable_operations_failed_total";
pub(crate) const STUCK: &str = "cancelable_operations_stuck_total";
pub(crate) const LIVE: &str = "cancelable_operations_live";
pub(crate) const DURATION: &str = "cancelable_operation_duration_seconds";
pub(crate) const LAG: &str = "cancelable_cancellation_lag_seconds";

fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(STARTED, "Registered operations started");
        metrics::describe_counter!(COMPLETED, "Registered operations that completed");
        metrics::describe_counter!(
            CANCELLED,
            "Registered operations that ended cancelled, by reason"
        );
        metrics::describe_counter!(FAILED, "Registered operations whose body failed");
        metrics::describe_counter!(
            STUCK,
            "Registered operations still running a while after their cancellation"
        );
        metrics::describe_gauge!(LIVE, "Registered operations running now");
        metrics::describe_histogram!(
            DURATION,
            Unit::Seconds,
            "How long registered operations ran"
        );
        metrics::describe_histogram!(
            LAG,
            Unit::Seconds,
            "Time from a cancel request to the operation's exit"
        );
    });
}

/// The `operation` label: the name, or `(other names)` past the
/// registry's counted names (`names.rs`).
fn label(record: &Record) -> Cow<'static, str> {
    record.label.clone()
}

/// The `reason` label of a cancellation.
pub(crate) fn reason_label(reason: Option<&CancelReason>) -> &'static str {
    match reason {
        Some(CancelReason::Timeout) => "timeout",
        Some(CancelReason::Signal(_)) => "signal",
        Some(CancelReason::Condition) => "condition",
        Some(CancelReason::Manual) => "manual",
        Some(CancelReason::ClientDisconnected) => "client_disconnected",
        Some(CancelReason::Parent(_)) => "parent",
        Some(CancelReason::Error(_)) => "error",
        // Dropped mid-run without a cancel.
        None => "dropped",
    }
}

pub(crate) fn started(record: &Record) {
    describe();
    counter!(STARTED, "operation" => label(record)).increment(1);
    gauge!(LIVE, "operation" => label(record)).increment(1.0);
}

pub(crate) fn finished(
    record: &Record,
    status: OperationStatus,
    duration: Duration,
    lag: Option<Duration>,
    reason: Option<&CancelReason>,
) {
    let operation = label(record);
    let reason = match status {
        OperationStatus::Cancelled => reason,
        _ => None,
    };
    gauge!(LIVE, "operation" => operation.clone()).decrement(1.0);
    match status {
        OperationStatus::Completed => {
            counter!(COMPLETED, "operation" => operation.clone()).increment(1)
        }
        OperationStatus::Failed => counter!(FAILED, "operation" => operation.clone()).increment(1),
        _ => {
            counter!(CANCELLED, "operation" => operation.clone(), "reason" => reason_label(reason))
                .increment(1)
        }
    }
    histogram!(DURATION, "operation" => operation.clone()).record(duration.as_secs_f64());
    if let Some(lag) = lag {
        histogram!(LAG, "operation" => operation).record(lag.as_secs_f64());
    }
}

pub(crate) fn stuck(record: &Record) {
    counter!(STUCK, "operation" => label(record)).increment(1);
}
