//! The operator's console at the admin router's root: one page rendered on
//! the server, a small script and a style sheet embedded in the crate (no
//! build step, no CDN, works offline).
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /` | the page: statistics, the tree of live operations, the history; `?name=export-*` lists the live operations whose name matches the glob, `?stuck=1` the stuck ones |
//! | `GET /console/state` | the page's state part, as the script swaps it in every second (same query) |
//! | `GET /console/console.js`, `GET /console/console.css` | the embedded assets |
//!
//! The page reads the registry only; the one thing that reaches it from
//! the page is the script's JSON `POST …/operations/{id}/cancel` to the
//! admin API. Its `Content-Security-Policy` allows scripts, styles and
//! requests from the router's own origin only and no framing, so that even
//! a value that escaped [`Esc`](html::Esc) could not run.

use axum::extract::{OriginalUri, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::HeaderValue;

use crate::registry::{Filter, Pattern, Registry};

#[cfg(feature = "redis")]
mod cluster;
mod html;
mod render;

/// How many live operations the console lists (per node in the cluster
/// view): a page of thousands is slow for a browser to lay out every
/// second and for a person to read; the counts cover them all and the
/// filter finds the others.
const LIVE_SHOWN: usize = 200;

const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// What the console reads: the local registry and, when the node joined a
/// cluster, the cluster.
#[derive(Clone)]
struct Sources {
    registry: Registry,
    #[cfg(feature = "redis")]
    cluster: Option<crate::remote::RemoteRegistry>,
}

/// The console's routes over `registry`, merged into the admin router.
pub(super) fn routes<S>(registry: &Registry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    with_sources(Sources {
        registry: registry.clone(),
        #[cfg(feature = "redis")]
        cluster: None,
    })
}

/// The console's routes over `remote`'s local registry and its cluster.
#[cfg(feature = "redis")]
pub(super) fn cluster_routes<S>(remote: &crate::remote::RemoteRegistry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    with_sources(Sources {
        registry: remote.local().clone(),
        cluster: Some(remote.clone()),
    })
}

fn with_sources<S>(sources: Sources) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(page))
        .route("/console/state", get(state))
        .route(
            "/console/console.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/console/console.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .with_state(sources)
}

/// What the registry, and the cluster, show now.
async fn read(sources: &Sources) -> render::State {
    let registry = &sources.registry;
    render::State {
        snapshot: registry.snapshot(),
        history: registry.history(render::HISTORY_SHOWN, &Filter::new()),
        statistics: registry.statistics(),
        #[cfg(feature = "redis")]
        cluster: match &sources.cluster {
            Some(remote) => Some(cluster::read(remote).await),
            None => None,
        },
    }
}

/// `GET /`: the whole page. Its links start with the path it was reached
/// at, so the router works at the root and nested (`/admin`).
async fn page(
    State(sources): State<Sources>,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
) -> Response {
    let base = uri.path().trim_end_matches('/');
    let view = view(query.as_deref());
    html_answer(render::page(&read(&sources).await, &view, base), true)
}

/// `GET /console/state`: the part of the page the script replaces.
async fn state(State(sources): State<Sources>, RawQuery(query): RawQuery) -> Response {
    let mut out = String::with_capacity(4096);
    render::state_part(&mut out, &read(&sources).await, &view(query.as_deref()));
    html_answer(out, false)
}

/// The page's filter; what it does not understand is said on the page,
/// which then lists every operation.
fn view(query: Option<&str>) -> render::View {
    let mut view = render::View::default();
    let pairs = match super::query::form_pairs(query.unwrap_or("")) {
        Ok(pairs) => pairs,
        Err(error) => {
            view.error = Some(format!("The filter was not understood: {error}."));
            return view;
        }
    };
    for (name, value) in pairs {
        match name.as_str() {
            "name" if value.trim().is_empty() => {}
            "name" => match Pattern::new(value.trim()) {
                Ok(pattern) => view.name = Some(pattern),
                Err(error) => {
                    view.error = Some(format!(
                        "Bad name filter: {error}. Use a glob such as export-* or *-nightly."
                    ))
                }
            },
            "stuck" => view.stuck = matches!(value.as_str(), "1" | "on" | "true"),
            other => {
                view.error = Some(format!(
                    "Unknown filter {other:?}: the console takes name (a glob such as \
                     export-*) and stuck=1."
                ))
            }
        }
    }
    view
}

fn html_answer(body: String, page: bool) -> Response {
    let mut response = (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        ],
        body,
    )
        .into_response();
    if page {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    }
    response
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            // Revalidated, so that an upgraded server's page gets its own
            // script.
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
