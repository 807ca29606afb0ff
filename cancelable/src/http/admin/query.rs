//! The query strings, form bodies and path segments of the admin API:
//! decoded and parsed into the registry's types, each `Err` the text of a
//! `400` saying what is expected.

use crate::registry::{Filter, Pattern};
use crate::OperationStatus;

/// The query parameters `GET /operations` accepts.
const LIST_PARAMETERS: &str = "status (pending, running, completed, cancelled, failed; repeat \
     or separate with commas), name (a glob such as export-*), parent (an operation id), \
     older_than (milliseconds or humantime such as 1m30s)";

/// The filter of a `GET /operations` query string; `None` if it sets none.
/// `Err` is the text of a `400`.
pub(super) fn list_filter(query: &str) -> Result<Option<Filter>, String> {
    let pairs = form_pairs(query)?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut filter = Filter::new();
    for (name, value) in pairs {
        match name.as_str() {
            "status" => {
                for status in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    filter = filter.status(parse_status(status)?);
                }
            }
            "name" => {
                let pattern =
                    Pattern::new(&value).map_err(|error| format!("bad `name` filter: {error}"))?;
                filter = filter.name_pattern(pattern);
            }
            "parent" => {
                let parent = value.trim().parse().map_err(|_| {
                    format!(
                        "bad `parent` filter {value:?}: expected an operation id, a whole \
                         number such as 42"
                    )
                })?;
                filter = filter.parent(parent);
            }
            "older_than" => {
                let age =
                    super::super::parse_http_timeout(value.trim().as_bytes()).map_err(|_| {
                        format!(
                            "bad `older_than` filter {value:?}: expected milliseconds (2500) or a \
                         humantime duration (2.5s, 1m30s)"
                        )
                    })?;
                filter = filter.older_than(age);
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; `GET /operations` takes {LIST_PARAMETERS}"
                ))
            }
        }
    }
    Ok(Some(filter))
}

fn parse_status(status: &str) -> Result<OperationStatus, String> {
    Ok(match status.to_ascii_lowercase().as_str() {
        "pending" => OperationStatus::Pending,
        "running" => OperationStatus::Running,
        "completed" => OperationStatus::Completed,
        "cancelled" | "canceled" => OperationStatus::Cancelled,
        "failed" => OperationStatus::Failed,
        _ => {
            return Err(format!(
                "bad `status` filter {status:?}: expected pending, running, completed, \
                 cancelled or failed"
            ))
        }
    })
}

/// Parses an operation id from the path; `Err` is the text of a `400`.
pub(super) fn parse_id(id: &str) -> Result<u64, String> {
    id.parse().map_err(|_| {
        format!(
            "{id:?} is not an operation id: ids are whole numbers, as `GET /operations` lists \
             them (use /operations/by-key/{{key}} for a key)"
        )
    })
}

/// The `name=value` pairs of a query string or form body, decoded
/// (`+` is a space, `%XX` a byte); empty names are skipped.
pub(super) fn form_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .filter(|pair: &Result<(String, String), String>| {
            pair.as_ref().map_or(true, |(name, _)| !name.is_empty())
        })
        .collect()
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        format!("bad percent-encoding in {text:?}: `%` must be followed by two hex digits")
                    })?;
                out.push(hex);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode_plus_and_percent() {
        assert_eq!(
            form_pairs("reason=manual&message=a+b%21&&x").unwrap(),
            [
                ("reason".to_owned(), "manual".to_owned()),
                ("message".to_owned(), "a b!".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert!(form_pairs("message=%zz").is_err());
        assert!(form_pairs("message=%c3").is_err());
    }
}
