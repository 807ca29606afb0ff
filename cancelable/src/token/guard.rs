//! The token's guards: [`CallbackGuard`] keeps a callback registered,
//! [`DropGuard`] and [`DropGuardRef`] cancel a token when dropped.

use std::fmt;

use super::{CancellationToken, TokenInner};
use crate::sync::Arc;

/// Keeps an [`on_cancel`](CancellationToken::on_cancel) callback registered;
/// dropping it unregisters the callback if it has not run yet.
#[must_use = "dropping the guard unregisters the callback at once; call `.detach()` to keep it"]
pub struct CallbackGuard {
    pub(super) registration: Option<(Arc<TokenInner>, usize)>,
}

impl CallbackGuard {
    /// Keeps the callback registered for as long as the token lives.
    pub fn detach(mut self) {
        self.registration = None;
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        if let Some((token, key)) = self.registration.take() {
            token.unregister(key);
        }
    }
}

impl fmt::Debug for CallbackGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackGuard")
            .field("registered", &self.registration.is_some())
            .finish()
    }
}

/// Cancels its token when dropped, unless disarmed; made by
/// [`CancellationToken::drop_guard`].
#[must_use = "dropping the guard cancels the token at once"]
pub struct DropGuard {
    /// `None` only once disarmed.
    pub(super) token: Option<CancellationToken>,
}

impl DropGuard {
    /// The guarded token.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let guard = CancellationToken::new().drop_guard();
    /// assert!(!guard.token().is_cancelled());
    /// # guard.disarm();
    /// ```
    pub fn token(&self) -> &CancellationToken {
        self.token
            .as_ref()
            .expect("a guard is disarmed only by `disarm`, which consumes it")
    }

    /// Gives the token back without cancelling it.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let token = CancellationToken::new().drop_guard().disarm();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn disarm(mut self) -> CancellationToken {
        self.token
            .take()
            .expect("a guard is disarmed only by `disarm`, which consumes it")
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            token.cancel();
        }
    }
}

impl fmt::Debug for DropGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropGuard")
            .field("token", &self.token)
            .finish()
    }
}

/// Cancels the token it borrows when dropped, unless disarmed; made by
/// [`CancellationToken::drop_guard_ref`].
#[must_use = "dropping the guard cancels the token at once"]
pub struct DropGuardRef<'a> {
    /// `None` only once disarmed.
    pub(super) token: Option<&'a CancellationToken>,
}

impl<'a> DropGuardRef<'a> {
    /// The guarded token.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let guard = token.drop_guard_ref();
    /// assert_eq!(guard.token(), &token);
    /// # guard.disarm();
    /// ```
    pub fn token(&self) -> &'a CancellationToken {
        self.token
            .expect("a guard is disarmed only by `disarm`, which consumes it")
    }

    /// Gives the token back without cancelling it.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let same = token.drop_guard_ref().disarm();
    /// assert!(!same.is_cancelled());
    /// ```
    pub fn disarm(mut self) -> &'a CancellationToken {
        self.token
            .take()
            .expect("a guard is disarmed only by `disarm`, which consumes it")
    }
}

impl Drop for DropGuardRef<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            token.cancel();
        }
    }
}

impl fmt::Debug for DropGuardRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropGuardRef")
            .field("token", &self.token)
            .finish()
    }
}
