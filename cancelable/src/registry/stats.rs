//! Statistics of finished operations: counts by status, and histograms of
//! durations and cancellation lag, per operation name.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use super::{lock, stuck, Now};
use crate::context::NameHasher;
use crate::OperationStatus;

/// Sub-buckets per power of two: values are kept within 1/8 of their size
/// (the midpoint of a bucket is within 12.5 % of any value in it).
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
/// Buckets covering every `u64` of nanoseconds.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// A histogram of durations with logarithmic buckets (four per power of
/// two), so that percentiles are exact to within an eighth of the value,
/// whatever the range, in a fixed 2 KiB.
///
/// ```
/// use std::time::Duration;
/// use cancelable::registry::Histogram;
///
/// let mut histogram = Histogram::new();
/// for ms in 1..=100 {
///     histogram.record(Duration::from_millis(ms));
/// }
/// assert_eq!(histogram.count(), 100);
/// let median = histogram.percentile(0.5).unwrap();
/// assert!(median >= Duration::from_millis(44) && median <= Duration::from_millis(57));
/// assert_eq!(histogram.max(), Some(Duration::from_millis(100)));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Allocated at the first value.
    counts: Option<Box<[u64; BUCKETS]>>,
    count: u64,
    sum_nanos: u128,
    min_nanos: u64,
    max_nanos: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let exponent = 63 - nanos.leading_zeros();
    let sub = (nanos >> (exponent - SUB_BITS)) as usize & (SUB - 1);
    SUB + (exponent - SUB_BITS) as usize * SUB + sub
}

/// The smallest and largest value of a bucket, in nanoseconds.
fn bucket_bounds(bucket: usize) -> (u64, u64) {
    if bucket < SUB {
        return (bucket as u64, bucket as u64);
    }
    let exponent = (bucket - SUB) / SUB + SUB_BITS as usize;
    let sub = ((bucket - SUB) % SUB) as u64;
    let width = 1u64 << (exponent - SUB_BITS as usize);
    let low = (SUB as u64 + sub) << (exponent - SUB_BITS as usize);
    (low, low.saturating_add(width - 1))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Histogram {
            counts: None,
            count: 0,
            sum_nanos: 0,
            min_nanos: u64::MAX,
            max_nanos: 0,
        }
    }

    /// Adds one value.
    pub fn record(&mut self, value: Duration) {
        let value = nanos(value);
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        counts[bucket_of(value)] += 1;
        self.count += 1;
        self.sum_nanos += u128::from(value);
        self.min_nanos = self.min_nanos.min(value);
        self.max_nanos = self.max_nanos.max(value);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        let Some(theirs) = &other.counts else {
            return;
        };
        let ours = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        for (ours, theirs) in ours.iter_mut().zip(theirs.iter()) {
            *ours += theirs;
        }
        self.count += other.count;
        self.sum_nanos += other.sum_nanos;
        self.min_nanos = self.min_nanos.min(other.min_nanos);
        self.max_nanos = self.max_nanos.max(other.max_nanos);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `true` if no value was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The exact mean, or `None` if empty.
    pub fn mean(&self) -> Option<Duration> {
        let mean = self.sum_nanos.checked_div(u128::from(self.count))?;
        Some(Duration::from_nanos(
            u64::try_from(mean).unwrap_or(u64::MAX),
        ))
    }

    /// The smallest value recorded (exact).
    pub fn min(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.min_nanos))
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.max_nanos))
    }

    /// The value below which a fraction `quantile` (0.0 to 1.0, clamped;
    /// NaN counts as 0.5) of the values lie, to within an eighth of it;
    /// `None` if empty. `percentile(0.99)` is the 99th percentile.
    pub fn percentile(&self, quantile: f64) -> Option<Duration> {
        let counts = self.counts.as_ref().filter(|_| self.count > 0)?;
        let quantile = if quantile.is_nan() {
            0.5
        } else {
            quantile.clamp(0.0, 1.0)
        };
        // The rank of the value wanted, from 1.
        let rank = ((quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bucket, &count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bucket_bounds(bucket);
                let middle = low + (high - low) / 2;
                let value = middle.clamp(self.min_nanos, self.max_nanos);
                return Some(Duration::from_nanos(value));
            }
        }
        self.max()
    }

    /// The non-empty buckets, smallest first: `(lowest, highest, count)`.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, Duration, u64)> + '_ {
        self.counts
            .iter()
            .flat_map(|counts| counts.iter().enumerate())
            .filter(|(_, &count)| count > 0)
            .map(|(bucket, &count)| {
                let (low, high) = bucket_bounds(bucket);
                (Duration::from_nanos(low), Duration::from_nanos(high), count)
            })
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("mean", &self.mean())
            .field("p50", &self.percentile(0.5))
            .field("p99", &self.percentile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

/// Serialised as a summary (seconds as floats) plus the non-empty buckets.
#[cfg(feature = "serde")]
impl serde::Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let secs = |value: Option<Duration>| value.map(|value| value.as_secs_f64());
        let buckets: Vec<(f64, f64, u64)> = self
            .buckets()
            .map(|(low, high, count)| (low.as_secs_f64(), high.as_secs_f64(), count))
            .collect();
        let mut summary = serializer.serialize_struct("Histogram", 8)?;
        summary.serialize_field("count", &self.count)?;
        summary.serialize_field("mean_secs", &secs(self.mean()))?;
        summary.serialize_field("min_secs", &secs(self.min()))?;
        summary.serialize_field("p50_secs", &secs(self.percentile(0.5)))?;
        summary.serialize_field("p90_secs", &secs(self.percentile(0.9)))?;
        summary.serialize_field("p99_secs", &secs(self.percentile(0.99)))?;
        summary.serialize_field("max_secs", &secs(self.max()))?;
        summary.serialize_field("buckets", &buckets)?;
        summary.end()
    }
}

/// What the registry knows about the operations of one name (or of all).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OperationStats {
    /// Registered operations running now.
    pub running: u64,
    /// Operations that stopped with a value or `Ok`.
    pub completed: u64,
    /// Operations that ended cancelled (a source fired, or the body gave
    /// up after a checkpoint saw the cancellation, or it was dropped).
    pub cancelled: u64,
    /// Operations whose body returned its own error or panicked.
    pub failed: u64,
    /// Of the `completed` ones, those that completed though a cancel was
    /// requested while they ran: the body finished before it saw the
    /// cancellation (a checkpoint or cancellation-aware wait would have
    /// returned it).
    pub completed_despite_cancel: u64,
    /// Running operations stuck after cancel: cancelled longer ago than
    /// their grace period (and the registry's stuck threshold), or, without
    /// a grace period, than the threshold.
    pub stuck: u64,
    /// How long finished operations ran.
    pub durations: Histogram,
    /// Cancellation lag: from the cancel request to the scope's exit, for
    /// every operation cancelled while it ran.
    pub lag: Histogram,
}

impl OperationStats {
    /// Operations that finished, however.
    pub fn finished(&self) -> u64 {
        self.completed + self.cancelled + self.failed
    }

    pub(crate) fn merge(&mut self, other: &OperationStats) {
        self.running += other.running;
        self.completed += other.completed;
        self.cancelled += other.cancelled;
        self.failed += other.failed;
        self.completed_despite_cancel += other.completed_despite_cancel;
        self.stuck += other.stuck;
        self.durations.merge(&other.durations);
        self.lag.merge(&other.lag);
    }

    /// Counts a finished operation.
    pub(crate) fn record(
        &mut self,
        status: OperationStatus,
        duration: Option<Duration>,
        lag: Option<Duration>,
    ) {
        match status {
            OperationStatus::Completed => {
                self.completed += 1;
                self.completed_despite_cancel += u64::from(lag.is_some());
            }
            OperationStatus::Failed => self.failed += 1,
            // Still `Running` or `Pending` cannot happen at exit: the scope
            // sets its final status first. Count it as cancelled rather
            // than lose it.
            _ => self.cancelled += 1,
        }
        if let Some(duration) = duration {
            self.durations.record(duration);
        }
        if let Some(lag) = lag {
            self.lag.record(lag);
        }
    }
}

/// Statistics (feature `registry`).
impl super::Registry {
    /// Counts by status, stuck operations, and duration and cancellation
    /// lag histograms, in total and per operation name (unnamed
    /// operations under `""`), since the registry was made. The first
    /// [`COUNTED_NAMES`](super::COUNTED_NAMES) distinct names are counted
    /// under their own; operations with any other name under
    /// [`OTHER_NAMES`](super::OTHER_NAMES), so that names from outside
    /// (request paths) cannot grow the statistics without bound.
    ///
    /// ```
    /// use cancelable::registry::Registry;
    /// use cancelable::CancelScope;
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// CancelScope::new().name("fetch").register_in(&registry).run(async {}).await.unwrap();
    /// let statistics = registry.statistics();
    /// let fetch = &statistics.by_name["fetch"];
    /// assert_eq!((fetch.completed, fetch.cancelled, fetch.failed), (1, 0, 0));
    /// assert_eq!(fetch.durations.count(), 1);
    /// assert!(fetch.lag.is_empty());
    /// # });
    /// ```
    pub fn statistics(&self) -> Statistics {
        let mut statistics = Statistics::default();
        for shard in self.inner.shards.iter() {
            let state = lock(&shard.state);
            for (name, stats) in state.stats.iter() {
                statistics
                    .by_name
                    .entry(name.to_string())
                    .or_default()
                    .merge(stats);
            }
        }
        let mut now = Now::new();
        let real_now = now.real();
        for record in self.inner.live_records() {
            let name = self.inner.names.counted(record.name().unwrap_or_default());
            let stats = statistics.by_name.entry(name.into_owned()).or_default();
            stats.running += 1;
            if record.is_stuck(real_now) {
                stats.stuck += 1;
                if let Some(ago) = record.cancelled_for(real_now) {
                    stuck::report(&record, ago);
                }
            }
        }
        for stats in statistics.by_name.values() {
            statistics.total.merge(stats);
        }
        statistics
    }
}

/// The registry's statistics: see [`Registry::statistics`](super::Registry::statistics).
///
/// Operations without a name are listed under the name `""`.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Statistics {
    /// Every operation together.
    pub total: OperationStats,
    /// Per operation name: at most [`COUNTED_NAMES`](super::COUNTED_NAMES)
    /// names, and [`OTHER_NAMES`](super::OTHER_NAMES) for the rest.
    pub by_name: BTreeMap<String, OperationStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous_high = None;
        for bucket in 0..BUCKETS {
            let (low, high) = bucket_bounds(bucket);
            assert!(low <= high);
            if let Some(previous) = previous_high {
                assert_eq!(low, previous + 1, "bucket {bucket}");
            }
            assert_eq!(bucket_of(low), bucket);
            assert_eq!(bucket_of(high), bucket);
            previous_high = Some(high);
        }
        assert_eq!(previous_high, Some(u64::MAX));
    }

    #[test]
    fn percentiles_are_within_an_eighth() {
        let mut histogram = Histogram::new();
        for micros in 1..=10_000u64 {
            histogram.record(Duration::from_micros(micros));
        }
        for (quantile, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = histogram.percentile(quantile).unwrap().as_secs_f64() * 1e6;
            assert!((got - exact).abs() <= exact / 8.0, "p{quantile}: {got}");
        }
        assert_eq!(histogram.mean(), Some(Duration::from_nanos(5_000_500)));
        assert_eq!(Histogram::new().percentile(0.5), None);
        assert_eq!(Histogram::new().mean(), None);
    }
}

/// One live-set shard's statistics by operation name, updated at every
/// registered operation's exit (under the shard's lock).
///
/// Names are mostly `&'static str` (a `#[cancellable]` function's, a
/// route's): the last such name is remembered by address, so that a run
/// of operations of one name finds its entry without hashing the name.
#[derive(Default)]
pub(crate) struct ByName {
    entries: Vec<(Cow<'static, str>, OperationStats)>,
    /// Name → place in `entries`.
    places: HashMap<Cow<'static, str>, usize, BuildHasherDefault<NameHasher>>,
    /// The last borrowed name looked up (its address and length) and its
    /// place: two `&'static str` with the same address and length are the
    /// same text.
    last: Option<(usize, usize, usize)>,
}

impl ByName {
    /// The statistics of operations named `name` (no name: `""`), kept
    /// under the name `counted` gives for it (asked only for a name not
    /// found, see `names.rs`).
    pub(crate) fn of(
        &mut self,
        name: Option<&Cow<'static, str>>,
        counted: impl FnOnce(Cow<'static, str>) -> Cow<'static, str>,
    ) -> &mut OperationStats {
        let name = name.unwrap_or(&Cow::Borrowed(""));
        let borrowed = match name {
            Cow::Borrowed(text) => Some((text.as_ptr() as usize, text.len())),
            Cow::Owned(_) => None,
        };
        let place = match (self.last, borrowed) {
            (Some((address, len, place)), Some(name)) if (address, len) == name => place,
            _ => {
                let place = match self.places.get(name.as_ref()) {
                    Some(place) => *place,
                    None => {
                        let counted = counted(name.clone());
                        match self.places.get(counted.as_ref()) {
                            Some(place) => *place,
                            None => {
                                self.entries
                                    .push((counted.clone(), OperationStats::default()));
                                self.places.insert(counted, self.entries.len() - 1);
                                self.entries.len() - 1
                            }
                        }
                    }
                };
                if let Some((address, len)) = borrowed {
                    self.last = Some((address, len, place));
                }
                place
            }
        };
        &mut self.entries[place].1
    }

    /// Every name and its statistics.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Cow<'static, str>, &OperationStats)> {
        self.entries.iter().map(|(name, stats)| (name, stats))
    }
}
