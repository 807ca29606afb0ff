//! The console's cluster view (features `admin` and `redis`): the nodes a
//! [`RemoteRegistry`] sees and their live operations, read through its
//! public [`nodes`](RemoteRegistry::nodes).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::html::{key, live_state, metadata, Esc, Words};
use super::LIVE_SHOWN;
use crate::remote::{NodeSnapshot, RemoteRegistry};

/// What the cluster showed: this node's name and every node's last
/// snapshot, or why they could not be read.
pub(super) struct Cluster {
    node: String,
    nodes: Result<Vec<NodeSnapshot>, String>,
}

pub(super) async fn read(remote: &RemoteRegistry) -> Cluster {
    Cluster {
        node: remote.node().to_owned(),
        nodes: remote.nodes().await.map_err(|error| error.to_string()),
    }
}

pub(super) fn render(out: &mut String, cluster: &Cluster, now: SystemTime) {
    out.push_str(
        r#"<section id="cluster" class="cluster" aria-labelledby="cluster-title">
<h2 id="cluster-title">Cluster</h2>
"#,
    );
    let nodes = match &cluster.nodes {
        Ok(nodes) => nodes,
        Err(error) => {
            let _ = writeln!(
                out,
                r#"<p class="error" role="alert">The cluster's nodes could not be read: {}. This node's operations above are current; the page retries every second.</p>
</section>"#,
                Esc(error)
            );
            return;
        }
    };
    if nodes.is_empty() {
        out.push_str("<p class=\"empty\">No node has published a snapshot yet.</p>\n</section>\n");
        return;
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    for node in nodes {
        let live = node.operations.len() + node.truncated;
        let stuck = node.operations.iter().filter(|op| op.stuck).count();
        let _ = write!(
            out,
            r#"<section class="node" aria-label="node {name}">
<h3>{name}{this} <span class="count">{live} running{stuck}, published {ago} ago</span></h3>
"#,
            name = Esc(&node.node),
            this = if node.node == cluster.node {
                " <span class=\"badge\">this node</span>"
            } else {
                ""
            },
            stuck = if stuck > 0 {
                format!(", <strong class=\"stuck-count\">{stuck} stuck</strong>")
            } else {
                String::new()
            },
            ago = Words(Duration::from_millis(
                now_ms.saturating_sub(node.published_ms)
            )),
        );
        if node.operations.is_empty() {
            out.push_str(
                "<p class=\"empty\">No registered operation is running.</p>\n</section>\n",
            );
            continue;
        }
        out.push_str("<ul class=\"tree\">\n");
        for op in node.operations.iter().take(LIVE_SHOWN) {
            let state = live_state(op.stuck, op.reason.is_some());
            let _ = write!(
                out,
                r#"<li class="op remote {state}" data-node="{node}" data-id="{id}"><div class="row">
<div class="ident"><span class="name">{name}</span> <span class="id">{node}/{id}</span>"#,
                node = Esc(&op.node),
                id = op.id,
                name = Esc(op.name.as_deref().unwrap_or("(unnamed)")),
            );
            key(out, op.key.as_deref());
            out.push_str("</div>\n<div class=\"status\">");
            if op.stuck {
                out.push_str(r#"<strong class="badge stuck">stuck</strong>"#);
            } else {
                let _ = write!(out, r#"<span class="badge {state}">{state}</span>"#);
            }
            if let Some(reason) = &op.reason {
                let _ = write!(out, r#" <span class="reason">({}"#, Esc(reason));
                if let Some(message) = &op.message {
                    let _ = write!(out, ": {}", Esc(message));
                }
                out.push_str(")</span>");
            }
            let _ = writeln!(
                out,
                r#"</div>
<div class="times"><div><span class="label">elapsed</span> {}</div></div>"#,
                Words(Duration::from_millis(op.elapsed_ms)),
            );
            metadata(out, &op.metadata);
            out.push_str("</div></li>\n");
        }
        out.push_str("</ul>\n");
        let shown = node.operations.len().min(LIVE_SHOWN);
        if shown < live {
            let _ = writeln!(out, r#"<p class="shown">Showing {shown} of {live}.</p>"#);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</section>\n");
}
