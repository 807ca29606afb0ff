//! The query strings, cancel-request bodies (JSON only) and path segments
//! of the admin API: decoded and parsed into the registry's types, each
//! `Err` the text of a `400` saying what is expected (a cancel request's
//! `Err` is its whole answer: `415` for a body that is not JSON).

use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};

use super::{bad_request, error, ADMIN_CANCEL_MESSAGE};
use crate::registry::{Filter, Pattern};
use crate::{CancelReason, OperationStatus, Signal, SourceError};

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
    // Digits only: `u64::from_str` would take `+3` too.
    let digits = !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit());
    digits.then(|| id.parse().ok()).flatten().ok_or_else(|| {
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

/// The reasons `POST …/cancel` accepts, as its 400 answer lists them.
const VALID_REASONS: &str =
    "manual (the default), timeout, condition, error, or a signal such as signal:SIGTERM";

/// The reason and message of a cancel request.
pub(super) struct CancelRequest {
    pub(super) reason: CancelReason,
    pub(super) reason_text: String,
    pub(super) message: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
    message: Option<String>,
}

/// Reads `reason` and `message` from a JSON body — the only kind a
/// cross-site form or a `fetch` without a CORS preflight cannot send
/// (`application/json` is not one of the "simple" content types). Any
/// other content type, or none, is a `415`; parameters in the query
/// string, a `400`. `Err` is the answer.
pub(super) fn cancel_request(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CancelRequest, Box<Response>> {
    let json_body = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a cancel request is a JSON body: send `Content-Type: application/json` with \
             {\"reason\": \"manual\", \"message\": \"why\"} (both optional; an empty body \
             is fine); form, text and query-string requests are refused, as a cross-site form \
             could send them",
            serde_json::json!({ "expected": "application/json" }),
        )));
    }
    if query.is_some_and(|query| !query.is_empty()) {
        return Err(Box::new(bad_request(
            "a cancel request takes no query string parameters: put `reason` and `message` in \
             the JSON body",
        )));
    }
    let parsed = match body.iter().all(u8::is_ascii_whitespace) {
        true => CancelBody {
            reason: None,
            message: None,
        },
        false => serde_json::from_slice(body).map_err(|error| {
            Box::new(bad_request(format!(
                "the body is not a cancel request: {error}; send \
                 {{\"reason\": \"manual\", \"message\": \"why\"}} (both optional)"
            )))
        })?,
    };
    let message = parsed
        .message
        .unwrap_or_else(|| ADMIN_CANCEL_MESSAGE.to_owned());
    let reason_text = parsed.reason.unwrap_or_else(|| "manual".to_owned());
    let reason =
        parse_reason(&reason_text, &message).map_err(|message| Box::new(bad_request(message)))?;
    Ok(CancelRequest {
        reason,
        reason_text,
        message,
    })
}

/// A reason a client may cancel with (never `Parent`: that one is the
/// scope machinery's).
fn parse_reason(reason: &str, message: &str) -> Result<CancelReason, String> {
    let lower = reason.trim().to_ascii_lowercase();
    Ok(match lower.as_str() {
        "manual" => CancelReason::Manual,
        "timeout" => CancelReason::Timeout,
        "condition" => CancelReason::Condition,
        "error" => CancelReason::Error(SourceError::new(message)),
        _ => match lower.strip_prefix("signal:") {
            Some(signal) => CancelReason::Signal(
                signal
                    .parse::<Signal>()
                    .map_err(|error| format!("bad reason {reason:?}: {error}"))?,
            ),
            None => {
                return Err(format!(
                    "unknown reason {reason:?}; valid reasons are {VALID_REASONS}"
                ))
            }
        },
    })
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

    #[test]
    fn reasons_parse_and_bad_ones_list_the_valid_values() {
        assert_eq!(parse_reason("Manual", "").unwrap(), CancelReason::Manual);
        assert_eq!(
            parse_reason("signal:term", "").unwrap(),
            CancelReason::Signal(Signal::Terminate)
        );
        let error = parse_reason("parent", "").unwrap_err();
        assert!(error.contains("manual"), "{error}");
        assert!(parse_reason("signal:nope", "")
            .unwrap_err()
            .contains("SIGTERM"));
    }
}
