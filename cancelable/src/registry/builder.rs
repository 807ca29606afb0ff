//! [`RegistryBuilder`]: the settings of a new [`Registry`], each checked.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    history, live, Inner, Registry, RegistryError, DEFAULT_HISTORY_CAPACITY, DEFAULT_STUCK_AFTER,
    GLOBAL, MAX_HISTORY_CAPACITY,
};

/// Settings of a new [`Registry`].
///
/// ```
/// use std::time::Duration;
/// use cancelable::registry::{Registry, RegistryError};
///
/// let registry = Registry::builder()
///     .history_capacity(10_000)
///     .stuck_after(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(registry.history_capacity(), 10_000);
/// assert_eq!(
///     Registry::builder().history_capacity(0).build().err(),
///     Some(RegistryError::ZeroCapacity)
/// );
/// # Ok::<(), RegistryError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` or `install_global`"]
pub struct RegistryBuilder {
    history_capacity: usize,
    stuck_after: Duration,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            history_capacity: DEFAULT_HISTORY_CAPACITY,
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }
}

impl RegistryBuilder {
    /// How many finished operations the history keeps (the newest ones);
    /// at least 1, at most [`MAX_HISTORY_CAPACITY`] (16,777,216), default
    /// 1,000. The history's memory grows as it fills, up to the capacity.
    pub fn history_capacity(mut self, capacity: usize) -> Self {
        self.history_capacity = capacity;
        self
    }

    /// How long after its cancel request a running operation counts as
    /// stuck; above zero, default 1 s.
    pub fn stuck_after(mut self, threshold: Duration) -> Self {
        self.stuck_after = threshold;
        self
    }

    /// The registry, or an `Err` saying which setting is out of range.
    pub fn build(self) -> Result<Registry, RegistryError> {
        if self.history_capacity == 0 {
            return Err(RegistryError::ZeroCapacity);
        }
        if self.history_capacity > MAX_HISTORY_CAPACITY {
            return Err(RegistryError::CapacityTooLarge {
                capacity: self.history_capacity,
            });
        }
        if self.stuck_after.is_zero() {
            return Err(RegistryError::ZeroStuckThreshold);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                shards: (0..live::SHARDS).map(|_| live::Shard::default()).collect(),
                keys: (0..live::SHARDS).map(|_| Mutex::default()).collect(),
                history: history::History::new(self.history_capacity),
                names: Default::default(),
                stuck_after: self.stuck_after,
                joins: AtomicU64::new(0),
                #[cfg(feature = "redis")]
                join_observer: std::sync::RwLock::new(None),
            }),
        })
    }

    /// Builds the registry and makes it the [`global`](super::global) one. Call it once,
    /// early in `main`: once the global registry is in use (or installed),
    /// this is an `Err`.
    ///
    /// ```
    /// use cancelable::registry::{global, Registry};
    ///
    /// let installed = Registry::builder().history_capacity(50).install_global()?;
    /// assert_eq!(global().history_capacity(), 50);
    /// assert!(Registry::builder().install_global().is_err());
    /// # let _ = installed;
    /// # Ok::<(), cancelable::registry::RegistryError>(())
    /// ```
    pub fn install_global(self) -> Result<&'static Registry, RegistryError> {
        let registry = self.build()?;
        let mut installed = false;
        let global = GLOBAL.get_or_init(|| {
            installed = true;
            registry
        });
        if installed {
            Ok(global)
        } else {
            Err(RegistryError::GlobalAlreadySet)
        }
    }
}
