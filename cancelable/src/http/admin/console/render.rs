//! The console's HTML, rendered on the server from the registry's public
//! views ([`Snapshot`], [`FinishedOperation`], [`Statistics`]): the whole
//! page, and the state part that the script swaps in on every update. One
//! renderer for both, so the page reads the same with and without
//! JavaScript; every value from the registry goes through [`Esc`].

use std::fmt::Write as _;
use std::time::SystemTime;

use super::html::{key, live_state, metadata, Esc, Utc, Words};
use super::LIVE_SHOWN;
use crate::registry::{FinishedOperation, OperationNode, Pattern, Snapshot, Statistics};

/// How many finished operations the console lists (the newest first).
pub(super) const HISTORY_SHOWN: usize = 100;

/// Which live operations the page lists: the query string of the page
/// (`?name=export-*&stuck=1`), kept by the script for its updates.
#[derive(Default)]
pub(super) struct View {
    /// Only operations whose name matches this glob.
    pub(super) name: Option<Pattern>,
    /// Only stuck operations.
    pub(super) stuck: bool,
    /// Why the query was not understood, shown above the filter.
    pub(super) error: Option<String>,
}

impl View {
    fn filters(&self) -> bool {
        self.name.is_some() || self.stuck
    }

    fn accepts(&self, node: &OperationNode) -> bool {
        let op = &node.operation;
        (!self.stuck || op.stuck)
            && self
                .name
                .as_ref()
                .is_none_or(|pattern| pattern.matches(op.name.as_deref().unwrap_or_default()))
    }
}

/// What one render shows.
pub(super) struct State {
    pub(super) snapshot: Snapshot,
    pub(super) history: Vec<FinishedOperation>,
    pub(super) statistics: Statistics,
    /// The cluster's nodes, when the router is a cluster's.
    #[cfg(feature = "redis")]
    pub(super) cluster: Option<super::cluster::Cluster>,
}

/// The whole page; `base` is the path the admin router is mounted at
/// (`""` at the root, `/admin` when nested there), without a trailing `/`.
pub(super) fn page(state: &State, view: &View, base: &str) -> String {
    let mut out = String::with_capacity(4096 + state.snapshot.live.min(LIVE_SHOWN) * 900);
    let base = Esc(base);
    let _ = write!(
        out,
        r##"<!DOCTYPE html>
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Operations · cancelable console</title>
<link rel="stylesheet" href="{base}/console/console.css">
<script src="{base}/console/console.js" defer></script>
</head>
<body data-base="{base}">
<a class="skip" href="#live">Skip to the live operations</a>
<header class="top">
<h1>Operations</h1>
<p id="updated" class="updated" aria-live="off">Rendered at {taken}. <span class="no-js-only">Reload the page to update it; cancelling needs JavaScript.</span></p>
</header>
<p id="outcome" class="outcome" role="status" aria-live="polite" tabindex="-1" hidden></p>
<main>
"##,
        taken = Utc(state.snapshot.taken_at),
    );
    filter_form(&mut out, view);
    out.push_str("<div id=\"state\">\n");
    state_part(&mut out, state, view);
    out.push_str(
        r##"</div>
</main>
<dialog id="cancel-dialog" aria-labelledby="cancel-title" aria-describedby="cancel-help">
<form id="cancel-form">
<h2 id="cancel-title">Cancel the operation?</h2>
<p id="cancel-help">It stops at its next checkpoint; its cleanup runs. This cannot be undone.</p>
<label for="cancel-reason">Reason</label>
<select id="cancel-reason" name="reason">
<option value="manual" selected>manual</option>
<option value="timeout">timeout</option>
<option value="condition">condition</option>
<option value="error">error</option>
<option value="signal:SIGTERM">signal: SIGTERM</option>
<option value="signal:SIGINT">signal: SIGINT</option>
</select>
<label for="cancel-message">Message</label>
<input id="cancel-message" name="message" type="text" maxlength="500" autocomplete="off" placeholder="why, for whoever reads the logs">
<div class="buttons">
<button type="submit" id="cancel-confirm" class="danger" value="confirm">Yes, cancel it</button>
<button type="button" id="cancel-keep" value="keep">Keep it running</button>
</div>
</form>
</dialog>
</body>
</html>
"##,
    );
    out
}

/// The part the script replaces on every update: statistics, the live
/// tree and the history.
pub(super) fn state_part(out: &mut String, state: &State, view: &View) {
    let snapshot = &state.snapshot;
    let _ = writeln!(
        out,
        r#"<div id="state-data" hidden data-taken-ms="{}" data-live="{}" data-stuck="{}"></div>"#,
        Utc(snapshot.taken_at).millis(),
        snapshot.live,
        snapshot.stuck,
    );
    statistics(out, snapshot, &state.statistics);
    let _ = write!(
        out,
        r#"<section id="live" class="live" aria-labelledby="live-title">
<h2 id="live-title" tabindex="-1">Live <span class="count">{live} running{stuck}</span></h2>
"#,
        live = snapshot.live,
        stuck = if snapshot.stuck > 0 {
            format!(
                ", <strong class=\"stuck-count\">{} stuck</strong>",
                snapshot.stuck
            )
        } else {
            String::new()
        },
    );
    let mut budget = LIVE_SHOWN;
    if snapshot.operations.is_empty() {
        out.push_str("<p class=\"empty\">No registered operation is running.</p>\n");
    } else if view.filters() {
        // The matches, flat: their parents may not match.
        let matches: Vec<&OperationNode> =
            snapshot.iter().filter(|node| view.accepts(node)).collect();
        let _ = writeln!(
            out,
            r#"<p class="shown">{} match the filter.</p>"#,
            matches.len()
        );
        out.push_str("<ul class=\"tree\">\n");
        for node in matches.iter().take(LIVE_SHOWN) {
            operation(out, node, &mut 0);
            budget -= 1;
        }
        out.push_str("</ul>\n");
    } else {
        tree(out, &snapshot.operations, &mut budget);
    }
    let shown = LIVE_SHOWN - budget;
    let total = if view.filters() {
        snapshot.iter().filter(|node| view.accepts(node)).count()
    } else {
        snapshot.live
    };
    if shown < total {
        let _ = writeln!(
            out,
            r#"<p class="shown">Showing the first {shown} of {total}: narrow the list with the filter.</p>"#,
        );
    }
    out.push_str("</section>\n");
    #[cfg(feature = "redis")]
    if let Some(cluster) = &state.cluster {
        super::cluster::render(out, cluster, snapshot.taken_at);
    }
    history(out, &state.history, snapshot.taken_at);
}

/// A search form: a plain `GET` of the page, so it works without
/// JavaScript too.
fn filter_form(out: &mut String, view: &View) {
    out.push_str(r#"<form class="filter" role="search" method="get" aria-label="Filter the live operations">"#);
    if let Some(error) = &view.error {
        let _ = write!(out, r#"<p class="error" role="alert">{}</p>"#, Esc(error));
    }
    let _ = write!(
        out,
        r#"<label for="filter-name">Name</label> <input id="filter-name" name="name" type="search" value="{name}" placeholder="export-*" autocomplete="off"> <label class="check"><input type="checkbox" name="stuck" value="1"{checked}> only stuck</label> <button type="submit">Filter</button>"#,
        name = Esc(view.name.as_ref().map_or("", Pattern::as_str)),
        checked = if view.stuck { " checked" } else { "" },
    );
    if view.filters() {
        out.push_str(r#" <a href="?">Show all</a>"#);
    }
    out.push_str("</form>\n");
}

fn statistics(out: &mut String, snapshot: &Snapshot, statistics: &Statistics) {
    let total = &statistics.total;
    let lag = |quantile| {
        total
            .lag
            .percentile(quantile)
            .map_or_else(|| "–".to_owned(), |lag| Words(lag).to_string())
    };
    let _ = write!(
        out,
        r#"<section class="stats" aria-labelledby="stats-title">
<h2 id="stats-title">Statistics</h2>
<dl>
<div><dt>running</dt><dd>{running}</dd></div>
<div class="{stuck_class}"><dt>stuck</dt><dd>{stuck}</dd></div>
<div><dt>completed</dt><dd>{completed}</dd></div>
<div><dt>cancelled</dt><dd>{cancelled}</dd></div>
<div><dt>failed</dt><dd>{failed}</dd></div>
<div><dt><abbr title="cancellation lag, median">lag p50</abbr></dt><dd>{p50}</dd></div>
<div><dt><abbr title="cancellation lag, 99th percentile">lag p99</abbr></dt><dd>{p99}</dd></div>
</dl>
</section>
"#,
        running = snapshot.live,
        stuck_class = if snapshot.stuck > 0 { "alert" } else { "" },
        stuck = snapshot.stuck,
        completed = total.completed,
        cancelled = total.cancelled,
        failed = total.failed,
        p50 = lag(0.5),
        p99 = lag(0.99),
    );
}

/// Nested lists: a screen reader announces each level and its size. At
/// most `budget` operations, in tree order.
fn tree(out: &mut String, nodes: &[OperationNode], budget: &mut usize) {
    out.push_str("<ul class=\"tree\">\n");
    for node in nodes {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        operation(out, node, budget);
    }
    out.push_str("</ul>\n");
}

/// One operation and, within `budget`, the operations inside it.
fn operation(out: &mut String, node: &OperationNode, budget: &mut usize) {
    let op = &node.operation;
    let name = op.name.as_deref().unwrap_or("(unnamed)");
    let state = live_state(op.stuck, op.reason.is_some());
    let _ = write!(
        out,
        r#"<li class="op {state}" id="op-{id}" data-id="{id}"><div class="row">
<div class="ident"><span class="name">{name}</span> <span class="id">#{id}</span>"#,
        id = op.id,
        name = Esc(name),
    );
    key(out, op.key.as_deref());
    out.push_str("</div>\n<div class=\"status\">");
    match (&op.reason, op.cancelled_for) {
        (Some(reason), cancelled_for) => {
            let ago = cancelled_for.map_or_else(String::new, |ago| format!(" {} ago", Words(ago)));
            if op.stuck {
                let _ = write!(
                    out,
                    r#"<strong class="badge stuck">stuck</strong> cancelled{ago}, {checkpoints} checkpoint{s} since"#,
                    checkpoints = op.checkpoints_since_cancel,
                    s = if op.checkpoints_since_cancel == 1 {
                        ""
                    } else {
                        "s"
                    },
                );
            } else {
                let _ = write!(
                    out,
                    r#"<span class="badge cancelling">cancelling</span> for{ago}"#,
                    ago = ago.trim_end_matches(" ago"),
                );
            }
            let _ = write!(
                out,
                r#" <span class="reason">({}"#,
                Esc(&reason.to_string())
            );
            if let Some(message) = &op.message {
                let _ = write!(out, ": {}", Esc(message));
            }
            out.push_str(")</span>");
        }
        (None, _) => {
            let _ = write!(out, r#"<span class="badge">{}</span>"#, op.status);
        }
    }
    if op.shielded {
        out.push_str(r#" <span class="badge shield">shielded</span>"#);
    }
    let _ = write!(
        out,
        r#"</div>
<div class="times"><div><span class="label">elapsed</span> {elapsed}</div>"#,
        elapsed = Words(op.elapsed),
    );
    match op.remaining {
        Some(remaining) if remaining.is_zero() => {
            out.push_str(r#"<div><span class="label">deadline</span> passed</div>"#)
        }
        Some(remaining) => {
            let _ = write!(
                out,
                r#"<div><span class="label">deadline in</span> {}</div>"#,
                Words(remaining)
            );
        }
        None => out.push_str(r#"<div><span class="label">no deadline</span></div>"#),
    }
    out.push_str("</div>\n<div class=\"progress\">");
    if let Some(progress) = &op.progress {
        match progress.fraction {
            Some(fraction) => {
                let percent = (fraction * 100.0).round();
                let _ = write!(
                    out,
                    r#"<progress max="100" value="{percent}" aria-label="progress of {name} #{id}">{percent} %</progress> <span class="percent">{percent} %</span> "#,
                    name = Esc(name),
                    id = op.id,
                );
            }
            None => out.push_str(r#"<span class="label">progress</span> "#),
        }
        let _ = write!(
            out,
            r#"<span class="message">{}</span>"#,
            Esc(&progress.message)
        );
        metadata(out, &progress.metadata);
    }
    out.push_str("</div>\n");
    metadata(out, &op.metadata);
    let _ = write!(
        out,
        r#"<div class="actions"><button type="button" class="cancel js-only" data-id="{id}" data-name="{name}" aria-label="Cancel {name} #{id}">Cancel…</button></div>
</div>
"#,
        id = op.id,
        name = Esc(name),
    );
    if !node.children.is_empty() && *budget > 0 {
        tree(out, &node.children, budget);
    }
    out.push_str("</li>\n");
}

fn history(out: &mut String, history: &[FinishedOperation], now: SystemTime) {
    out.push_str(
        r#"<section id="history" class="history" aria-labelledby="history-title">
<h2 id="history-title">Finished</h2>
"#,
    );
    if history.is_empty() {
        out.push_str(
            "<p class=\"empty\">No registered operation has finished yet.</p>\n</section>\n",
        );
        return;
    }
    let _ = write!(
        out,
        r#"<div class="scroll" role="region" aria-labelledby="history-title" tabindex="0">
<table>
<caption>The {} most recent, newest first</caption>
<thead><tr><th scope="col">Operation</th><th scope="col">Status</th><th scope="col">Reason and message</th><th scope="col"><abbr title="cancellation lag: from the cancel to the end">Lag</abbr></th><th scope="col">Ran</th><th scope="col">Ended</th></tr></thead>
<tbody>
"#,
        history.len()
    );
    for op in history {
        let _ = write!(
            out,
            r#"<tr class="{status}" data-id="{id}"><th scope="row"><span class="name">{name}</span> <span class="id">#{id}</span>"#,
            status = op.status,
            id = op.id,
            name = Esc(op.name.as_deref().unwrap_or("(unnamed)")),
        );
        if let Some(key) = &op.key {
            let _ = write!(
                out,
                r#" <span class="key"><span class="label">key</span> {}</span>"#,
                Esc(key)
            );
        }
        metadata(out, &op.metadata);
        let _ = write!(
            out,
            r#"</th><td><span class="badge {status}">{status}</span></td><td>"#,
            status = op.status
        );
        if let Some(reason) = &op.reason {
            let _ = write!(
                out,
                r#"<span class="reason">{}</span>"#,
                Esc(&reason.to_string())
            );
        }
        if let Some(message) = &op.message {
            let _ = write!(out, r#": <span class="message">{}</span>"#, Esc(message));
        }
        if let Some(error) = &op.error {
            let _ = write!(out, r#"<span class="error">{}</span>"#, Esc(error));
        }
        out.push_str("</td><td>");
        if let Some(lag) = op.lag {
            let _ = write!(out, "{}", Words(lag));
        }
        let _ = write!(out, "</td><td>{}</td><td>", Words(op.duration));
        if let Some(ended) = op.ended_at {
            let ago = now.duration_since(ended).unwrap_or_default();
            let _ = write!(
                out,
                r#"<span title="{}">{} ago</span>"#,
                Esc(&Utc(ended).to_string()),
                Words(ago)
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}
