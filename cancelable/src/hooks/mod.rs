//! The testing kit's hooks into the core, in one place: what the kit
//! (`crate::testing`) reaches in the core's hot paths, each a constant or
//! one atomic load when the kit is not in use.
//!
//! - [`clock`]: the manual clock, read by every clock read and timer of the
//!   crate (`backend/`, the deadline shards).
//! - [`trips`] (`testing` feature): `CancelAfterCheckpoints`' counters,
//!   told of every checkpoint (`current.rs`) and of every
//!   cancellation-aware wait and stream pull (`wait.rs`).
//!
//! The hooks name nothing above the token: the callers hand them what they
//! need (a scope chain as a lookup by id), so the module stays below
//! `scope/`, which calls it.

pub(crate) mod clock;
#[cfg(feature = "testing")]
pub(crate) mod trips;
