//! The tokio side of the deadline shards: which runtime's shard a scope
//! belongs to, and the driver task that keeps a tokio shard's timer (a
//! tokio timer may only be polled inside its runtime; an `async-io` one
//! is used while tokio's clock follows the system's, see [`drive`]). See
//! the parent module's docs, "Who drives the timer".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{tell_expired, Driver, Shard, ShardKind};
use crate::backend::Clock;
use crate::sync::lock;

/// The shard kind of the tokio runtime entered on this thread.
///
/// `Handle::try_current` clones the runtime's handle (two atomic updates on
/// a counter that every worker thread shares). Inside a task the answer is
/// remembered per thread with the task's id, which is unique in the
/// process and whose task never changes runtime, so the scopes that
/// follow in the same task skip the clone.
pub(super) fn tokio_kind() -> ShardKind {
    use std::cell::Cell;
    thread_local! {
        static TASK_RUNTIME: Cell<Option<(tokio::task::Id, tokio::runtime::Id)>> =
            const { Cell::new(None) };
    }
    let task = tokio::task::try_id();
    if let Some(task) = task {
        let remembered = TASK_RUNTIME
            .try_with(|memo| memo.get())
            .ok()
            .flatten()
            .filter(|(of, _)| *of == task);
        if let Some((_, runtime)) = remembered {
            return ShardKind::Tokio(runtime);
        }
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let runtime = handle.id();
            if let Some(task) = task {
                let _ = TASK_RUNTIME.try_with(|memo| memo.set(Some((task, runtime))));
            }
            ShardKind::Tokio(runtime)
        }
        Err(_) => ShardKind::AsyncIo,
    }
}

/// Marks the shard dead when the driver task is dropped, whether it ever
/// ran or not, and counts the driver tasks alive per runtime (what the
/// testing kit's `deadline_drivers` reports).
pub(super) struct DriverGuard {
    pub(super) shard: Arc<Shard>,
    runtime: tokio::runtime::Id,
}

/// The driver tasks alive, per runtime: a driver lives as long as its
/// runtime, so a test counting a runtime's tasks subtracts them.
static DRIVERS: std::sync::Mutex<Vec<(tokio::runtime::Id, usize)>> =
    std::sync::Mutex::new(Vec::new());

impl DriverGuard {
    pub(super) fn new(shard: Arc<Shard>, runtime: tokio::runtime::Id) -> DriverGuard {
        let mut drivers = crate::sync::lock(&DRIVERS);
        match drivers.iter_mut().find(|(id, _)| *id == runtime) {
            Some((_, count)) => *count += 1,
            None => drivers.push((runtime, 1)),
        }
        DriverGuard { shard, runtime }
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.shard.mark_dead();
        let mut drivers = crate::sync::lock(&DRIVERS);
        if let Some(at) = drivers.iter().position(|(id, _)| *id == self.runtime) {
            drivers[at].1 -= 1;
            if drivers[at].1 == 0 {
                drivers.swap_remove(at);
            }
        }
    }
}

/// How many deadline driver tasks are alive on `runtime`.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) fn drivers_on(runtime: tokio::runtime::Id) -> usize {
    crate::sync::lock(&DRIVERS)
        .iter()
        .find(|(id, _)| *id == runtime)
        .map_or(0, |(_, count)| *count)
}

/// How many times the driver task re-arms in one poll before it yields:
/// bounds the work of one poll when deadlines keep passing.
const DRIVER_ROUNDS: usize = 64;

/// The tokio driver task of a shard: runs until its runtime drops it.
///
/// Its timer is tokio's only where it must be: under a paused (or once
/// advanced) clock, which only tokio's own timers move. Elsewhere tokio's
/// clock reads as the system's, and an `async-io` timer (driven by the
/// `async-io` reactor thread, as the `async-io` shard's is) wakes the task
/// at the same instant: while a tokio timer is armed, every park of the
/// runtime (each time its tasks all pend) searches tokio's timer wheel,
/// which costs more than the whole scope a short body runs in.
pub(super) async fn drive(guard: DriverGuard) {
    let shard = &guard.shard;
    let Driver::Tokio { task, .. } = &shard.driver else {
        return;
    };
    let mut sleep: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut real_time: Option<async_io::Timer> = None;
    std::future::poll_fn(|cx| -> std::task::Poll<()> {
        // Registered before the state is read: a registration after the
        // read wakes this poll's waker.
        task.register(cx.waker());
        for _ in 0..DRIVER_ROUNDS {
            let mut expired = Vec::new();
            let next = lock(&shard.state).expire(Clock::Tokio.now(), &mut expired);
            tell_expired(expired);
            let Some(next) = next else {
                return std::task::Poll::Pending;
            };
            // Under the testing kit's manual clock, its advance wakes the task.
            match crate::hooks::clock::poll_reached(next, cx.waker()) {
                Some(true) => continue,
                Some(false) => return std::task::Poll::Pending,
                None => {}
            }
            let reached = if follows_real_time() {
                // Out of tokio's wheel (see above).
                sleep = None;
                let timer = real_time.get_or_insert_with(async_io::Timer::never);
                timer.set_at(next);
                Pin::new(timer).poll(cx).is_ready()
            } else {
                real_time = None;
                let next = tokio::time::Instant::from_std(next);
                let sleep = match &mut sleep {
                    Some(sleep) => {
                        // Reset even to the same deadline: an elapsed sleep
                        // stays ready until it is reset.
                        sleep.as_mut().reset(next);
                        sleep
                    }
                    None => sleep.insert(Box::pin(tokio::time::sleep_until(next))),
                };
                // Under a spent cooperative budget this is `Pending` and
                // tokio schedules a wake-up: the clock, read above, decides.
                sleep.as_mut().poll(cx).is_ready()
            };
            if !reached {
                return std::task::Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// `true` if tokio's clock reads as the system's here: not paused, and
/// never advanced. A paused clock reads the same twice in a row; an
/// advanced one is off the system's. Where the system clock is too coarse
/// to tell two reads apart, this says `false`, and tokio's timer is used:
/// always right, only dearer.
///
/// A clock paused after an `async-io` timer was armed is seen when that
/// timer fires, at the deadline in real time: the driver then arms tokio's
/// timer, which the paused clock advances to.
fn follows_real_time() -> bool {
    let before = tokio::time::Instant::now().into_std();
    let system = std::time::Instant::now();
    let after = tokio::time::Instant::now().into_std();
    before != after && before <= system && system <= after
}
