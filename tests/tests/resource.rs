//! `Source::resource`: a threshold already crossed cancels the scope with
//! a message naming the resource and its reading; one that cannot be
//! crossed leaves the body alone; bad thresholds are an `Err` saying the
//! valid range.

use std::future::pending;
use std::time::Duration;

use cancelable::testing::assert_cancelled_within;
use cancelable::{CancelReason, CancelScope, ResourceLimits, Source};

/// Far above any check interval used here: the check runs on a blocking
/// thread of a machine shared by other builds.
const GENEROUS: Duration = Duration::from_secs(10);

fn often(limits: ResourceLimits) -> Source {
    Source::resource(limits.check_every(Duration::from_millis(20))).expect("valid thresholds")
}

fn error_of(limits: ResourceLimits) -> String {
    Source::resource(limits)
        .expect_err("the thresholds are invalid")
        .to_string()
}

cancelable_tests::on_every_backend! {
    async fn process_rss_above_one_byte_cancels_with_the_reading() {
        // Every process uses more than one byte.
        let cancelled = assert_cancelled_within(
            GENEROUS,
            CancelScope::new()
                .source(often(ResourceLimits::new().process_rss_bytes(1)))
                .run(pending::<()>()),
        )
        .await;
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        let message = cancelled.message().expect("the reading is reported");
        assert!(
            message.starts_with("process RSS is ") && message.ends_with("above the threshold of 1 B"),
            "{message}"
        );
        // The error's text carries it too, for logs.
        assert!(cancelled.to_string().contains("process RSS is "), "{cancelled}");
    }

    async fn system_memory_above_zero_percent_cancels_with_the_share_used() {
        let cancelled = CancelScope::new()
            .source(often(ResourceLimits::new().system_memory_percent(0.0)))
            .run(pending::<()>())
            .await
            .expect_err("some memory is always in use");
        let message = cancelled.message().expect("the reading is reported");
        assert!(message.starts_with("system memory use is "), "{message}");
        assert!(message.ends_with("above the threshold of 0%"), "{message}");
    }

    async fn disk_use_above_zero_bytes_names_the_path_and_its_mount_point() {
        let cancelled = CancelScope::new()
            .source(often(ResourceLimits::new().disk_used_bytes(env!("CARGO_MANIFEST_DIR"), 0)))
            .run(pending::<()>())
            .await
            .expect_err("the disk holding the sources is not empty");
        let message = cancelled.message().expect("the reading is reported");
        assert!(message.starts_with("disk use of "), "{message}");
        assert!(message.contains("(mounted at "), "{message}");
    }

    async fn thresholds_never_crossed_leave_the_body_alone() {
        // Checked about 15 times while the body runs.
        let outcome = CancelScope::new()
            .source(often(
                ResourceLimits::new()
                    .disk_used_percent(env!("CARGO_MANIFEST_DIR"), 100.0)
                    .system_memory_percent(100.0)
                    .process_rss_bytes(u64::MAX),
            ))
            .run(async {
                cancelable_tests::sleep(Duration::from_millis(300)).await;
                "finished"
            })
            .await;
        assert_eq!(outcome.expect("no threshold can be crossed"), "finished");
    }

    async fn bad_thresholds_are_errors_that_say_the_valid_range() {
        for percent in [100.5, -1.0, f64::NAN] {
            let error = error_of(ResourceLimits::new().system_memory_percent(percent));
            assert!(error.contains("between 0 and 100"), "{error}");
            let error = error_of(ResourceLimits::new().disk_used_percent("/", percent));
            assert!(error.contains("between 0 and 100"), "{error}");
        }
        let error = error_of(ResourceLimits::new().process_rss_bytes(1).check_every(Duration::ZERO));
        assert!(error.contains("greater than zero"), "{error}");
        let error = error_of(ResourceLimits::new().disk_used_percent("/no/such/path/here", 50.0));
        assert!(error.contains("/no/such/path/here") && error.contains("existing path"), "{error}");
        let error = error_of(ResourceLimits::new());
        assert!(error.contains("no resource threshold is set"), "{error}");
    }

    async fn a_disk_threshold_on_a_pseudo_filesystem_is_an_error() {
        for path in ["/proc/self", "/sys", "/dev/shm"] {
            let error = error_of(ResourceLimits::new().disk_used_percent(path, 50.0));
            assert!(
                error.contains(path) && error.contains("not a disk") && error.contains("give a path on a mounted disk"),
                "{path}: {error}"
            );
        }
    }
}
