//! The console's text helpers: HTML escaping (the one way any value
//! reaches the page), metadata lists, and the words for durations and
//! times.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Text escaped for an HTML text node or a quoted attribute value: `&`,
/// `<`, `>`, `"` and `'` become character references. Every name, key,
/// message, reason and metadata entry goes through it.
pub(super) struct Esc<'a>(pub(super) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut from = 0;
        for (at, byte) in text.bytes().enumerate() {
            let reference = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&text[from..at])?;
            f.write_str(reference)?;
            from = at + 1;
        }
        f.write_str(&text[from..])
    }
}

/// A duration in the words an operator reads: `850 ms`, `4.2 s`,
/// `3 min 05 s`, `2 h 07 min`.
pub(super) struct Words(pub(super) Duration);

impl fmt::Display for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duration = self.0;
        let secs = duration.as_secs();
        if secs == 0 {
            write!(f, "{} ms", duration.as_millis())
        } else if secs < 60 {
            write!(f, "{:.1} s", duration.as_secs_f64())
        } else if secs < 3600 {
            write!(f, "{} min {:02} s", secs / 60, secs % 60)
        } else {
            write!(f, "{} h {:02} min", secs / 3600, secs % 3600 / 60)
        }
    }
}

/// A wall-clock time as `2026-12-07 08:15:03 UTC` (the calendar from the
/// days since 1970, Howard Hinnant's `civil_from_days`).
pub(super) struct Utc(pub(super) SystemTime);

impl Utc {
    /// Milliseconds since 1970 (0 before it).
    pub(super) fn millis(&self) -> u128 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis())
    }
}

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self
            .0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let days = (secs / 86_400) as i64;
        let of_day = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

/// Key/value pairs as a description list, escaped; nothing when empty.
pub(super) fn metadata(out: &mut String, metadata: &BTreeMap<String, String>) {
    if metadata.is_empty() {
        return;
    }
    out.push_str("<dl class=\"meta\">");
    for (key, value) in metadata {
        let _ = write!(
            out,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            Esc(key),
            Esc(value)
        );
    }
    out.push_str("</dl>\n");
}

/// The CSS class and badge of a live operation: `stuck` (cancelled long
/// ago and not exited), `cancelling` (cancelled, on its way out), or
/// `running`. One rule for this node's tree and the cluster's.
pub(super) fn live_state(stuck: bool, cancelled: bool) -> &'static str {
    if stuck {
        "stuck"
    } else if cancelled {
        "cancelling"
    } else {
        "running"
    }
}

/// The key of a live operation, labelled, if it has one.
pub(super) fn key(out: &mut String, key: Option<&str>) {
    if let Some(key) = key {
        let _ = write!(
            out,
            r#" <span class="key"><span class="label">key</span> {}</span>"#,
            Esc(key)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            Esc(r#"<script>alert("x&'y")</script>"#).to_string(),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(Esc("plain é").to_string(), "plain é");
    }

    #[test]
    fn durations_and_times_read_as_words() {
        assert_eq!(Words(Duration::from_millis(850)).to_string(), "850 ms");
        assert_eq!(Words(Duration::from_millis(4_240)).to_string(), "4.2 s");
        assert_eq!(Words(Duration::from_secs(185)).to_string(), "3 min 05 s");
        assert_eq!(Words(Duration::from_secs(7_620)).to_string(), "2 h 07 min");
        let time = UNIX_EPOCH + Duration::from_secs(1_796_631_303);
        assert_eq!(Utc(time).to_string(), "2026-12-07 08:15:03 UTC");
        assert_eq!(Utc(UNIX_EPOCH).to_string(), "1970-01-01 00:00:00 UTC");
    }
}
