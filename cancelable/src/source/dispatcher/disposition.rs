//! Signal dispositions as `sigaction` reads and sets them, and the record
//! of the replaced one that the handler reads (see the dispatcher's
//! protocol in the parent module). Unix only.

use std::io;
use std::sync::Mutex;

/// The disposition cancelable's handler replaced, as the handler reads
/// it: one immutable record, published through one pointer, so that a
/// handler never pairs an address with another disposition's flags.
/// Records are interned (`record_for`) and never freed: a pointer the
/// handler loaded stays valid for the life of the process.
#[derive(PartialEq, Eq)]
pub(super) struct Previous {
    /// `SIG_DFL`, `SIG_IGN` or a function's address.
    pub(super) handler: libc::sighandler_t,
    /// Whether that function takes `SA_SIGINFO`'s three arguments.
    pub(super) siginfo: bool,
    /// Whether it was installed with `SA_RESETHAND` (runs once, then
    /// the default action).
    pub(super) once: bool,
}

impl Previous {
    /// What a null `Slot::previous` stands for.
    pub(super) const DEFAULT: Previous = Previous {
        handler: libc::SIG_DFL,
        siginfo: false,
        once: false,
    };

    pub(super) fn is_function(&self) -> bool {
        self.handler != libc::SIG_DFL && self.handler != libc::SIG_IGN
    }
}

/// Every record ever published, so that equal dispositions share one:
/// the leak is bounded by the distinct handlers the process installs.
static RECORDS: Mutex<Vec<&'static Previous>> = Mutex::new(Vec::new());

/// The interned record of `previous` (outside signal context only).
pub(super) fn record_for(previous: Previous) -> *mut Previous {
    if previous == Previous::DEFAULT {
        return std::ptr::null_mut();
    }
    let mut records = crate::sync::lock(&RECORDS);
    let record = match records.iter().find(|record| ***record == previous) {
        Some(record) => *record,
        None => {
            let record: &'static Previous = Box::leak(Box::new(previous));
            records.push(record);
            record
        }
    };
    (record as *const Previous).cast_mut()
}

/// The record `pointer` (from `Slot::previous`) points to.
pub(super) fn record(pointer: *mut Previous) -> &'static Previous {
    // SAFETY: `Slot::previous` holds null or a pointer `record_for`
    // made from a leaked, never mutated, never freed `Box`.
    unsafe { pointer.cast_const().as_ref() }.unwrap_or(&Previous::DEFAULT)
}

/// A signal disposition, as `sigaction` reads and sets it.
#[derive(Clone, Copy)]
pub(super) struct Disposition {
    pub(super) handler: libc::sighandler_t,
    pub(super) flags: libc::c_int,
    pub(super) mask: libc::sigset_t,
}

impl Disposition {
    pub(super) fn is_function(&self) -> bool {
        self.handler != libc::SIG_DFL && self.handler != libc::SIG_IGN
    }
}

/// The disposition of `signal` right now.
pub(super) fn current(number: libc::c_int) -> io::Result<Disposition> {
    // SAFETY: sigaction(2) only writes the current disposition into a
    // live, zero-initialised `sigaction` (a valid value of that type).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(number, std::ptr::null(), &mut action) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Disposition {
            handler: action.sa_sigaction,
            flags: action.sa_flags,
            mask: action.sa_mask,
        })
    }
}

/// Sets the disposition of `signal`, returning the one it replaced.
pub(super) fn set(number: libc::c_int, disposition: &Disposition) -> io::Result<Disposition> {
    // SAFETY: both `sigaction`s are live and start zero-initialised;
    // the handler set is `SIG_DFL`, `SIG_IGN`, [`handle`] (whose
    // signature matches the `SA_SIGINFO` it is installed with) or a
    // disposition `sigaction` itself reported earlier.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = disposition.handler;
        action.sa_flags = disposition.flags;
        action.sa_mask = disposition.mask;
        let mut replaced: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(number, &action, &mut replaced) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Disposition {
            handler: replaced.sa_sigaction,
            flags: replaced.sa_flags,
            mask: replaced.sa_mask,
        })
    }
}
