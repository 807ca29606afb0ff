//! A request of this node: published with its tombstone, answered by
//! every node that received it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::checks;
use super::protocol::{Message, Tombstone, WireAck, MAX_MESSAGE_BYTES};
use super::signing::Kind;
use super::{broker, broker_error, within, RemoteError, RemoteRegistry, Shared, Target};

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
    /// The instance id of that node's process (its incarnation).
    pub instance: String,
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
    pub(crate) fn of(answer: &Answer, wire: &WireAck) -> Ack {
        Ack {
            node: answer.node.clone(),
            instance: answer.instance.clone(),
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

    /// The target that addresses this operation: its node, id and node
    /// incarnation.
    pub fn target(&self) -> Target {
        Target::id(self.node.clone(), self.id).in_instance(self.instance.clone())
    }
}

/// One node's answer to a request.
pub(crate) struct Answer {
    pub(crate) node: String,
    pub(crate) instance: String,
    /// What it found (empty: nothing).
    pub(crate) found: Vec<WireAck>,
}

/// `Err(TooLarge)` if `size` bytes of `what` exceed the wire limit.
fn check_size(what: &'static str, size: usize) -> Result<(), RemoteError> {
    if size > MAX_MESSAGE_BYTES {
        return Err(RemoteError::TooLarge {
            what,
            size,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

impl RemoteRegistry {
    /// Publishes `message` (with `tombstone` written first, atomically, by
    /// a script on the broker's clock) and gathers the nodes' answers:
    /// until one found something (if `first_found`), every node that
    /// received it answered, or the answer limit (plus `wait`) passed.
    /// Returns the answers and how many nodes received the request.
    pub(crate) async fn request(
        &self,
        message: impl FnOnce(String, String) -> Message,
        tombstone: Option<Tombstone>,
        wait: Option<Duration>,
        first_found: bool,
    ) -> Result<(Vec<Answer>, usize), RemoteError> {
        let shared = &self.handle.shared;
        let request = format!(
            "{}-{}",
            shared.instance,
            shared.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let payload = message(request.clone(), shared.replies.clone()).encode();
        let payload = shared.signer.seal(Kind::Request, payload);
        check_size("cancel request", payload.len())?;
        let body = match &tombstone {
            Some(tombstone) => {
                let body = shared.signer.seal(Kind::Tombstone, tombstone.encode());
                check_size("tombstone", body.len())?;
                Some(body)
            }
            None => None,
        };
        let mut connection = shared.connection()?;
        let replies = Arc::new(Replies::default());
        let _pending = PendingGuard::new(shared, &request, replies.clone());
        let limit = shared.settings.answer_within;
        let late = || RemoteError::Broker(format!("no answer from the broker within {limit:?}"));
        let nodes = match (tombstone, body) {
            (Some(tombstone), Some(body)) => {
                let names = &shared.names;
                let max = shared.settings.max_tombstones;
                let ttl = tombstone.ttl_ms;
                let member = tombstone.member();
                let (ttl_text, max_text) = (ttl.to_string(), max.to_string());
                let args: [&[u8]; 6] = [
                    member.as_bytes(),
                    body.as_bytes(),
                    ttl_text.as_bytes(),
                    max_text.as_bytes(),
                    names.requests.as_bytes(),
                    payload.as_bytes(),
                ];
                let keys = [names.tombstones.as_str(), names.bodies.as_str()];
                let run = broker::CANCEL.run::<Vec<i64>>(&mut connection, &keys, &args);
                let reply = match within(limit, run).await.ok_or_else(late)? {
                    Ok(reply) => reply,
                    Err(error) => {
                        return Err(checks::explain(shared, &mut connection, &error).await)
                    }
                };
                let (receivers, count) = match reply[..] {
                    [receivers, count] => (receivers, usize::try_from(count).unwrap_or(0)),
                    _ => return Err(RemoteError::Broker(format!("unexpected answer: {reply:?}"))),
                };
                if receivers < 0 {
                    return Err(RemoteError::TombstonesFull { max });
                }
                shared.note_tombstones(count);
                shared
                    .cache
                    .insert(tombstone, body, Duration::from_millis(ttl), true);
                usize::try_from(receivers).unwrap_or(0)
            }
            _ => {
                let mut publish = redis::cmd("PUBLISH");
                publish.arg(&shared.names.requests).arg(payload);
                within(limit, publish.query_async::<usize>(&mut connection))
                    .await
                    .ok_or_else(late)?
                    .map_err(|error| broker_error(shared, &error))?
            }
        };
        let deadline = limit.saturating_add(wait.unwrap_or_default());
        let answers = within(
            deadline,
            std::future::poll_fn(|cx| {
                let mut state = crate::sync::lock(&replies.state);
                let found = state.answers.iter().any(|answer| !answer.found.is_empty());
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
    pub(crate) answers: Vec<Answer>,
    pub(crate) waker: Option<Waker>,
}

impl Replies {
    pub(crate) fn push(&self, answer: Answer) {
        let mut state = crate::sync::lock(&self.state);
        state.answers.push(answer);
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
