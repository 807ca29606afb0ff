//! [`Source::resource`]: cancels a scope when process memory, system memory
//! or the disk use of a path goes above a threshold.
//!
//! It is a condition source (see [`Source::condition`]): the readings are
//! taken on a blocking thread — `sysinfo` reads `/proc` and calls
//! `statvfs`, which can block — when the body first pends and then every
//! check interval. The first threshold found crossed cancels the scope
//! with [`CancelReason::Condition`](crate::CancelReason::Condition) and a
//! message naming the resource, its reading and the threshold.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sysinfo::{
    DiskRefreshKind, Disks, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
};

use super::{Condition, Source, SourceKind};

/// The thresholds of a [`Source::resource`], set builder-style.
///
/// A reading *above* its threshold cancels the scope; at least one
/// threshold must be set. Values are checked by [`Source::resource`],
/// which returns a [`ResourceError`] saying the valid range.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, ResourceLimits, Source};
///
/// let source = Source::resource(
///     ResourceLimits::new()
///         .process_rss_bytes(2 << 30) // 2 GiB
///         .system_memory_percent(95.0)
///         .disk_used_percent("/", 99.0)
///         .check_every(Duration::from_millis(500)),
/// )
/// .expect("valid thresholds");
/// let scope = CancelScope::new().source(source);
/// # drop(scope);
/// ```
#[derive(Clone, Debug)]
pub struct ResourceLimits {
    process_rss: Option<u64>,
    system_memory: Option<Threshold>,
    disks: Vec<(PathBuf, Threshold)>,
    check_every: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits::new()
    }
}

impl ResourceLimits {
    /// No thresholds yet, checked every second.
    pub fn new() -> Self {
        ResourceLimits {
            process_rss: None,
            system_memory: None,
            disks: Vec::new(),
            check_every: Duration::from_secs(1),
        }
    }

    /// Cancels when this process's resident memory (RSS) is above `bytes`.
    pub fn process_rss_bytes(mut self, bytes: u64) -> Self {
        self.process_rss = Some(bytes);
        self
    }

    /// Cancels when the system's used memory is above `bytes`.
    pub fn system_memory_bytes(mut self, bytes: u64) -> Self {
        self.system_memory = Some(Threshold::Bytes(bytes));
        self
    }

    /// Cancels when the system's used memory is above `percent` (0 to 100)
    /// of its total memory.
    pub fn system_memory_percent(mut self, percent: f64) -> Self {
        self.system_memory = Some(Threshold::Percent(percent));
        self
    }

    /// Cancels when the used space of the disk holding `path` (which must
    /// exist, on a disk: not on a pseudo-filesystem such as `/proc`, `/sys`
    /// or a tmpfs like `/dev/shm`) is above `bytes`. May be given for
    /// several paths.
    pub fn disk_used_bytes(mut self, path: impl Into<PathBuf>, bytes: u64) -> Self {
        self.disks.push((path.into(), Threshold::Bytes(bytes)));
        self
    }

    /// Cancels when the used space of the disk holding `path` (which must
    /// exist, on a disk: not on a pseudo-filesystem) is above `percent`
    /// (0 to 100) of its size. May be given for several paths.
    pub fn disk_used_percent(mut self, path: impl Into<PathBuf>, percent: f64) -> Self {
        self.disks.push((path.into(), Threshold::Percent(percent)));
        self
    }

    /// How often the readings are taken (default 1 s; must not be zero).
    pub fn check_every(mut self, interval: Duration) -> Self {
        self.check_every = interval;
        self
    }
}

/// Thresholds that [`Source::resource`] refuses, or readings this system
/// cannot give; the message says which and what is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceError {
    message: String,
}

impl ResourceError {
    fn new(message: impl Into<String>) -> Self {
        ResourceError {
            message: message.into(),
        }
    }

    /// What is wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ResourceError {}

impl Source {
    /// Fires when a reading of [`ResourceLimits`] goes above its threshold:
    /// this process's RSS, the system's used memory, the used space of the
    /// disk holding a path. The readings are taken on a blocking thread when
    /// the body first pends and then every
    /// [`check_every`](ResourceLimits::check_every); the scope is cancelled
    /// with [`CancelReason::Condition`](crate::CancelReason::Condition) and
    /// a message such as `process RSS is 61.2 MiB (64172032 bytes), above
    /// the threshold of 1 B`.
    ///
    /// # Errors
    ///
    /// No threshold set, a percentage outside 0 to 100, a zero check
    /// interval, a path that does not exist or is on no disk this system
    /// lists (on Linux, also one on a pseudo-filesystem: proc, sysfs,
    /// tmpfs...), or readings this platform does not support.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::{CancelReason, CancelScope, ResourceLimits, Source};
    ///
    /// # futures::executor::block_on(async {
    /// // Any process uses more than one byte: cancelled at the first check.
    /// let source = Source::resource(ResourceLimits::new().process_rss_bytes(1)).unwrap();
    /// let cancelled = CancelScope::new()
    ///     .source(source)
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(cancelled.reason(), &CancelReason::Condition);
    /// assert!(cancelled.message().unwrap().starts_with("process RSS is"));
    ///
    /// let error = Source::resource(ResourceLimits::new().system_memory_percent(150.0)).unwrap_err();
    /// assert!(error.message().contains("between 0 and 100"), "{error}");
    /// # });
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "resource")))]
    pub fn resource(limits: ResourceLimits) -> Result<Source, ResourceError> {
        let check_every = limits.check_every;
        let sampler = Sampler::new(limits)?;
        let sampler = Mutex::new(sampler);
        let predicate = move || crate::sync::lock(&sampler).crossed();
        Ok(Source {
            kind: SourceKind::Condition(Condition::Described(Arc::new(predicate)), check_every),
        })
    }
}

/// The validated thresholds and the `sysinfo` handles that read them.
struct Sampler {
    pid: Pid,
    process_rss: Option<u64>,
    system_memory: Option<Threshold>,
    /// The mount point of each disk threshold's path, with the path as
    /// the user gave it (for the message).
    disks: Vec<(PathBuf, PathBuf, Threshold)>,
    system: System,
    disk_list: Option<Disks>,
}

impl Sampler {
    fn new(limits: ResourceLimits) -> Result<Sampler, ResourceError> {
        if limits.check_every.is_zero() {
            return Err(ResourceError::new(
                "the resource check interval must be greater than zero (try 500ms or 1s)",
            ));
        }
        if limits.process_rss.is_none() && limits.system_memory.is_none() && limits.disks.is_empty()
        {
            return Err(ResourceError::new(
                "no resource threshold is set: call process_rss_bytes, system_memory_bytes, \
                 system_memory_percent, disk_used_bytes or disk_used_percent",
            ));
        }
        if let Some(threshold) = limits.system_memory {
            check_percent("system memory", threshold)?;
        }
        let unsupported = |what: &str, error: sysinfo::Error| {
            ResourceError::new(format!(
                "cannot read {what} on this system ({error}); drop that threshold"
            ))
        };
        let pid =
            sysinfo::get_current_pid().map_err(|error| unsupported("this process's id", error))?;
        let system = System::new().map_err(|error| unsupported("memory use", error))?;
        let mut disks = Vec::new();
        let mut disk_list = None;
        if !limits.disks.is_empty() {
            let list = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing())
                .map_err(|error| unsupported("disk use", error))?;
            for (path, threshold) in limits.disks {
                check_percent(&format!("disk use of {}", path.display()), threshold)?;
                let mount_point = mount_point(&list, &path)?;
                disks.push((path, mount_point, threshold));
            }
            disk_list = Some(list);
        }
        Ok(Sampler {
            pid,
            process_rss: limits.process_rss,
            system_memory: limits.system_memory,
            disks,
            system,
            disk_list,
        })
    }

    /// The message of the first threshold crossed, if any. A reading the
    /// system does not give this time (the disk was unmounted, say)
    /// counts as not crossed.
    fn crossed(&mut self) -> Option<String> {
        if let Some(threshold) = self.process_rss {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[self.pid]),
                false,
                ProcessRefreshKind::nothing().with_memory(),
            );
            if let Some(process) = self.system.process(self.pid) {
                let rss = process.memory();
                if rss > threshold {
                    return Some(format!(
                        "process RSS is {}, above the threshold of {}",
                        bytes(rss),
                        bytes(threshold)
                    ));
                }
            }
        }
        if let Some(threshold) = self.system_memory {
            self.system
                .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            let (used, total) = (self.system.used_memory(), self.system.total_memory());
            if let Some(message) = over("system memory use", used, total, threshold) {
                return Some(message);
            }
        }
        if let Some(list) = &mut self.disk_list {
            list.refresh_specifics(false, DiskRefreshKind::nothing().with_storage());
            for (path, mount_point, threshold) in &self.disks {
                let Some(disk) = list.iter().find(|disk| disk.mount_point() == mount_point) else {
                    continue;
                };
                let total = disk.total_space();
                let used = total.saturating_sub(disk.available_space());
                let what = format!(
                    "disk use of {} (mounted at {})",
                    path.display(),
                    mount_point.display()
                );
                if let Some(message) = over(&what, used, total, *threshold) {
                    return Some(message);
                }
            }
        }
        None
    }
}

/// A percentage threshold must be a number from 0 to 100.
fn check_percent(what: &str, threshold: Threshold) -> Result<(), ResourceError> {
    match threshold {
        Threshold::Percent(percent) if !(0.0..=100.0).contains(&percent) => {
            Err(ResourceError::new(format!(
                "the {what} threshold {percent}% is out of range: a percentage is between 0 and 100"
            )))
        }
        _ => Ok(()),
    }
}

/// The mount point of the disk holding `path`: the longest one that is a
/// prefix of its canonical form.
fn mount_point(list: &Disks, path: &Path) -> Result<PathBuf, ResourceError> {
    let canonical = path.canonicalize().map_err(|error| {
        ResourceError::new(format!(
            "the disk threshold's path {} cannot be used ({error}): give an existing path",
            path.display()
        ))
    })?;
    let disk = list
        .iter()
        .map(|disk| disk.mount_point())
        .filter(|mount_point| canonical.starts_with(mount_point))
        .max_by_key(|mount_point| mount_point.components().count())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            ResourceError::new(format!(
                "no disk this system lists holds {}: give a path on a mounted disk",
                path.display()
            ))
        })?;
    // The filesystem actually mounted there may be a pseudo one (proc,
    // sysfs, tmpfs...) inside the disk's tree: it has no disk use of its own.
    if let Some((mounted_at, kind)) = innermost_mount(&canonical) {
        if mounted_at != disk {
            return Err(ResourceError::new(format!(
                "{} is on a {kind} filesystem mounted at {}, which is not a disk (proc, sysfs, \
                 tmpfs and the like have no disk use to watch): give a path on a mounted disk",
                path.display(),
                mounted_at.display()
            )));
        }
    }
    Ok(disk)
}

/// The innermost mount holding `canonical` and its filesystem type, from
/// `/proc/self/mounts` (Linux); `None` where the table cannot be read.
fn innermost_mount(canonical: &Path) -> Option<(PathBuf, String)> {
    let table = std::fs::read_to_string("/proc/self/mounts").ok()?;
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mounted_at = PathBuf::from(unescape_mount_field(fields.next()?));
            let kind = fields.next()?.to_owned();
            Some((mounted_at, kind))
        })
        .filter(|(mounted_at, _)| canonical.starts_with(mounted_at))
        // The last of equally deep mounts is the one on top.
        .fold(
            None,
            |innermost: Option<(PathBuf, String)>, mount| match &innermost {
                Some((best, _)) if best.components().count() > mount.0.components().count() => {
                    innermost
                }
                _ => Some(mount),
            },
        )
}

/// A field of `/proc/self/mounts`, whose spaces, tabs, newlines and
/// backslashes are written as octal escapes (`\040`).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The message if `used` (out of `total`) is above `threshold`.
fn over(what: &str, used: u64, total: u64, threshold: Threshold) -> Option<String> {
    match threshold {
        Threshold::Bytes(limit) => (used > limit).then(|| {
            format!(
                "{what} is {}, above the threshold of {}",
                bytes(used),
                bytes(limit)
            )
        }),
        Threshold::Percent(limit) => {
            if total == 0 {
                return None;
            }
            let percent = used as f64 * 100.0 / total as f64;
            (percent > limit).then(|| {
                format!(
                    "{what} is {percent:.1}% ({} of {}), above the threshold of {limit}%",
                    bytes(used),
                    bytes(total)
                )
            })
        }
    }
}

/// `n` bytes for people: `61.2 MiB (64172032 bytes)`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit} ({n} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_written_for_people() {
        assert_eq!(bytes(1), "1 B");
        assert_eq!(bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(bytes(3 << 30), "3.0 GiB (3221225472 bytes)");
    }

    #[test]
    fn a_percentage_threshold_is_compared_to_the_share_used() {
        assert_eq!(over("x", 50, 100, Threshold::Percent(50.0)), None);
        let message = over("x", 51, 100, Threshold::Percent(50.0)).unwrap();
        assert!(message.starts_with("x is 51.0%"), "{message}");
        assert_eq!(over("x", 10, 0, Threshold::Percent(0.0)), None);
    }
}
