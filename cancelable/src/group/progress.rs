//! A group's progress from its handle: the children's counts by state
//! ([`Group::counts`]) and each running child's last progress report
//! ([`Group::progress`], for a group that tracks its children).

use super::handle::Group;
use super::state::lock;
use super::summary::GroupCounts;
use super::TaskGroup;
use crate::{Progress, ScopeHandle};

impl TaskGroup {
    /// Keeps a record per child, so that [`Group::progress`] can list each
    /// running child's last progress report (and the group's
    /// [`with_summary`](crate::group::GroupRun::with_summary) each ended child).
    /// Off by default: a group that starts children without end (a
    /// server's accept loop) should not keep one record per child.
    /// [`Group::counts`] needs no tracking.
    ///
    /// ```
    /// use cancelable::{report_progress, CancelScope};
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .track_children()
    ///     .run(|group| async move {
    ///         let (go, wait) = futures::channel::oneshot::channel::<()>();
    ///         let copy = group.child().name("copy").start_soon(async move {
    ///             report_progress(0.5, "half copied");
    ///             let _ = wait.await;
    ///             Ok::<_, cancelable::Cancelled>(())
    ///         });
    ///         group.start_soon(async { Ok::<_, cancelable::Cancelled>(()) }).await.unwrap();
    ///         // The copy has run up to its wait: one done, one at 50 %.
    ///         assert_eq!(group.counts().to_string(), "2 children: 1 ok, 0 failed, 0 timed out, 0 cancelled, 1 running");
    ///         let running = group.progress();
    ///         assert_eq!(running[0].name(), Some("copy"));
    ///         assert_eq!(running[0].progress().unwrap().fraction, Some(0.5));
    ///         go.send(()).unwrap();
    ///         copy.await.unwrap();
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn track_children(mut self) -> Self {
        self.track = true;
        self
    }
}

/// A running child of a group and its last progress report, as
/// [`Group::progress`] lists it.
#[derive(Clone, Debug)]
pub struct ChildProgress {
    id: u64,
    name: Option<String>,
    progress: Option<Progress>,
    scope: ScopeHandle,
}

impl ChildProgress {
    /// The child's id in its group (as [`TaskHandle::id`](crate::group::TaskHandle::id)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The child's scope name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the child last reported with
    /// [`report_progress`](crate::report_progress), if anything.
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// The child's scope: its operation id, context, deadline.
    pub fn scope(&self) -> &ScopeHandle {
        &self.scope
    }
}

impl Group {
    /// How many children were started and where they are now: running,
    /// ok, failed, timed out (their own timeout), cancelled. Its `Display`
    /// is a progress line (see [`GroupCounts`]). Always available, at the
    /// cost of a counter per child.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::CancelScope;
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let quick = group.start_soon(async { Ok::<_, cancelable::Cancelled>(()) });
    ///         let slow = group
    ///             .child()
    ///             .in_scope(CancelScope::new().timeout(Duration::from_millis(5)))
    ///             .start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
    ///         let _ = (quick.await, slow.await);
    ///         let counts = group.counts();
    ///         assert_eq!((counts.started, counts.ok, counts.timed_out, counts.running), (2, 1, 1, 0));
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn counts(&self) -> GroupCounts {
        self.shared.counts()
    }

    /// Each running child, by id, with its last progress report — for a
    /// group built with [`TaskGroup::track_children`] (or run
    /// [`with_summary`](crate::group::GroupRun::with_summary)); empty otherwise,
    /// as nothing was kept to read it from. See `track_children` for an
    /// example.
    pub fn progress(&self) -> Vec<ChildProgress> {
        let live: Vec<_> = {
            let mut state = lock(&self.shared.state);
            // Children the group refused after they were built.
            state.tracker.live.retain(|_, scope| scope.is_alive());
            state
                .tracker
                .live
                .iter()
                .map(|(id, scope)| (*id, scope.clone()))
                .collect()
        };
        live.into_iter()
            .filter_map(|(id, scope)| {
                let scope = scope.upgrade()?;
                let context = scope.context();
                Some(ChildProgress {
                    id,
                    name: context.name,
                    progress: context.progress,
                    scope,
                })
            })
            .collect()
    }
}
