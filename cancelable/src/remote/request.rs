//! A request of this node: published with its tombstone, answered by
//! every node that received it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::protocol::{Message, Tombstone, WireAck};
use super::{broker_error, driver, unix_ms, within, RemoteError, RemoteRegistry, Shared, Target};

/// Whether a node's cancel took effect, or it had been cancelled already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckStatus {
    /// This request cancelled it.
    Cancelled,
    /// It was cancelled already: the request changed nothing (its first
    /// reason and message stand).
    AlreadyCancelled,
}

/// What a node did for a cancel request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ack {
    /// The node that runs the operation.
    pub node: String,
    /// Its id on that node.
    pub id: u64,
    /// Its key, if it has one.
    pub key: Option<String>,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Whether this request cancelled it.
    pub status: AckStatus,
    /// Still running when the node answered (always `true` unless the
    /// request waited for the exit).
    pub running: bool,
    /// When the request waited for the exit and it exited: the time from
    /// the cancel to the exit (the cancellation lag).
    pub lag: Option<Duration>,
}

impl Ack {
    pub(crate) fn of(node: &str, wire: &WireAck) -> Ack {
        Ack {
            node: node.to_owned(),
            id: wire.id,
            key: wire.key.clone(),
            name: wire.name.clone(),
            status: match wire.cancelled_now {
                true => AckStatus::Cancelled,
                false => AckStatus::AlreadyCancelled,
            },
            running: wire.running,
            lag: wire.lag_us.map(Duration::from_micros),
        }
    }

    /// The target that addresses this operation.
    pub fn target(&self) -> Target {
        Target::id(self.node.clone(), self.id)
    }
}

impl RemoteRegistry {
    /// Publishes `message` (with `tombstone` written first, atomically) and
    /// gathers the nodes' answers: until one found something (if
    /// `first_found`), every node that received it answered, or the answer
    /// limit (plus `wait`) passed. Returns the answers and how many nodes
    /// received the request.
    pub(crate) async fn request(
        &self,
        message: impl FnOnce(String, String) -> Message,
        tombstone: Option<Tombstone>,
        wait: Option<Duration>,
        first_found: bool,
    ) -> Result<(Vec<(String, Vec<WireAck>)>, usize), RemoteError> {
        let shared = &self.handle.shared;
        let mut connection = shared.connection()?;
        let request = format!(
            "{}-{}",
            shared.instance,
            shared.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let replies = Arc::new(Replies::default());
        let _pending = PendingGuard::new(shared, &request, replies.clone());
        let payload = message(request, shared.replies.clone()).encode();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let now = unix_ms();
        if let Some(tombstone) = &tombstone {
            driver::add_tombstones(
                &mut pipe,
                shared,
                [(tombstone.expires_ms, tombstone.encode())],
                now,
            );
        }
        pipe.cmd("PUBLISH").arg(&shared.names.requests).arg(payload);
        let limit = shared.settings.answer_within;
        let sent: Result<Vec<redis::Value>, _> = within(limit, pipe.query_async(&mut connection))
            .await
            .ok_or_else(|| {
                RemoteError::Broker(format!("no answer from the broker within {limit:?}"))
            })?;
        let nodes = match sent.map_err(|error| broker_error(shared, &error))?.last() {
            Some(redis::Value::Int(receivers)) => usize::try_from(*receivers).unwrap_or(0),
            other => {
                return Err(RemoteError::Broker(format!(
                    "unexpected answer to PUBLISH: {other:?}"
                )))
            }
        };
        if let Some(tombstone) = tombstone {
            let member = tombstone.encode();
            shared.cache.insert(tombstone, member, now);
        }
        let deadline = limit + wait.unwrap_or_default();
        let answers = within(
            deadline,
            std::future::poll_fn(|cx| {
                let mut state = crate::sync::lock(&replies.state);
                let found = state.answers.iter().any(|(_, found)| !found.is_empty());
                if (first_found && found) || state.answers.len() >= nodes {
                    return Poll::Ready(std::mem::take(&mut state.answers));
                }
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }),
        )
        .await
        .unwrap_or_else(|| std::mem::take(&mut crate::sync::lock(&replies.state).answers));
        Ok((answers, nodes))
    }
}

/// The answers to one request of this node.
#[derive(Default)]
pub(crate) struct Replies {
    pub(crate) state: Mutex<ReplyState>,
}

#[derive(Default)]
pub(crate) struct ReplyState {
    /// Per answering node: what it found.
    pub(crate) answers: Vec<(String, Vec<WireAck>)>,
    pub(crate) waker: Option<Waker>,
}

impl Replies {
    pub(crate) fn push(&self, node: String, found: Vec<WireAck>) {
        let mut state = crate::sync::lock(&self.state);
        state.answers.push((node, found));
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// Keeps a request's entry in the pending map while it waits.
struct PendingGuard<'a> {
    shared: &'a Shared,
    request: String,
}

impl<'a> PendingGuard<'a> {
    fn new(shared: &'a Shared, request: &str, replies: Arc<Replies>) -> Self {
        crate::sync::lock(&shared.pending).insert(request.to_owned(), replies);
        PendingGuard {
            shared,
            request: request.to_owned(),
        }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        crate::sync::lock(&self.shared.pending).remove(&self.request);
    }
}
