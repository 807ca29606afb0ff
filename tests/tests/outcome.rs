//! The outcome rule: an `Err` is the cancellation only when the code saw
//! it (a checkpoint, a cancellation-aware wait or a nested scope returned
//! it); any other `Err` is the code's own failure — in a scope's status
//! and the registry's history alike (groups: `group_ported.rs`).

use std::time::Duration;

use cancelable::registry::{Filter, Registry};
use cancelable::{checkpoint, CancelScope, Cancelled, OperationStatus};
use cancelable_tests::on_every_backend;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

on_every_backend! {
    async fn a_body_failing_on_its_own_in_a_cancelled_scope_is_failed() {
        let registry = Registry::builder().build().unwrap();
        let scope = CancelScope::new().name("own").register_in(&registry);
        let handle = scope.handle();
        handle.cancel();
        let outcome: Result<(), BoxError> = scope.try_run(async { Err("disk full".into()) }).await;
        assert_eq!(outcome.unwrap_err().to_string(), "disk full");
        assert_eq!(handle.status(), OperationStatus::Failed);
        assert_eq!(registry.history(1, &Filter::new())[0].status, OperationStatus::Failed);
    }

    async fn a_body_failing_after_a_checkpoint_saw_the_cancellation_is_cancelled() {
        let registry = Registry::builder().build().unwrap();
        let scope = CancelScope::new().name("saw").register_in(&registry);
        let handle = scope.handle();
        handle.cancel();
        let outcome: Result<(), BoxError> = scope
            .try_run(async {
                checkpoint().await.map_err(|_| "stopped")?;
                Ok(())
            })
            .await;
        assert_eq!(outcome.unwrap_err().to_string(), "stopped");
        assert_eq!(handle.status(), OperationStatus::Cancelled);
        assert_eq!(registry.history(1, &Filter::new())[0].status, OperationStatus::Cancelled);
    }

    // A nested scope that ends with its parent's cancellation hands it to
    // the code around it: that code saw it.
    async fn an_error_from_a_nested_scopes_parent_cancellation_is_cancelled() {
        let outer = CancelScope::new().timeout(Duration::from_millis(5));
        let handle = outer.handle();
        let outcome: Result<(), BoxError> = outer
            .try_run(async {
                let inner = CancelScope::new()
                    .run(std::future::pending::<()>())
                    .await;
                inner.map_err(|cancelled: Cancelled| format!("inner: {cancelled}"))?;
                Ok(())
            })
            .await;
        assert!(outcome.unwrap_err().to_string().starts_with("inner: "));
        assert_eq!(handle.status(), OperationStatus::Cancelled);
    }
}
