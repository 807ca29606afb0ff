//! One registered operation's record, and the key it may hold: what the
//! live set, the history, the snapshots, the stuck watcher and the metrics
//! all read.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::{lock, Registry};
use crate::scope::hold::HoldKind;
use crate::scope::seam::{self, LazySeed, ScopeView};
use crate::seam::time::ScopeClock as Clock;
use crate::{CancellationToken, OperationStatus};

/// What joins: a scope's state, or what a scope without one shows
/// (`scope/lazy.rs`, invariant 3; its id, clock and start are given
/// beside).
pub(crate) enum Joining {
    Shared(ScopeView),
    Lazy {
        name: Option<Cow<'static, str>>,
        deadline: Option<Instant>,
    },
}

/// One registered operation: in the live set while it runs; the history
/// keeps a copy of it once it ended. Held after that only by a
/// [`CancelAnswer`](super::CancelAnswer)'s future or a reader, and reused
/// by the thread's next registration once nobody holds it.
///
/// A record holds no reference to its registry: what it needs of it, the
/// stuck threshold, is copied in.
///
/// In declaration order (`repr(C)`): what a snapshot reads of every live
/// operation comes first, next to the reference counts, so that it spans
/// as few cache lines as it can (a snapshot of many operations misses the
/// cache on each of them); what only the exit and the stuck report touch
/// comes last.
#[repr(C)]
pub(crate) struct Record {
    /// The scope's state, for a scope that started with it: `None` for
    /// one that started without (`lazy`), and in a record kept for reuse
    /// (see [`Record::spare`]), which nobody else can reach.
    scope: Option<ScopeView>,
    /// A lazy scope's state, made from `seed` by the first to need it — a
    /// reader through [`scope`](Self::scope), or the scope itself
    /// (`scope/lazy.rs`, invariant 3).
    made: OnceLock<ScopeView>,
    pub(crate) id: u64,
    /// The order in which operations joined the registry (their start
    /// order): what `list` sorts by.
    pub(crate) joined: u64,
    /// On the scope's clock.
    pub(crate) started: Instant,
    /// When the scope's token was cancelled, on the real clock.
    pub(crate) cancel_requested: OnceLock<Instant>,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) clock: Clock,
    /// Set when the scope exits, before the record leaves the live set.
    pub(crate) left: AtomicBool,
    /// Set once the stuck report is out (after the warning is written).
    pub(crate) stuck_reported: AtomicBool,
    /// The registry's stuck threshold.
    pub(crate) stuck_after: Duration,
    /// Held while the stuck report is written: see `stuck::report`.
    pub(crate) stuck_report: Mutex<()>,
    /// How it ended, and who awaits it: one lock, taken once at exit.
    pub(crate) outcome: Mutex<OutcomeState>,
    /// The metrics' `operation` label: the name, or the registry's
    /// [`OTHER_NAMES`](super::OTHER_NAMES) past its counted names.
    #[cfg(feature = "metrics")]
    pub(crate) label: Cow<'static, str>,
    /// The key, held until the exit.
    pub(crate) key_claim: Mutex<Option<KeyClaim>>,
    /// A lazy scope's seed (a record without `scope` is a lazy scope's):
    /// what the record shows of it until its state is made, and the token
    /// the registry cancels it through. In a record kept for reuse, or one
    /// of a scope with state, only its token (reset) is kept, for the
    /// thread's next lazy scope.
    seed: Option<LazySeed>,
}

/// A record's final outcome, once known, and who awaits it (a
/// [`CancelAnswer`](super::CancelAnswer)'s future).
#[derive(Default)]
pub(crate) struct OutcomeState {
    /// Set once, when the exit is fully recorded (in the history and the
    /// statistics). A lock rather than a `OnceLock`: setting a `OnceLock`
    /// costs twice as many instructions as an uncontended lock.
    pub(crate) exit: Option<Exit>,
    /// Woken when `exit` is set.
    pub(crate) waiters: Vec<Waker>,
}

/// How a registered operation ended.
#[derive(Clone, Copy)]
pub(crate) struct Exit {
    pub(crate) status: OperationStatus,
    /// On the scope's clock.
    pub(crate) ended: Instant,
    pub(crate) lag: Option<Duration>,
}

impl Record {
    /// A record of no operation, to be [`join`](Self::join)ed: what a
    /// thread allocates when it has no spare record.
    pub(crate) fn blank(clock: Clock, started: Instant) -> Record {
        Record {
            scope: None,
            made: OnceLock::new(),
            id: 0,
            joined: 0,
            key: None,
            clock,
            started,
            cancel_requested: OnceLock::new(),
            stuck_after: Duration::ZERO,
            stuck_reported: AtomicBool::new(false),
            stuck_report: Mutex::new(()),
            left: AtomicBool::new(false),
            outcome: Mutex::default(),
            #[cfg(feature = "metrics")]
            label: Cow::Borrowed(""),
            key_claim: Mutex::new(None),
            seed: None,
        }
    }

    /// Makes this record — [`blank`](Self::blank), or emptied by
    /// [`spare`](Self::spare), and held by nobody else — the record of
    /// operation `id` (`scope`: its state, or what a lazy scope shows), the
    /// `joined`-th to join `registry`, holding `key`: each field set in
    /// place, nothing built and moved.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn join(
        &mut self,
        scope: Joining,
        id: u64,
        joined: u64,
        key: Option<KeyClaim>,
        registry: &Registry,
        clock: Clock,
        started: Instant,
    ) {
        #[cfg(feature = "metrics")]
        {
            let name = match &scope {
                Joining::Shared(scope) => scope.context_data().name.clone(),
                Joining::Lazy { name, .. } => name.clone(),
            };
            self.label = registry.inner.names.counted(name.unwrap_or_default());
        }
        match scope {
            Joining::Shared(scope) => {
                self.scope = Some(scope);
            }
            Joining::Lazy { name, deadline } => {
                match &mut self.seed {
                    // The spare's token, reset when the record was spared.
                    Some(seed) => {
                        seed.id = id;
                        seed.name = name;
                        seed.started = started;
                        seed.deadline = deadline;
                    }
                    None => self.seed = Some(LazySeed::new(id, name, started, deadline)),
                }
            }
        }
        self.id = id;
        self.joined = joined;
        self.started = started;
        // What only a cancelled, stuck, awaited or keyed operation sets is
        // reset only if set: most records come back as they went.
        if self.cancel_requested.get().is_some() {
            self.cancel_requested.take();
        }
        self.clock = clock;
        *self.left.get_mut() = false;
        *self.stuck_reported.get_mut() = false;
        self.stuck_after = registry.inner.stuck_after;
        let outcome = self
            .outcome
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if outcome.exit.is_some() || !outcome.waiters.is_empty() {
            outcome.exit = None;
            outcome.waiters.clear();
        }
        if key.is_some() || self.key.is_some() {
            self.key = key.as_ref().map(|claim| claim.key.clone());
        }
        let claim = self
            .key_claim
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if key.is_some() || claim.is_some() {
            *claim = key;
        }
    }

    /// Running: not exiting (an exiting scope sets its final status, then
    /// `left`, then leaves the live set).
    pub(crate) fn is_live(&self) -> bool {
        !self.left.load(Ordering::Acquire) && !self.status().is_finished()
    }

    /// The scope's status: its state's, or `Running` for a lazy scope whose
    /// state nobody made (it exits with its final status).
    pub(crate) fn status(&self) -> OperationStatus {
        self.made()
            .map_or(OperationStatus::Running, ScopeView::status)
    }

    /// The token the registry cancels the scope through: a lazy scope's
    /// seed's (its state's token too, once made), else its state's.
    pub(crate) fn token(&self) -> &CancellationToken {
        match (&self.scope, &self.seed) {
            (Some(scope), _) => scope.token(),
            (None, Some(seed)) => seed.token(),
            (None, None) => unreachable!("only a record kept for reuse has neither"),
        }
    }

    /// The scope's state if it has been made: always, but for a lazy
    /// scope nobody asked for it.
    pub(crate) fn made(&self) -> Option<&ScopeView> {
        self.scope.as_ref().or_else(|| self.made.get())
    }

    /// `record`, emptied for reuse, if nobody else holds it (nor a weak
    /// reference to it: with features `tracing` or `metrics` the stuck
    /// watcher keeps one while the scope's token lives, and the record is
    /// then freed instead); `None` otherwise (it is freed when the last
    /// holder lets it go). Reuse is only ever of a record proven unique:
    /// no stale reader can observe it being reused.
    #[inline]
    pub(crate) fn spare(mut record: Arc<Record>) -> Option<Arc<Record>> {
        let emptied = Arc::get_mut(&mut record)?;
        // Releases the scope's state (for the scope-state pool) and the key.
        emptied.scope = None;
        emptied.made.take();
        emptied.key = None;
        // A lazy scope's token is kept, reset, if nobody else holds it.
        if let Some(seed) = &mut emptied.seed {
            seed.name = None;
            if !seed.reset_token() {
                emptied.seed = None;
            }
        }
        Some(record)
    }

    /// The scope, as the registry sees it: a lazy scope's state made now
    /// if nobody made it yet (`scope/lazy.rs`, invariant 3).
    pub(crate) fn scope(&self) -> &ScopeView {
        if let Some(scope) = &self.scope {
            return scope;
        }
        self.made.get_or_init(|| match &self.seed {
            Some(seed) => ScopeView::made_from(seed, self.clock),
            None => unreachable!("only a record kept for reuse has neither, and nobody reaches it"),
        })
    }

    /// How it ended, once its exit is fully recorded.
    pub(crate) fn exit(&self) -> Option<Exit> {
        lock(&self.outcome).exit
    }

    /// The operation's name (kept once, in the scope's state: the record
    /// copies none).
    pub(crate) fn name(&self) -> Option<Cow<'static, str>> {
        match (&self.scope, &self.seed) {
            (None, Some(seed)) => seed.name.clone(),
            _ => self.scope().context_data().name.clone(),
        }
    }

    /// A lazy scope's name, not made into its state (`None` for a scope
    /// with state, whose context has it).
    pub(crate) fn lazy_name(&self) -> Option<&Cow<'static, str>> {
        match (&self.scope, &self.seed) {
            (None, Some(seed)) => seed.name.as_ref(),
            _ => None,
        }
    }

    /// When the cancel was requested, if it was: as the token recorded it
    /// (the flag read first, so that a live operation costs no lock), or as
    /// the stuck watcher noted it.
    pub(crate) fn cancel_requested_at(&self) -> Option<Instant> {
        if let Some(at) = self.cancel_requested.get() {
            return Some(*at);
        }
        seam::cancelled_at(self.token())
    }

    /// How long ago the cancel was requested, if it was.
    pub(crate) fn cancelled_for(&self, real_now: Instant) -> Option<Duration> {
        self.cancel_requested_at()
            .map(|at| real_now.saturating_duration_since(at))
    }

    /// The scope's grace period, if it has one.
    pub(crate) fn grace(&self) -> Option<Duration> {
        // A lazy scope has no grace (it would have state).
        let data = self.made()?.context_data();
        data.extra.as_ref()?.grace.map(|(period, _)| period)
    }

    /// How long after its cancel request the operation counts as stuck:
    /// its grace period (at least the registry's threshold), or without
    /// one the threshold.
    pub(crate) fn stuck_limit(&self) -> Duration {
        self.grace()
            .map_or(self.stuck_after, |grace| grace.max(self.stuck_after))
    }

    /// Running, cancelled at least its [`stuck_limit`](Self::stuck_limit)
    /// ago, not exited.
    pub(crate) fn is_stuck(&self, real_now: Instant) -> bool {
        !self.left.load(Ordering::Acquire)
            && self
                .cancelled_for(real_now)
                .is_some_and(|ago| ago >= self.stuck_limit())
    }

    /// Running, cancelled, with a grace period that has not run out yet,
    /// or held open by a task group draining inside it: cleaning up as it
    /// is allowed to.
    pub(crate) fn is_in_grace(&self, real_now: Instant) -> bool {
        !self.left.load(Ordering::Acquire)
            && self.cancelled_for(real_now).is_some_and(|ago| {
                self.grace().is_some_and(|grace| ago < grace)
                    || self
                        .made()
                        .is_some_and(|scope| scope.is_held_by(HoldKind::Grace))
            })
    }

    /// The exit is fully recorded: sets it and wakes those awaiting it.
    pub(crate) fn outcome_known(&self, exit: Exit) {
        let waiters = {
            let mut outcome = lock(&self.outcome);
            outcome.exit = Some(exit);
            std::mem::take(&mut outcome.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

/// A key held for a scope, from `.key(..)` until the scope exits (or is
/// dropped without running).
pub(crate) struct KeyClaim {
    pub(crate) registry: Registry,
    pub(crate) key: Arc<str>,
    pub(crate) id: u64,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        let released = {
            let mut keys = lock(self.registry.inner.key_shard(&self.key));
            match keys.get(&self.key) {
                Some(holder) if holder.id == self.id => keys.remove(&self.key),
                _ => None,
            }
        };
        drop(released);
    }
}
