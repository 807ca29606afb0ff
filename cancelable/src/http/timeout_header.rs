//! Timeout headers on the wire: gRPC's `grpc-timeout` and an HTTP header
//! such as `x-request-timeout`, parsed without panicking on any input and
//! formatted so that the receiver's deadline is never later than ours.

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The name of gRPC's timeout header.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The default name of the HTTP timeout header, `x-request-timeout`.
pub const X_REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("x-request-timeout");

/// The largest count `grpc-timeout` can carry: at most 8 digits.
const GRPC_MAX: u64 = 99_999_999;

/// What `grpc-timeout` must look like, for error messages.
const GRPC_EXPECTED: &str = "1 to 8 digits followed by a unit: H (hours), M (minutes), \
     S (seconds), m (milliseconds), u (microseconds) or n (nanoseconds), e.g. `100m`";

/// What an HTTP timeout header must look like, for error messages.
const HTTP_EXPECTED: &str = "milliseconds as a plain number (e.g. `2500`) or a duration \
     such as `250ms`, `2s`, `1m30s` (units ns, us, ms, s, m, h)";

/// A timeout header that could not be read: which header, what it held,
/// and what it should look like. Its `Display` is what the 400 response
/// says.
///
/// ```
/// use cancelable::http::parse_grpc_timeout;
///
/// let error = parse_grpc_timeout(b"5 seconds").unwrap_err();
/// assert!(error.to_string().contains("expected 1 to 8 digits"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutHeaderError {
    header: HeaderName,
    value: String,
    expected: &'static str,
}

impl TimeoutHeaderError {
    fn new(header: HeaderName, value: &[u8], expected: &'static str) -> Self {
        // Quoted and cut short: the value comes from the client and goes
        // into a response and maybe a log.
        const SHOWN: usize = 40;
        let text = String::from_utf8_lossy(value);
        let mut value: String = text.chars().take(SHOWN).collect();
        if text.chars().count() > SHOWN {
            value.push('…');
        }
        TimeoutHeaderError {
            header,
            value,
            expected,
        }
    }

    /// The header that was malformed.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The value it held (cut to 40 characters, invalid UTF-8 replaced).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the header should look like.
    pub fn expected(&self) -> &'static str {
        self.expected
    }
}

impl fmt::Display for TimeoutHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed `{}` header {:?}: expected {}",
            self.header, self.value, self.expected
        )
    }
}

impl std::error::Error for TimeoutHeaderError {}

/// Trims the optional white space around a header value.
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|byte| !matches!(byte, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|byte| !matches!(byte, b' ' | b'\t'))
        .map_or(start, |last| last + 1);
    &value[start..end.max(start)]
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit, `H`
/// (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u`
/// (microseconds) or `n` (nanoseconds), as the gRPC wire format defines.
///
/// ```
/// use std::time::Duration;
/// use cancelable::http::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout(b"100m").unwrap(), Duration::from_millis(100));
/// assert_eq!(parse_grpc_timeout(b"2H").unwrap(), Duration::from_secs(7200));
/// assert!(parse_grpc_timeout(b"123456789S").is_err()); // 9 digits
/// assert!(parse_grpc_timeout(b"10s").is_err()); // `s` is not a unit
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, TimeoutHeaderError> {
    let error = || TimeoutHeaderError::new(GRPC_TIMEOUT, value, GRPC_EXPECTED);
    let trimmed = trim(value);
    let Some((&unit, digits)) = trimmed.split_last() else {
        return Err(error());
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(error());
    }
    let count = digits
        .iter()
        .fold(0u64, |count, digit| count * 10 + u64::from(digit - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(count * 3600),
        b'M' => Duration::from_secs(count * 60),
        b'S' => Duration::from_secs(count),
        b'm' => Duration::from_millis(count),
        b'u' => Duration::from_micros(count),
        b'n' => Duration::from_nanos(count),
        _ => return Err(error()),
    })
}

/// Formats `timeout` as a `grpc-timeout` value, in the finest unit that
/// fits in 8 digits, rounded down: the receiver never gets more time than
/// was left. Durations beyond 99,999,999 hours are capped there.
///
/// ```
/// use std::time::Duration;
/// use cancelable::http::{format_grpc_timeout, parse_grpc_timeout};
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(99)), "99000000n");
/// assert_eq!(format_grpc_timeout(Duration::from_millis(100)), "100000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000000u");
/// let timeout = Duration::from_millis(1234);
/// assert!(parse_grpc_timeout(format_grpc_timeout(timeout).as_bytes()).unwrap() <= timeout);
/// ```
pub fn format_grpc_timeout(timeout: Duration) -> String {
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    for (per_unit, unit) in units {
        let count = nanos / per_unit;
        if count <= u128::from(GRPC_MAX) {
            return format!("{count}{unit}");
        }
    }
    format!("{GRPC_MAX}H")
}

/// Parses an HTTP timeout header such as `x-request-timeout`: a plain
/// number of milliseconds, or a duration in the humantime style — numbers
/// with units, optionally separated by spaces (`250ms`, `2s`, `1m30s`,
/// `1h 5m`, `1.5s`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` and their long
/// forms such as `sec`, `min`, `hours`).
///
/// ```
/// use std::time::Duration;
/// use cancelable::http::parse_http_timeout;
///
/// assert_eq!(parse_http_timeout(b"2500").unwrap(), Duration::from_millis(2500));
/// assert_eq!(parse_http_timeout(b"1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_http_timeout(b"250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_http_timeout(b"soon").is_err());
/// ```
pub fn parse_http_timeout(value: &[u8]) -> Result<Duration, TimeoutHeaderError> {
    parse_http_timeout_named(&X_REQUEST_TIMEOUT, value)
}

/// [`parse_http_timeout`] for a header of another name (used in errors).
pub(crate) fn parse_http_timeout_named(
    header: &HeaderName,
    value: &[u8],
) -> Result<Duration, TimeoutHeaderError> {
    let error = || TimeoutHeaderError::new(header.clone(), value, HTTP_EXPECTED);
    let text = std::str::from_utf8(trim(value)).map_err(|_| error())?;
    if text.is_empty() {
        return Err(error());
    }
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| error());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Ok(total);
        }
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (whole, fraction) = match rest[..number_end].split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (&rest[..number_end], ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        if number_end > whole.len() && (fraction.is_empty() || fraction.contains('.')) {
            return Err(error());
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = u128::from(unit_nanos(&rest[..unit_end]).ok_or_else(error)?);
        rest = &rest[unit_end..];
        let whole: u128 = whole.parse().map_err(|_| error())?;
        // Digits past nanosecond precision do not matter.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = match fraction.parse::<u128>() {
            Ok(digits) => digits * unit / 10u128.pow(fraction.len() as u32),
            Err(_) => 0,
        };
        let nanos = whole
            .checked_mul(unit)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .ok_or_else(error)?;
        let part = Duration::new(
            u64::try_from(nanos / 1_000_000_000).map_err(|_| error())?,
            (nanos % 1_000_000_000) as u32,
        );
        total = total.checked_add(part).ok_or_else(error)?;
    }
}

/// Nanoseconds per unit of an HTTP timeout duration.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" | "nsec" | "nanos" => 1,
        "us" | "µs" | "usec" | "micros" => 1_000,
        "ms" | "msec" | "millis" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Formats `timeout` for an HTTP timeout header: whole milliseconds,
/// rounded down, which every reader of such headers understands.
///
/// ```
/// use std::time::Duration;
/// use cancelable::http::format_http_timeout;
///
/// assert_eq!(format_http_timeout(Duration::from_micros(2_500_900)), "2500");
/// ```
pub fn format_http_timeout(timeout: Duration) -> String {
    timeout.as_millis().to_string()
}

/// A formatted timeout as a header value. Formatting yields ASCII digits
/// and a letter only, which every header value accepts.
pub(crate) fn header_value(formatted: String) -> Option<HeaderValue> {
    HeaderValue::try_from(formatted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_units() {
        let cases: [(&[u8], Duration); 7] = [
            (b"1H", Duration::from_secs(3600)),
            (b"2M", Duration::from_secs(120)),
            (b"3S", Duration::from_secs(3)),
            (b"4m", Duration::from_millis(4)),
            (b"5u", Duration::from_micros(5)),
            (b"6n", Duration::from_nanos(6)),
            (b"99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_grpc_timeout(value), Ok(expected));
        }
    }

    #[test]
    fn grpc_rejects() {
        for value in [
            &b""[..],
            b"m",
            b"123456789m",
            b"10s",
            b"10 m",
            b"-1m",
            b"1.5S",
            b"\xff\xfe",
            b"10mm",
        ] {
            let error = parse_grpc_timeout(value).unwrap_err();
            assert_eq!(error.header(), GRPC_TIMEOUT);
        }
    }

    #[test]
    fn grpc_format_picks_the_finest_unit_that_fits() {
        assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
        assert_eq!(
            format_grpc_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(
            format_grpc_timeout(Duration::from_nanos(100_000_001)),
            "100000u"
        );
        assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn http_forms() {
        let cases: [(&[u8], Duration); 8] = [
            (b"0", Duration::ZERO),
            (b" 250 ", Duration::from_millis(250)),
            (b"250ms", Duration::from_millis(250)),
            (b"1h 5m", Duration::from_secs(3900)),
            (b"1m30s", Duration::from_secs(90)),
            (b"10us", Duration::from_micros(10)),
            (b"2seconds", Duration::from_secs(2)),
            (b"1.5s", Duration::from_millis(1500)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_http_timeout(value), Ok(expected), "{value:?}");
        }
    }

    #[test]
    fn http_rejects() {
        for value in [
            &b""[..],
            b"  ",
            b"ms",
            b"1.s",
            b".5s",
            b"1.2.3s",
            b"-3",
            b"5 fortnights",
            b"99999999999999999999",
            b"18446744073709551615h",
            b"\xff",
        ] {
            let error = parse_http_timeout(value).unwrap_err();
            assert!(
                error.to_string().contains("expected milliseconds"),
                "{error}"
            );
        }
    }

    #[test]
    fn errors_cut_long_values() {
        let value = "9".repeat(500);
        let error = parse_grpc_timeout(value.as_bytes()).unwrap_err();
        assert!(error.value().chars().count() <= 41);
    }
}
