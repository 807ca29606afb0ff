//! What a task group tells about its children as a whole: their counts by
//! state and their progress while it runs (`Group::counts`,
//! `Group::progress`, `TaskGroup::track_children`), and a per-child
//! outcome summary with its result (`GroupRun::with_summary`).

use std::time::{Duration, Instant};

use cancelable::group::{ChildState, FailurePolicy, TaskGroup};
use cancelable::{checkpoint, report_progress, CancelScope, Cancelled};
use cancelable_tests::{on_every_backend, sleep};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// A child that runs until cancelled.
async fn forever() -> Result<(), Cancelled> {
    loop {
        checkpoint().await?;
        sleep(Duration::from_millis(1)).await;
    }
}

on_every_backend! {
    /// Children that all hit their own timeouts leave the group `Ok` (a
    /// cancellation is no failure), and the summary says so, child by
    /// child, with names.
    async fn a_group_whose_children_time_out_says_which_in_its_summary() {
        let started = Instant::now();
        let (result, summary) = TaskGroup::new()
            .name("jobs")
            .on_child_error(FailurePolicy::Collect)
            .run(|group| async move {
                for n in 1..=3 {
                    group
                        .child()
                        .in_scope(CancelScope::new().name(format!("slow-{n}")).timeout(Duration::from_millis(10)))
                        .start_soon(forever());
                }
                group.child().name("fine").start_soon(async { Ok::<_, Cancelled>(1) });
                group.child().name("broken").start_soon(async { Err::<(), _>("disk full") });
                let cancelled = group.child().name("stopped").start_soon(forever());
                cancelled.cancel();
                Ok::<_, Cancelled>("body done")
            })
            .with_summary()
            .await;
        assert!(started.elapsed() < GENEROUS);
        // `Collect`: the failure is the group's error; the timeouts are not.
        let error = result.unwrap_err();
        assert_eq!(error.failures().len(), 1);
        let counts = summary.counts();
        assert_eq!(
            (counts.started, counts.ok, counts.failed, counts.timed_out, counts.cancelled, counts.running),
            (6, 1, 1, 3, 1, 0)
        );
        let named = |state: ChildState| -> Vec<String> {
            let mut names: Vec<String> = summary
                .children()
                .iter()
                .filter(|child| child.state() == state)
                .map(|child| child.name().unwrap().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(named(ChildState::TimedOut), ["slow-1", "slow-2", "slow-3"]);
        assert_eq!(named(ChildState::Ok), ["fine"]);
        assert_eq!(named(ChildState::Failed), ["broken"]);
        assert_eq!(named(ChildState::Cancelled), ["stopped"]);
        let broken = summary.children().iter().find(|child| child.name() == Some("broken")).unwrap();
        assert_eq!(broken.error().unwrap().to_string(), "task failed: disk full");
        assert!(broken.id() >= 1);
        let text = summary.to_string();
        assert!(text.starts_with("6 children: 1 ok, 1 failed, 3 timed out, 1 cancelled"), "{text}");
        assert!(text.contains("timed out: `slow-"), "{text}");
    }

    /// The summary comes with an `Ok` too.
    async fn a_group_that_succeeds_has_a_summary_too() {
        let (result, summary) = TaskGroup::new()
            .run(|group| async move {
                let late = group
                    .child()
                    .in_scope(CancelScope::new().name("late").timeout(Duration::from_millis(5)))
                    .start_soon(forever());
                group.start_soon(async { Ok::<_, Cancelled>(()) });
                assert!(late.await.unwrap_err().cancelled().unwrap().is_timeout());
                Ok::<_, Cancelled>(7)
            })
            .with_summary()
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!((summary.counts().ok, summary.counts().timed_out), (1, 1));
        assert_eq!(summary.children().len(), 2);
    }

    /// Counts by state from the group handle while it runs, and each
    /// running child's last progress report.
    async fn the_group_handle_reports_counts_and_each_running_childs_progress() {
        TaskGroup::new()
            .track_children()
            .run(|group| async move {
                let (tx, rx) = futures::channel::oneshot::channel::<()>();
                let working = group.child().name("copy").start_soon(async move {
                    report_progress(0.25, "a quarter copied");
                    let _ = rx.await;
                    Ok::<_, Cancelled>(())
                });
                group.start_soon(async { Ok::<_, Cancelled>(()) });
                group
                    .child()
                    .in_scope(CancelScope::new().timeout(Duration::from_millis(1)))
                    .start_soon(forever());
                // Until the two short children have ended.
                let deadline = Instant::now() + GENEROUS;
                while group.counts().running > 1 {
                    assert!(Instant::now() < deadline, "{}", group.counts());
                    sleep(Duration::from_millis(1)).await;
                }
                let counts = group.counts();
                assert_eq!((counts.started, counts.running, counts.ok, counts.timed_out), (3, 1, 1, 1));
                assert_eq!(counts.to_string(), "3 children: 1 ok, 0 failed, 1 timed out, 0 cancelled, 1 running");
                // The copy reported its progress before it waited.
                let progress = group.progress();
                assert_eq!(progress.len(), 1);
                assert_eq!(Some(progress[0].id()), working.id());
                assert_eq!(progress[0].name(), Some("copy"));
                let report = progress[0].progress().expect("reported");
                assert_eq!((report.fraction, report.message.as_str()), (Some(0.25), "a quarter copied"));
                tx.send(()).unwrap();
                working.await.unwrap();
                assert_eq!(group.counts().ok, 2);
                assert!(group.progress().is_empty());
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    /// Without `track_children`, the counts are there and the progress
    /// list is empty (nothing was kept to read it from).
    async fn counts_need_no_tracking() {
        TaskGroup::new()
            .run(|group| async move {
                group.start_soon(async { Ok::<_, Cancelled>(()) }).await.unwrap();
                assert_eq!((group.counts().started, group.counts().ok), (1, 1));
                assert!(group.progress().is_empty());
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }
}
