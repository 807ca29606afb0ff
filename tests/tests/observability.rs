//! The `tracing` span and events of a scope, and the `serde` form of an
//! operation's context.

use std::future::pending;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cancelable::{CancelReason, CancelScope, OperationStatus};
use cancelable_tests::on_every_backend;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What the test subscriber saw: one line per span or event, with fields.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A minimal subscriber recording span creations and events as text.
struct Recorder {
    next_id: AtomicU64,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(format!("span {}", span.metadata().name()));
        span.record(&mut fields);
        SEEN.lock().unwrap().push(fields.0);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields("event".into());
        event.record(&mut fields);
        SEEN.lock().unwrap().push(fields.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn install_recorder() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Recorder {
            next_id: AtomicU64::new(1),
        })
        .expect("no other global subscriber in this binary");
    });
}

/// A name no other test uses, so parallel tests do not mix their lines.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

on_every_backend! {
    async fn a_cancelled_scope_leaves_a_span_and_an_event_with_its_reason() {
        install_recorder();
        let name = unique_name("traced");
        let cancelled = CancelScope::new()
            .name(name.clone())
            .timeout(Duration::from_millis(1))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(cancelled.is_timeout());
        let seen = SEEN.lock().unwrap().clone();
        let span = seen
            .iter()
            .position(|line| line.starts_with("span cancel_scope") && line.contains(&name))
            .unwrap_or_else(|| panic!("no span for {name} in {seen:#?}"));
        // The span's id field ties the cancel event to it.
        let id = seen[span]
            .split_whitespace()
            .find_map(|field| field.strip_prefix("id="))
            .expect("the span records the operation id")
            .to_owned();
        assert_eq!(id, cancelled.operation_id().unwrap().to_string());
        assert!(
            seen[span..]
                .iter()
                .any(|line| line.contains("scope cancelled") && line.contains("reason=timeout")),
            "no cancel event with its reason after {}: {seen:#?}",
            seen[span]
        );
    }

    async fn a_panicking_scope_callback_is_reported_as_an_error_event() {
        install_recorder();
        let marker = unique_name("callback-panic");
        let message = marker.clone();
        let cancelled = CancelScope::new()
            .timeout(Duration::from_millis(1))
            .on_cancel(move |_| panic!("{message}"))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(cancelled.is_timeout(), "the panic was contained");
        let seen = SEEN.lock().unwrap().clone();
        assert!(
            seen.iter().any(|line| line.starts_with("event")
                && line.contains("an on_cancel callback panicked")
                && line.contains(&marker)),
            "no error event for the panic: {seen:#?}"
        );
    }

    async fn a_panicking_condition_predicate_is_reported_as_an_error_event() {
        install_recorder();
        let marker = unique_name("predicate-panic");
        let message = marker.clone();
        let cancelled = CancelScope::new()
            .condition(move || -> bool { panic!("{message}") }, Duration::from_millis(10))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(matches!(cancelled.reason(), CancelReason::Error(_)), "{cancelled}");
        let seen = SEEN.lock().unwrap().clone();
        assert!(
            seen.iter().any(|line| line.starts_with("event")
                && line.contains("a condition predicate panicked")
                && line.contains(&marker)),
            "no error event for the panic: {seen:#?}"
        );
    }

    async fn context_serializes_with_status_and_reason() {
        let scope = CancelScope::new()
            .name("serialized")
            .metadata("tenant", "acme")
            .timeout(Duration::from_millis(1));
        let handle = scope.handle();
        scope.run(pending::<()>()).await.unwrap_err();
        let context = handle.context();
        assert_eq!(context.status, OperationStatus::Cancelled);
        let json = serde_json::to_value(&context).unwrap();
        assert_eq!(json["name"], "serialized");
        assert_eq!(json["status"], "Cancelled");
        assert_eq!(json["reason"], "Timeout");
        assert_eq!(json["metadata"]["tenant"], "acme");
        assert!(json["elapsed"].is_object());
    }
}
