//! Property tests of the timeout headers: no header value, however
//! random, panics the parsers or the layer (it is answered 400, 504 for a
//! deadline passed on arrival, or served),
//! and formatting round-trips through parsing.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use cancelable::http::{
    format_grpc_timeout, format_http_timeout, parse_grpc_timeout, parse_http_timeout,
    RequestScopeLayer,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{Layer, ServiceExt};

/// Header values biased towards the shapes the parsers look at: digits,
/// units, dots, spaces, signs, and arbitrary bytes.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        "[0-9]{0,12}[HMSmunshµ]{0,3}".prop_map(String::into_bytes),
        "[0-9 .a-z-]{0,20}".prop_map(String::into_bytes),
        "([0-9]{1,6}(\\.[0-9]{0,3})?(ns|us|ms|s|m|h) ?){1,4}".prop_map(String::into_bytes),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(value in header_bytes()) {
        let _ = parse_grpc_timeout(&value);
        let _ = parse_http_timeout(&value);
    }

    #[test]
    fn the_layer_answers_any_header_value_with_400_or_the_handler(
        grpc in header_bytes(),
        http in header_bytes(),
    ) {
        let mut request = Request::get("/").body(Full::new(Bytes::new())).unwrap();
        let mut valid = true;
        let mut earliest = Duration::MAX;
        if let Ok(value) = HeaderValue::from_bytes(&grpc) {
            let parsed = parse_grpc_timeout(value.as_bytes());
            valid &= parsed.is_ok();
            earliest = earliest.min(parsed.unwrap_or(Duration::MAX));
            request.headers_mut().insert("grpc-timeout", value);
        }
        if let Ok(value) = HeaderValue::from_bytes(&http) {
            let parsed = parse_http_timeout(value.as_bytes());
            valid &= parsed.is_ok();
            earliest = earliest.min(parsed.unwrap_or(Duration::MAX));
            request.headers_mut().insert("x-request-timeout", value);
        }
        let service = RequestScopeLayer::new().layer(tower::service_fn(|_request: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));
        let response = runtime().block_on(service.oneshot(request)).unwrap();
        let status = response.status();
        if !valid {
            prop_assert_eq!(status, StatusCode::BAD_REQUEST);
        } else if earliest.is_zero() {
            // Expired on arrival: answered without calling the handler.
            prop_assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        } else if earliest < Duration::from_secs(1) {
            // The handler may return after so short a deadline.
            prop_assert!(status == StatusCode::OK || status == StatusCode::GATEWAY_TIMEOUT, "{status}");
        } else {
            prop_assert_eq!(status, StatusCode::OK);
        }
    }

    #[test]
    fn grpc_timeout_formats_round_down_to_at_most_one_unit_less(nanos in any::<u64>(), scale in 0u32..4) {
        let timeout = Duration::from_nanos(nanos).saturating_mul(1000u32.pow(scale));
        let formatted = format_grpc_timeout(timeout);
        let parsed = parse_grpc_timeout(formatted.as_bytes()).unwrap();
        prop_assert!(parsed <= timeout, "{formatted} is more than {timeout:?}");
        // Rounded down by less than the unit used (an hour at most), and
        // exactly when the duration fits 8 digits of nanoseconds.
        let unit = match formatted.as_bytes().last() {
            Some(b'n') => Duration::from_nanos(1),
            Some(b'u') => Duration::from_micros(1),
            Some(b'm') => Duration::from_millis(1),
            Some(b'S') => Duration::from_secs(1),
            Some(b'M') => Duration::from_secs(60),
            _ => Duration::from_secs(3600),
        };
        if timeout < Duration::from_secs(99_999_999 * 3600) {
            prop_assert!(timeout - parsed < unit, "{formatted} for {timeout:?}");
        }
    }

    #[test]
    fn every_valid_grpc_timeout_round_trips_exactly(count in 0u64..100_000_000, unit in "[HMSmun]") {
        let value = format!("{count}{unit}");
        let parsed = parse_grpc_timeout(value.as_bytes()).unwrap();
        let again = parse_grpc_timeout(format_grpc_timeout(parsed).as_bytes()).unwrap();
        prop_assert_eq!(again, parsed);
    }

    #[test]
    fn http_timeouts_round_trip_to_whole_milliseconds(millis in any::<u64>(), micros in 0u64..1000) {
        let timeout = Duration::from_millis(millis).saturating_add(Duration::from_micros(micros));
        let parsed = parse_http_timeout(format_http_timeout(timeout).as_bytes()).unwrap();
        prop_assert_eq!(parsed, Duration::from_millis(millis));
    }
}
