//! What the registry shows of live operations: [`OperationInfo`] for one,
//! [`Snapshot`] for the tree of all of them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::record::Record;
use super::{stuck, Now};
use crate::scope::hold::HoldKind;
use crate::{CancelReason, OperationStatus, Progress};

/// A live registered operation, as [`Registry::list`](super::Registry::list),
/// [`get`](super::Registry::get) and [`snapshot`](super::Registry::snapshot)
/// show it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OperationInfo {
    /// The operation's id, unique within the process.
    pub id: u64,
    /// The user key it was registered under, if any.
    pub key: Option<String>,
    /// Its name, if it has one: borrowed from the scope when it was named
    /// with a `&'static str` (as `CancelScope::name("fetch")` is), so that
    /// listing and snapshots copy no name.
    pub name: Option<Cow<'static, str>>,
    /// The id of the scope it runs inside, if any (registered or not).
    pub parent_id: Option<u64>,
    /// `Running` while live (a finished operation leaves the live set).
    pub status: OperationStatus,
    /// When it started (wall clock).
    pub started_at: Option<SystemTime>,
    /// How long it has run.
    pub elapsed: Duration,
    /// Time left before the deadline that applies to it: its own, or the
    /// earliest one of the scopes it runs inside (up to the nearest
    /// [`shield`](crate::shield)) — an operation inside a request with a
    /// 30 s deadline shows what is left of those 30 s. Zero once passed,
    /// `None` when no deadline applies.
    pub remaining: Option<Duration>,
    /// `remaining` counts down to an enclosing scope's deadline, earlier
    /// than the operation's own (or the operation has none).
    pub deadline_inherited: bool,
    /// The last progress reported.
    pub progress: Option<Progress>,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// Why it was cancelled, if it was.
    pub reason: Option<CancelReason>,
    /// The message given with the cancellation, if any.
    pub message: Option<String>,
    /// How long ago its cancellation was requested, if it was.
    pub cancelled_for: Option<Duration>,
    /// How many checkpoints inside it returned the cancellation since: a
    /// stuck operation with none is blocked in code without checkpoints
    /// (or a blocking call); one with many ignores what they return.
    pub checkpoints_since_cancel: u64,
    /// A [`shield`](crate::shield) runs inside it, holding it open (a
    /// grace is reported as `in_grace`, never as this).
    pub shielded: bool,
    /// Cancelled, with a grace period ([`CancelScope::grace`](crate::CancelScope::grace),
    /// a request layer's or a task group's) that has not run out, or held
    /// open while a task group inside it drains: cleaning up as it is
    /// allowed to, not stuck.
    pub in_grace: bool,
    /// Still running past its grace period (and at least the registry's
    /// stuck threshold) since its cancel request or, without a grace
    /// period, past the threshold.
    pub stuck: bool,
}

impl OperationInfo {
    /// Builds the view of `record` at `now`, and reports it if it is newly
    /// found stuck.
    pub(crate) fn of(record: &Record, now: &mut Now) -> OperationInfo {
        let shared = record.scope();
        let status = shared.status();
        let (deadline, progress, metadata) = {
            let data = shared.context_data();
            match &data.extra {
                Some(extra) => (
                    data.deadline,
                    extra.progress.clone(),
                    extra.metadata.to_map(),
                ),
                None => (data.deadline, None, BTreeMap::new()),
            }
        };
        // The cause is read (under the token's lock) only for cancelled
        // operations.
        let cause = shared.cancel_cause();
        let effective = shared.effective_deadline();
        let deadline_inherited = effective.is_some() && effective != deadline;
        let clock_now = now.on(record.clock);
        let real_now = now.real();
        let cancelled_for = record.cancelled_for(real_now);
        let stuck = record.is_stuck(real_now);
        let in_grace = !stuck && record.is_in_grace(real_now);
        if let (true, Some(ago)) = (stuck, cancelled_for) {
            stuck::report(record, ago);
        }
        let elapsed = clock_now.saturating_duration_since(record.started);
        let (reason, message) = match cause {
            Some((reason, message)) => (Some(reason), message.map(|m| m.to_string())),
            None => (None, None),
        };
        OperationInfo {
            id: record.id,
            key: record.key.as_deref().map(str::to_owned),
            name: record.name(),
            parent_id: shared.parent_id(),
            status,
            started_at: now.wall.checked_sub(elapsed),
            elapsed,
            remaining: effective.map(|deadline| deadline.saturating_duration_since(clock_now)),
            deadline_inherited,
            progress,
            metadata,
            reason,
            message,
            cancelled_for,
            checkpoints_since_cancel: u64::from(shared.checkpoints_since_cancel()),
            shielded: shared.is_held_by(HoldKind::Shield),
            in_grace,
            stuck,
        }
    }
}

/// The tree of live registered operations at one moment: what an admin
/// endpoint or a CLI prints. See [`Registry::snapshot`](super::Registry::snapshot).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken (wall clock).
    pub taken_at: SystemTime,
    /// How many operations it holds, at every depth.
    pub live: usize,
    /// How many of them are stuck after cancel.
    pub stuck: usize,
    /// The operations with no registered operation around them, each with
    /// the registered operations inside it; ordered by id (start order).
    pub operations: Vec<OperationNode>,
}

/// One operation of a [`Snapshot`] and the registered operations that run
/// inside it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OperationNode {
    /// The operation.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub operation: OperationInfo,
    /// The registered operations whose nearest registered enclosing
    /// operation is this one (unregistered scopes in between are skipped).
    pub children: Vec<OperationNode>,
}

impl Snapshot {
    /// Every node, depth first.
    pub fn iter(&self) -> impl Iterator<Item = &OperationNode> {
        let mut stack: Vec<&OperationNode> = self.operations.iter().rev().collect();
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.children.iter().rev());
            Some(node)
        })
    }

    /// The node of operation `id`, if it is in the snapshot.
    pub fn find(&self, id: u64) -> Option<&OperationNode> {
        self.iter().find(|node| node.operation.id == id)
    }

    /// Builds the tree from the records of the live set and their ids,
    /// ordered by id.
    ///
    /// Each record and its scope state are visited once, in id order, and
    /// each record is released right after: with 100,000 live operations
    /// the records do not fit in the cache, so every further pass over them
    /// would miss it again on every record. The tree is then put together
    /// from positions alone; a snapshot without nesting is the list itself.
    pub(crate) fn build(records: Vec<(u64, Arc<Record>)>, now: &mut Now) -> Snapshot {
        let live = records.len();
        let ids: Vec<u64> = records.iter().map(|(id, _)| *id).collect();
        let mut nodes = Vec::with_capacity(live);
        // The position of each operation's nearest registered, live
        // enclosing operation; made at the first operation that has one.
        let mut anchors: Option<Vec<Option<usize>>> = None;
        let mut stuck = 0;
        for (at, (_, record)) in records.into_iter().enumerate() {
            let operation = OperationInfo::of(&record, now);
            stuck += usize::from(operation.stuck);
            let anchor = record
                .scope()
                .ancestor_ids()
                .find_map(|ancestor| ids.binary_search(&ancestor).ok());
            if let Some(anchor) = anchor {
                anchors.get_or_insert_with(|| vec![None; live])[at] = Some(anchor);
            }
            // Released before the node is written: the release is an atomic
            // write, which would wait for the node's stores to reach memory.
            drop(record);
            nodes.push(OperationNode {
                operation,
                children: Vec::new(),
            });
        }
        let operations = match anchors {
            None => nodes,
            Some(anchors) => Self::nest(nodes, &anchors),
        };
        Snapshot {
            taken_at: now.wall,
            live,
            stuck,
            operations,
        }
    }

    /// Moves each node under its anchor (the position of its nearest
    /// registered enclosing operation); returns the roots, ordered by id.
    fn nest(nodes: Vec<OperationNode>, anchors: &[Option<usize>]) -> Vec<OperationNode> {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut roots = Vec::new();
        for (at, anchor) in anchors.iter().enumerate() {
            match anchor {
                Some(parent) => children[*parent].push(at),
                None => roots.push(at),
            }
        }
        // Children before their parent (post-order), without recursion:
        // nesting can be deep.
        let mut order = Vec::with_capacity(nodes.len());
        let mut pending: Vec<(usize, bool)> =
            roots.iter().rev().map(|&root| (root, false)).collect();
        while let Some((at, expanded)) = pending.pop() {
            if expanded {
                order.push(at);
            } else {
                pending.push((at, true));
                pending.extend(children[at].iter().rev().map(|&child| (child, false)));
            }
        }
        // Each node is put together in place: its children are the last
        // nodes on the stack.
        let mut nodes: Vec<Option<OperationNode>> = nodes.into_iter().map(Some).collect();
        let mut stack: Vec<OperationNode> = Vec::with_capacity(roots.len());
        for at in order {
            let Some(mut node) = nodes[at].take() else {
                unreachable!("the post-order visits each position once")
            };
            // `drain`, not `split_off`: an empty tail must not take the
            // stack's buffer along.
            node.children = stack.drain(stack.len() - children[at].len()..).collect();
            stack.push(node);
        }
        stack
    }
}
