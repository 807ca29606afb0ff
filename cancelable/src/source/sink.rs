//! How a firing source reaches its scope: straight into the scope's token,
//! or through the nodes of composite sources — an any-of node passes on
//! the first firing of its inputs, an all-of node the last one once every
//! input has fired.

use std::sync::Arc;

use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use crate::token::Cause;
use crate::{CancelReason, CancellationToken};

/// Where a source delivers its firing: the scope's token, or a node of a
/// composite source.
#[derive(Clone)]
pub(crate) enum Sink {
    Token(CancellationToken),
    AnyOf(Arc<AnyOfNode>),
    AllOf(Arc<AllOfNode>, usize),
}

pub(crate) struct AnyOfNode {
    fired: AtomicBool,
    parent: Sink,
}

pub(crate) struct AllOfNode {
    fired: Vec<AtomicBool>,
    remaining: AtomicUsize,
    parent: Sink,
}

impl Sink {
    /// The sink of every input of an any-of node that fires `self` when
    /// the first of them fires.
    pub(crate) fn any_of(self) -> Sink {
        Sink::AnyOf(Arc::new(AnyOfNode {
            fired: AtomicBool::new(false),
            parent: self,
        }))
    }

    /// The sinks of the `count` inputs of an all-of node that fires `self`
    /// once every one of them has fired.
    pub(crate) fn all_of(self, count: usize) -> impl Iterator<Item = Sink> {
        let node = Arc::new(AllOfNode {
            fired: (0..count).map(|_| AtomicBool::new(false)).collect(),
            remaining: AtomicUsize::new(count),
            parent: self,
        });
        (0..count).map(move |index| Sink::AllOf(node.clone(), index))
    }

    pub(crate) fn fire(&self, reason: CancelReason) {
        self.fire_cause(Cause::new(reason));
    }

    pub(crate) fn fire_cause(&self, cause: Cause) {
        match self {
            Sink::Token(token) => {
                if !token.cancel_cause(cause) {
                    // Already cancelled: a scope in its grace period looks
                    // for a second signal when woken (`CancelScope::grace`).
                    token.wake_owner();
                }
            }
            Sink::AnyOf(node) => {
                if !node.fired.swap(true, Ordering::AcqRel) {
                    node.parent.fire_cause(cause);
                }
            }
            Sink::AllOf(node, index) => {
                if !node.fired[*index].swap(true, Ordering::AcqRel)
                    && node.remaining.fetch_sub(1, Ordering::AcqRel) == 1
                {
                    node.parent.fire_cause(cause);
                }
            }
        }
    }
}
