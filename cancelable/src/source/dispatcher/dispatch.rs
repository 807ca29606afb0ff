//! The Unix dispatcher: `sigaction` handlers, the replaced dispositions,
//! the self-pipe, the delivery thread and the listener table. The one
//! module of the crate with `unsafe` (see its `SAFETY:` comments); the
//! protocol it follows is in the parent module's docs.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use slab::Slab;

use super::disposition::{current, record, record_for, set, Disposition, Previous};
use super::errno;
use super::Arrivals;
use crate::reason::SourceError;
use crate::signal::{SecondSignal, Signal};
use crate::source::Sink;
use crate::CancelReason;

/// What the handler of one signal reads: lock-free.
struct Slot {
    /// The disposition cancelable replaced (null: the default).
    previous: AtomicPtr<Previous>,
    /// Listeners registered right now.
    listening: AtomicUsize,
    /// Listeners that a delivery of this signal reached and whose
    /// scope has not finished yet: they are cleaning up (but for those
    /// set to `SecondSignal::EndGrace`, which a second arrival only
    /// ends the grace period of).
    cleaning: AtomicUsize,
    /// How many times the signal arrived (wrapping); the delivery
    /// thread delivers every count it has not seen.
    arrivals: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            previous: AtomicPtr::new(std::ptr::null_mut()),
            listening: AtomicUsize::new(0),
            cleaning: AtomicUsize::new(0),
            arrivals: AtomicUsize::new(0),
        }
    }

    fn previous(&self) -> &'static Previous {
        record(self.previous.load(Ordering::SeqCst))
    }
}

static SLOTS: [Slot; Signal::ALL.len()] = [const { Slot::new() }; Signal::ALL.len()];

/// The write end of the pipe that wakes the delivery thread; `-1`
/// until the thread runs.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// The process-wide state behind the mutex: started on first use.
struct Dispatcher {
    signals: [SignalState; Signal::ALL.len()],
}

#[derive(Default)]
struct SignalState {
    /// The disposition cancelable's handler replaced, while that
    /// handler is in the process's chain for this signal (installed,
    /// and possibly wrapped since by a later handler).
    replaced: Option<Disposition>,
    listeners: Slab<Listener>,
}

struct Listener {
    /// `None` once the scope stopped listening (it runs its
    /// `on_cancel` callbacks).
    sink: Option<Target>,
    /// A delivery reached this listener: counted in `cleaning`.
    reached: bool,
    /// A second delivery reached it, while its scope was still running
    /// (in its grace period, which this ends: see `CancelScope::grace`).
    reached_again: bool,
    /// `arrivals` when last delivered to (or registered): a signal
    /// only reaches listeners registered before it arrived.
    seen: usize,
    /// Counted in `cleaning` once reached: its second signal does what
    /// the signal does without cancelable (`SecondSignal::Exit`).
    second_exits: bool,
}

/// Who a listener delivers to.
#[derive(Clone)]
enum Target {
    /// A listening scope: reached once, then cleaning up.
    Scope(Sink),
    /// A watch ([`Arrivals`]): every arrival, never cleaning up.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    Watch(Arc<Arrivals>),
}

static DISPATCHER: Mutex<Option<Dispatcher>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Dispatcher>> {
    crate::sync::lock(&DISPATCHER)
}

/// Keeps a scope listening for a signal; dropping it stops listening
/// and, for the last listener, gives the signal back the disposition
/// it had.
pub(crate) struct SignalGuard {
    signal: Signal,
    key: usize,
}

impl SignalGuard {
    /// Stops delivering the signal to the scope, which goes on to run
    /// its `on_cancel` callbacks: if a delivery reached the scope, a
    /// second one still counts as arriving during its cleanup until
    /// the guard is dropped.
    pub(crate) fn stop_listening(&mut self) {
        self.release(false);
    }

    /// `true` once the signal reached the scope a second time while it
    /// still listened: a scope in its grace period then ends it.
    pub(crate) fn reached_again(&self) -> bool {
        let dispatcher = lock();
        dispatcher
            .as_ref()
            .and_then(|dispatcher| {
                dispatcher.signals[self.signal.index()]
                    .listeners
                    .get(self.key)
            })
            .is_some_and(|listener| listener.reached_again)
    }

    fn release(&mut self, remove: bool) {
        let mut dispatcher = lock();
        let Some(dispatcher) = dispatcher.as_mut() else {
            return;
        };
        let state = &mut dispatcher.signals[self.signal.index()];
        let slot = &SLOTS[self.signal.index()];
        let Some(listener) = state.listeners.get_mut(self.key) else {
            return;
        };
        let stopped = listener.sink.take().is_some();
        if remove {
            let listener = state.listeners.remove(self.key);
            if listener.reached && listener.second_exits {
                slot.cleaning.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if stopped && slot.listening.fetch_sub(1, Ordering::SeqCst) == 1 {
            restore_if_installed(self.signal, state);
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.release(true);
    }
}

/// Starts delivering `signal` to `sink`; `second` says what a second
/// arrival during the scope's cleanup does.
pub(crate) fn listen(
    signal: Signal,
    sink: Sink,
    second: SecondSignal,
) -> Result<SignalGuard, SourceError> {
    register(signal, Target::Scope(sink), second == SecondSignal::Exit)
}

/// Starts counting every arrival of `signal` in `arrivals`.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn watch(signal: Signal, arrivals: Arc<Arrivals>) -> Result<SignalGuard, SourceError> {
    // A watch is never counted as cleaning up.
    register(signal, Target::Watch(arrivals), false)
}

fn register(
    signal: Signal,
    target: Target,
    second_exits: bool,
) -> Result<SignalGuard, SourceError> {
    let mut guard = lock();
    if guard.is_none() {
        *guard = Some(start().map_err(|error| {
            SourceError::with_cause(format!("cannot listen for {signal}"), error)
        })?);
    }
    let dispatcher = guard.as_mut().expect("the dispatcher was just started");
    let state = &mut dispatcher.signals[signal.index()];
    if state.replaced.is_none() {
        state.replaced = Some(install(signal).map_err(|error| {
            SourceError::with_cause(format!("cannot install a handler for {signal}"), error)
        })?);
    }
    let slot = &SLOTS[signal.index()];
    let key = state.listeners.insert(Listener {
        sink: Some(target),
        reached: false,
        reached_again: false,
        seen: slot.arrivals.load(Ordering::SeqCst),
        second_exits,
    });
    slot.listening.fetch_add(1, Ordering::SeqCst);
    Ok(SignalGuard { signal, key })
}

/// Starts the delivery thread and the pipe that wakes it.
fn start() -> io::Result<Dispatcher> {
    let (reader, writer) = io::pipe()?;
    // The handler must never block on a full pipe: a byte already in
    // it wakes the thread, which then looks at every pending signal.
    // SAFETY: fcntl(2) on a descriptor this function owns.
    unsafe {
        let fd = writer.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    std::thread::Builder::new()
        .name("cancelable-signals".into())
        .spawn(move || deliver(reader))?;
    // The write end stays open for the life of the process.
    WAKE.store(writer.into_raw_fd(), Ordering::SeqCst);
    Ok(Dispatcher {
        signals: Default::default(),
    })
}

/// The address of [`handle`], as `sigaction` reports it.
fn handler_address() -> libc::sighandler_t {
    handle as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t
}

/// Installs [`handle`] for `signal`, returning the disposition it
/// replaced (which the handler then passes signals on to).
fn install(signal: Signal) -> io::Result<Disposition> {
    let number = signal.number();
    let slot = &SLOTS[signal.index()];
    let before = current(number)?;
    if before.handler == handler_address() {
        // Put back by someone who saved it while it was installed: it
        // still passes signals on to what it replaced then.
        let previous = slot.previous();
        return Ok(Disposition {
            handler: previous.handler,
            flags: if previous.siginfo {
                libc::SA_SIGINFO
            } else {
                0
            },
            mask: before.mask,
        });
    }
    remember(slot, &before);
    // Behave towards the rest of the process like the handler being
    // replaced: its mask and restart behaviour if it was a function;
    // otherwise restart interrupted calls, as a signal that is not
    // caught never interrupts them.
    let ours = if before.is_function() {
        Disposition {
            handler: handler_address(),
            flags: libc::SA_SIGINFO
                | (before.flags & (libc::SA_RESTART | libc::SA_ONSTACK | libc::SA_NODEFER)),
            mask: before.mask,
        }
    } else {
        // SAFETY: sigemptyset(3) initialises the zeroed set.
        let mask = unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            mask
        };
        Disposition {
            handler: handler_address(),
            flags: libc::SA_SIGINFO | libc::SA_RESTART,
            mask,
        }
    };
    let replaced = set(number, &ours)?;
    if replaced.handler != before.handler {
        // Someone changed it in between: pass signals on to theirs.
        remember(slot, &replaced);
    }
    Ok(replaced)
}

/// Publishes `disposition` to the handler, in one store.
fn remember(slot: &Slot, disposition: &Disposition) {
    let previous = Previous {
        handler: disposition.handler,
        siginfo: disposition.flags & libc::SA_SIGINFO != 0,
        once: disposition.flags & libc::SA_RESETHAND != 0,
    };
    slot.previous.store(record_for(previous), Ordering::SeqCst);
}

/// The last listener left: if cancelable's handler is still the
/// installed one, put the disposition it replaced back. Otherwise a
/// later handler wraps it: it stays, passing signals on.
fn restore_if_installed(signal: Signal, state: &mut SignalState) {
    let Some(replaced) = state.replaced else {
        return;
    };
    let number = signal.number();
    if !current(number).is_ok_and(|now| now.handler == handler_address()) {
        return;
    }
    let mut restored = replaced;
    // A one-shot handler that has run since is gone, as it would be.
    if replaced.is_function() && SLOTS[signal.index()].previous().handler == libc::SIG_DFL {
        restored.handler = libc::SIG_DFL;
        restored.flags &= !(libc::SA_SIGINFO | libc::SA_RESETHAND);
    }
    if set(number, &restored).is_ok() {
        state.replaced = None;
    }
}

/// The signal handler.
extern "C" fn handle(number: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let errno = errno::save();
    let Some(index) = Signal::ALL.iter().position(|s| s.number() == number) else {
        return;
    };
    let slot = &SLOTS[index];
    slot.arrivals.fetch_add(1, Ordering::SeqCst);
    // One load: the address and its flags come from one record.
    let loaded = slot.previous.load(Ordering::SeqCst);
    let mut previous = record(loaded);
    if previous.is_function() {
        // A one-shot handler runs once, as the kernel runs it: only the
        // arrival that swaps it for the default calls it; another one
        // at the same time finds the default, as it would in the kernel.
        let call = !previous.once
            || slot
                .previous
                .compare_exchange(
                    loaded,
                    std::ptr::null_mut(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok();
        if call {
            // SAFETY: `previous.handler` is a handler address
            // `sigaction` reported for this signal, with `siginfo`
            // (read from the same immutable record) telling which of
            // the two signatures it has; it is called as the kernel
            // would call it.
            unsafe {
                if previous.siginfo {
                    let function: extern "C" fn(
                        libc::c_int,
                        *mut libc::siginfo_t,
                        *mut libc::c_void,
                    ) = std::mem::transmute(previous.handler);
                    function(number, info, context);
                } else {
                    let function: extern "C" fn(libc::c_int) =
                        std::mem::transmute(previous.handler);
                    function(number);
                }
            }
        } else {
            previous = &Previous::DEFAULT;
        }
    }
    let previous = previous.handler;
    // Read before waking the delivery thread, which counts the
    // listeners this arrival reaches in `cleaning`.
    let listening = slot.listening.load(Ordering::SeqCst) > 0;
    let cleaning = slot.cleaning.load(Ordering::SeqCst) > 0;
    // Nobody listens, or a scope this signal reached still cleans up:
    // the signal does what it would do without cancelable. With the
    // default disposition, that is the default action (every signal
    // of `Signal` terminates): reset it and raise the signal again,
    // delivered as soon as this handler returns. This runs before the
    // delivery thread is woken: a scope that the wake-up ends could
    // otherwise restore the default first and make it look as if a
    // later handler owned the signal. A later handler that chained
    // here does own it: then nothing.
    if (!listening || cleaning) && previous == libc::SIG_DFL {
        default_action_again(number);
    }
    if listening {
        let fd = WAKE.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write(2) of one byte from a live buffer; a full
            // pipe (EAGAIN) already holds a wake-up.
            unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
        }
    }
    errno::restore(errno);
}

/// The default action of `number`, again: if cancelable's handler is
/// the installed one, resets the default and raises the signal, which
/// is delivered as soon as the calling thread unblocks it (at once
/// outside a handler; when the handler returns inside one). If the
/// last listener restored the default meanwhile, raises it. A later
/// handler that chained to ours owns the signal: then nothing.
/// Async-signal-safe.
fn default_action_again(number: libc::c_int) {
    // SAFETY: sigaction(2), sigemptyset(3) and raise(3) are
    // async-signal-safe; the actions are live and zero-initialised.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(number, std::ptr::null(), &mut now) == 0 {
            if now.sa_sigaction == handler_address() {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut default.sa_mask);
                libc::sigaction(number, &default, std::ptr::null_mut());
                libc::raise(number);
            } else if now.sa_sigaction == libc::SIG_DFL {
                libc::raise(number);
            }
        }
    }
}

/// The delivery thread: fires the sinks of the listeners a signal
/// reached, outside signal context.
fn deliver(mut wake: io::PipeReader) {
    let mut buffer = [0u8; 64];
    // The arrivals of each signal delivered so far.
    let mut delivered = [0usize; Signal::ALL.len()];
    loop {
        match wake.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        for signal in Signal::ALL {
            let slot = &SLOTS[signal.index()];
            let arrivals = slot.arrivals.load(Ordering::SeqCst);
            if arrivals == delivered[signal.index()] {
                continue;
            }
            delivered[signal.index()] = arrivals;
            // Reached a first and a second time in this one round.
            let mut second_at_once = false;
            let mut watches: Vec<(Arc<Arrivals>, usize)> = Vec::new();
            let sinks: Vec<Sink> = {
                let mut dispatcher = lock();
                let Some(dispatcher) = dispatcher.as_mut() else {
                    continue;
                };
                dispatcher.signals[signal.index()]
                    .listeners
                    .iter_mut()
                    .filter_map(|(_, listener)| {
                        let new = arrivals.wrapping_sub(listener.seen);
                        if new == 0 {
                            return None;
                        }
                        listener.seen = arrivals;
                        let sink = match listener.sink.clone()? {
                            Target::Scope(sink) => sink,
                            Target::Watch(watch) => {
                                // Every arrival, even several at once;
                                // never cleaning up.
                                watches.push((watch, new));
                                return None;
                            }
                        };
                        let again = if listener.reached {
                            true
                        } else {
                            listener.reached = true;
                            if listener.second_exits {
                                slot.cleaning.fetch_add(1, Ordering::SeqCst);
                                second_at_once |= new > 1;
                            }
                            new > 1
                        };
                        if again {
                            // Firing the sink again wakes the scope,
                            // which then asks `reached_again`.
                            listener.reached_again = true;
                        }
                        Some(sink)
                    })
                    .collect()
            };
            for sink in sinks {
                sink.fire(CancelReason::Signal(signal));
            }
            for (watch, arrived) in watches {
                for _ in 0..arrived {
                    watch.arrive(signal);
                }
            }
            // The later arrivals came while the scope they reached
            // first was cleaning up: what the handler does for such
            // an arrival (a function replaced was called by it, an
            // ignored signal stays ignored).
            if second_at_once && slot.previous().handler == libc::SIG_DFL {
                default_action_again(signal.number());
            }
        }
    }
}
