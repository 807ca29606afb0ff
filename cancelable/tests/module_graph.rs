//! The modules of `cancelable/src` depend on each other in one direction:
//! no import cycle between sibling modules.
//!
//! The check reads the source files (std only), builds the graph of the
//! crate's modules — files and inline `mod name { .. }` — with an edge for
//! every `crate::`, `super::` and `self::` path and every `use` of a child
//! module, each followed through re-exports to the module that defines the
//! item. An edge between two modules counts as an edge between their
//! ancestors that are siblings (`scope::driver` using `source::armed` is
//! `scope` using `source`); a module using its parent, or a parent its
//! child, is fine. Every set of siblings must form an acyclic graph, and
//! the top-level modules keep the layer order of ARCHITECTURE.md (core ←
//! in-flight ← groups, registry ← services, cluster). The task groups and
//! the services reach the core only through its public API and its
//! declared seams (`scope/seam.rs`, `scope/hold.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Known exceptions: edges between siblings the check ignores, and
/// reports. Each must still exist: remove it here once it is gone. There
/// are none; the list stays for a cycle that must be lived with for a
/// while, written down here rather than hidden.
const KNOWN_EXCEPTIONS: &[(&str, &str)] = &[];

/// The layers of the crate, lowest first, and the top-level modules in
/// each. A module may use the modules of its own layer (the cycle check
/// above keeps those in one direction) and of the layers [`LAYER_USES`]
/// allows; never one above it. A new top-level module must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "backend",
            "cancelled",
            "hooks",
            "context",
            "panic",
            "reason",
            "seam",
            "signal",
            "spare",
            "sync",
            "token",
            "source",
            "scope",
            "current",
            "shield",
        ],
    ),
    ("in-flight", &["wait", "stream", "blocking"]),
    ("groups", &["group"]),
    ("registry", &["registry"]),
    ("services", &["http"]),
    ("cluster", &["remote"]),
    ("testing", &["testing"]),
    ("macro support", &["__private"]),
    ("moved paths", &["moved"]),
];

/// Which layer may use which other layer: core ← in-flight ← groups,
/// registry ← services, cluster; the testing kit on everything but the
/// integrations; the macros' support module on the core only. Groups and
/// the registry do not know each other. Services may use the cluster (the
/// admin console's cluster view, `http/admin/console/cluster.rs`, through
/// `RemoteRegistry`'s public API), never the other way round.
const LAYER_USES: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("in-flight", &["core"]),
    ("groups", &["core", "in-flight"]),
    ("registry", &["core", "in-flight"]),
    (
        "services",
        &["core", "in-flight", "groups", "registry", "cluster"],
    ),
    ("cluster", &["core", "in-flight", "registry"]),
    ("testing", &["core", "in-flight", "groups", "registry"]),
    ("macro support", &["core"]),
    ("moved paths", &["core", "in-flight", "groups"]),
];

/// Inline modules of `lib.rs` that exist only under `cfg(test)`.
const CRATE_TESTS: &[&str] = &["sizes"];

#[test]
fn layers_depend_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::build(&read_sources(&src));
    let report = layer_violations(&graph);
    assert!(report.is_empty(), "{report}");
}

/// Every edge between top-level modules that [`LAYERS`] and [`LAYER_USES`]
/// do not allow, and every top-level module in no layer, as a report.
fn layer_violations(graph: &Graph) -> String {
    let layer_of = |module: &str| {
        LAYERS
            .iter()
            .find(|(_, modules)| modules.contains(&module))
            .map(|(layer, _)| *layer)
    };
    let mut report = String::new();
    for module in &graph.modules[&Vec::new()].children {
        if layer_of(module).is_none() && !CRATE_TESTS.contains(&module.as_str()) {
            let _ = writeln!(
                report,
                "top-level module `{module}` is in no layer: add it to LAYERS in tests/module_graph.rs"
            );
        }
    }
    let edges = graph.sibling_edges(|_, _, _| false);
    for ((from, to), evidence) in edges.get(&Vec::new()).into_iter().flatten() {
        let (Some(from_layer), Some(to_layer)) = (layer_of(from), layer_of(to)) else {
            continue;
        };
        let allowed = from_layer == to_layer
            || LAYER_USES
                .iter()
                .any(|(layer, uses)| *layer == from_layer && uses.contains(&to_layer));
        if !allowed {
            let _ = writeln!(
                report,
                "layer `{from_layer}` may not use layer `{to_layer}`: {evidence}"
            );
        }
    }
    report
}

/// The layer check itself: a core module using a layer above it is
/// reported, and so is a module in no layer.
#[test]
fn the_layer_check_finds_an_upward_edge() {
    let sources = files(&[
        ("lib.rs", "mod token; mod group; mod stray;"),
        ("token.rs", "fn f() { crate::group::g() }"),
        ("group.rs", "pub(crate) fn g() {}"),
        ("stray.rs", ""),
    ]);
    let report = layer_violations(&Graph::build(&sources));
    assert!(
        report.contains("layer `core` may not use layer `groups`"),
        "{report}"
    );
    assert!(report.contains("`stray` is in no layer"), "{report}");
}

#[test]
fn sibling_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::build(&read_sources(&src));
    let mut seen = BTreeSet::new();
    let report = graph.cycles(|parent, from, to| {
        let known = parent.is_empty() && KNOWN_EXCEPTIONS.contains(&(from, to));
        if known {
            seen.insert((from.to_owned(), to.to_owned()));
        }
        known
    });
    for (from, to) in &seen {
        eprintln!("known exception, ignored: `{from}` uses `{to}` (see KNOWN_EXCEPTIONS)");
    }
    assert!(
        report.is_empty(),
        "import cycles between sibling modules:\n{report}"
    );
    let gone: Vec<_> = KNOWN_EXCEPTIONS
        .iter()
        .filter(|(from, to)| !seen.contains(&(from.to_string(), to.to_string())))
        .collect();
    assert!(
        gone.is_empty(),
        "these known exceptions no longer occur, remove them from KNOWN_EXCEPTIONS: {gone:?}"
    );
}

/// The checker itself: a cycle is found, followed through a re-export,
/// and a module using its parent is not one.
#[test]
fn the_checker_finds_a_cycle_through_a_re_export() {
    let sources = files(&[
        ("lib.rs", "mod a; mod b; mod c; pub use c::Thing;"),
        ("a.rs", "use crate::Thing; pub(crate) fn f() {}"),
        ("b.rs", "pub(crate) fn g() { super::a::f() }"),
        ("c.rs", "pub struct Thing; fn h() { crate::b::g() }"),
    ]);
    let report = Graph::build(&sources).cycles(|_, _, _| false);
    assert!(report.contains("`a` -> `c`"), "{report}");
    assert!(report.contains("`c` -> `b`"), "{report}");
    assert!(report.contains("`b` -> `a`"), "{report}");
}

#[test]
fn the_checker_accepts_children_using_their_parent() {
    let sources = files(&[
        ("lib.rs", "mod a; mod b; fn root() {}"),
        (
            "a/mod.rs",
            "mod x; mod y; pub(crate) use y::Y; pub(crate) struct A; fn f() { x::go() }",
        ),
        (
            "a/x.rs",
            "use super::A; use crate::a::y::Y; pub(crate) fn go() {}",
        ),
        ("a/y.rs", "pub(crate) struct Y; fn f() { crate::root() }"),
        (
            "b.rs",
            "use crate::a::{self, Y}; mod inner { use super::super::a::A; }",
        ),
    ]);
    let report = Graph::build(&sources).cycles(|_, _, _| false);
    assert!(report.is_empty(), "{report}");
}

#[test]
fn the_checker_ignores_comments_and_strings() {
    let sources = files(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b::B; pub(crate) struct A;"),
        (
            "b.rs",
            "/// [`A`](crate::a::A)\npub(crate) struct B; // crate::a::A\nconst S: &str = \"crate::a::A\"; /* crate::a::A */ const C: char = '\"';",
        ),
    ]);
    let report = Graph::build(&sources).cycles(|_, _, _| false);
    assert!(report.is_empty(), "{report}");
}

/// The layers that must reach the core through its public API and its
/// declared seams only (`scope/seam.rs`, `scope/hold.rs`), never its
/// private parts: the directories checked, and what they may not name —
/// the scope's shared state and its fields, the token's engine, the
/// current-scope slot. The registry reaches a scope through the seam's
/// `ScopeView`, which its start hook receives.
const SEAM_LAYERS: &[&str] = &["group/", "http/", "registry/", "testing/"];
const PRIVATE_TO_THE_CORE: &[&str] = &[
    "ScopeShared",
    ".shields",
    ".holds(",
    "wake_owner",
    ".record_error_text(",
    ".has_recorded_cause(",
    ".recorded_cause(",
    ".observe_cancellation(",
    ".err_is_cancellation(",
    ".pass_cancellation_up(",
    ".start_grace(",
    "handle.shared",
    "scope.shared",
    ".shared.token",
    "scope::slot",
    "scope::state",
    "scope::driver",
    "crate::token::",
    "crate::current::",
];

/// Every use of a private part of the core in the files of [`SEAM_LAYERS`].
fn seam_violations(sources: &BTreeMap<String, String>) -> String {
    let instead = "is private to the core: use the public API or a seam in scope/seam.rs";
    let forbidden: Vec<(&str, &str)> = PRIVATE_TO_THE_CORE
        .iter()
        .map(|private| (*private, instead))
        .collect();
    SEAM_LAYERS
        .iter()
        .map(|layer| forbidden_uses(sources, layer, &forbidden))
        .collect()
}

#[test]
fn layers_use_only_the_seams_of_the_core() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&src);
    // The cluster also keeps time only on the crate's clock.
    let report = seam_violations(&sources)
        + &forbidden_uses(&sources, "remote/", CLUSTER_FORBIDDEN)
        + &field_reads(&sources, "registry/", SCOPE_FIELDS)
        + &forbidden_uses(&sources, "http/", SERVICES_FORBIDDEN)
        + &forbidden_uses(&sources, "group/", GROUPS_FORBIDDEN)
        + &forbidden_uses(&sources, "registry/", REGISTRY_FORBIDDEN);
    assert!(report.is_empty(), "{report}");
}

/// The seam check itself: a layer naming the scope's state is reported, a
/// seam call or a comment is not.
#[test]
fn the_seam_check_finds_a_private_field() {
    let sources = files(&[
        (
            "http/grace.rs",
            "fn f(h: &ScopeHandle) { h.shared.shields.fetch_add(1) }",
        ),
        (
            "group/body.rs",
            "// ScopeShared\nfn g(s: &ScopeHandle) { seam::hold_count(s); }",
        ),
        ("scope/driver.rs", "fn h(s: &ScopeShared) {}"),
    ]);
    let report = seam_violations(&sources);
    assert!(report.contains("http/grace.rs:1: `.shields`"), "{report}");
    assert!(
        !report.contains("group/body.rs") && !report.contains("scope/driver.rs"),
        "{report}"
    );
}

/// The fields of the scope's shared state (`scope/state.rs`) visible to
/// the crate. The registry names no `ScopeShared` (it holds the seam's
/// `ScopeView`) and reads no field of it; its other fields are private to
/// `scope/`, which the compiler checks.
const SCOPE_FIELDS: &[&str] = &["token"];

/// Every read of one of `fields` as a field (`.name` not followed by `(`
/// or more of an identifier) in the files under `prefix`.
fn field_reads(sources: &BTreeMap<String, String>, prefix: &str, fields: &[&str]) -> String {
    let mut report = String::new();
    for (file, text) in sources.iter().filter(|(file, _)| file.starts_with(prefix)) {
        let text = strip(text);
        for field in fields {
            let needle = format!(".{field}");
            for (at, _) in text.match_indices(&needle) {
                let next = text[at + needle.len()..].trim_start().chars().next();
                let is_field =
                    !matches!(next, Some(c) if c == '(' || c == '_' || c.is_alphanumeric());
                if is_field {
                    let line = text[..at].matches('\n').count() + 1;
                    let _ = writeln!(
                        report,
                        "{file}:{line}: `.{field}` is a field of the scope's state: use the seam method `.{field}()` (scope/seam.rs)"
                    );
                }
            }
        }
    }
    report
}

/// The field check itself: a field read is reported, a method call or a
/// longer name is not.
#[test]
fn the_field_check_finds_a_field_read() {
    let sources = files(&[
        (
            "registry/a.rs",
            "fn f(s: &ScopeShared) { s.token.cancel() }",
        ),
        (
            "registry/b.rs",
            "fn g(s: &ScopeShared) { s.token().cancel(); s.token_id; }",
        ),
        (
            "registry/c.rs",
            "fn h(s: &ScopeShared) {\n    s\n        .token\n        .cancel() }",
        ),
    ]);
    let report = field_reads(&sources, "registry/", SCOPE_FIELDS);
    assert!(report.contains("registry/a.rs:1: `.token`"), "{report}");
    assert!(report.contains("registry/c.rs:3: `.token`"), "{report}");
    assert!(!report.contains("registry/b.rs"), "{report}");
}

/// What the services layer (`http/`) must not name: time and signals
/// beside their seams (`crate::seam::time`'s executor clock, which the
/// testing kit's manual clock drives; `crate::seam::signal`).
const SERVICES_FORBIDDEN: &[(&str, &str)] = &[
    (
        "crate::backend",
        "is private to the core: use `crate::seam::time::executor_now`, and scope deadlines and graces for timers",
    ),
    (
        "crate::hooks",
        "is private to the core: use `crate::seam::time::executor_now`",
    ),
    (
        "crate::source::",
        "is private to the core: use `crate::seam::signal`",
    ),
    (
        "tokio::time::",
        "is not the crate's clock: a scope's deadline or grace is",
    ),
    (
        "Instant::now",
        "is not the crate's clock: use `crate::seam::time::executor_now`",
    ),
    (
        "executor_timer",
        "is a timer beside the scopes': a layer's timers are scope deadlines and graces",
    ),
];

#[test]
fn the_services_check_finds_a_timer_beside_the_seam() {
    let sources = files(&[
        ("http/shutdown.rs", "let t = tokio::time::sleep(grace);"),
        (
            "http/handler.rs",
            "let now = time::executor_now(); // not tokio::time::sleep",
        ),
    ]);
    let report = forbidden_uses(&sources, "http/", SERVICES_FORBIDDEN);
    assert!(
        report.contains("http/shutdown.rs:1: `tokio::time::`"),
        "{report}"
    );
    assert!(!report.contains("handler.rs"), "{report}");
    let sources = files(&[(
        "http/shutdown.rs",
        "let mut timer = deadline.map(time::executor_timer);",
    )]);
    let report = forbidden_uses(&sources, "http/", SERVICES_FORBIDDEN);
    assert!(
        report.contains("http/shutdown.rs:1: `executor_timer`"),
        "{report}"
    );
}

/// What task groups (`group/`) must not name: the backend and the testing
/// hooks beside `crate::seam::time`, whose executor clock and timers (the
/// manual clock while one is installed) they read and arm.
const GROUPS_FORBIDDEN: &[(&str, &str)] = &[
    (
        "crate::backend",
        "is private to the core: use `crate::seam::time::executor_now`, and scope deadlines and graces for timers",
    ),
    (
        "crate::hooks",
        "is private to the core: use `crate::seam::time::executor_now`",
    ),
    (
        "crate::clock",
        "is private to the core: use `crate::seam::time::executor_now`",
    ),
    (
        "tokio::time::",
        "is not the crate's clock: use `crate::seam::time`",
    ),
    (
        "Instant::now",
        "is not the crate's clock: use `crate::seam::time::executor_now`",
    ),
    (
        "Timer",
        "is a timer beside the scopes': the children's scopes end them at the group's grace end, and the scope's deadline shard wakes the group (`scope::seam::held_grace_end`)",
    ),
];

#[test]
fn the_groups_check_finds_the_backend_beside_the_seam() {
    let sources = files(&[
        ("group/body.rs", "use crate::backend::{Backend, Timer};"),
        ("group/supervise.rs", "let now = crate::clock::now();"),
        (
            "group/progress.rs",
            "let now = time::executor_now(); // not crate::backend::now()",
        ),
    ]);
    let report = forbidden_uses(&sources, "group/", GROUPS_FORBIDDEN);
    assert!(
        report.contains("group/body.rs:1: `crate::backend`"),
        "{report}"
    );
    assert!(
        report.contains("group/supervise.rs:1: `crate::clock`"),
        "{report}"
    );
    assert!(!report.contains("progress.rs"), "{report}");
}

/// What the registry (`registry/`) must not name beside the seams: the
/// backend's clocks (it reads time through `crate::seam::time`: the
/// scope's clock as `ScopeClock`, a query's readings as `Now`).
const REGISTRY_FORBIDDEN: &[(&str, &str)] = &[
    (
        "crate::backend",
        "is private to the core: use `crate::seam::time` (`ScopeClock`, `Now`)",
    ),
    (
        "crate::hooks",
        "is private to the core: use `crate::seam::time`",
    ),
];

/// The registry's checks themselves: naming the scope's state, the
/// token's cause or the backend's clock is reported; the seam is not.
#[test]
fn the_registry_check_finds_a_private_part_of_the_core() {
    let sources = files(&[
        (
            "registry/live.rs",
            "use crate::scope::ScopeShared;\nfn f(s: &ScopeView) { s.token().recorded_cause(); }",
        ),
        ("registry/record.rs", "use crate::backend::Clock;"),
        (
            "registry/history.rs",
            "use crate::seam::time::ScopeClock;\nfn g(s: &ScopeView) { s.cancel_cause(); }",
        ),
    ]);
    let report =
        seam_violations(&sources) + &forbidden_uses(&sources, "registry/", REGISTRY_FORBIDDEN);
    for expected in [
        "registry/live.rs:1: `ScopeShared`",
        "registry/live.rs:2: `.recorded_cause(`",
        "registry/record.rs:1: `crate::backend`",
    ] {
        assert!(report.contains(expected), "{expected} is not in {report}");
    }
    assert!(!report.contains("registry/history.rs"), "{report}");
}

/// What the cluster layer (`remote/`) must not name: core internals it
/// reaches through a seam instead (`crate::seam`, the registry's join
/// observer), and time read or waited on beside the crate's clock (which
/// the testing kit's manual clock drives).
const CLUSTER_FORBIDDEN: &[(&str, &str)] = &[
    (
        "crate::backend",
        "is private to the core: use `crate::seam::time`",
    ),
    (
        "crate::hooks",
        "is private to the core: use `crate::seam::time`",
    ),
    (
        "async_io::Timer",
        "is not the crate's clock: use `crate::seam::time::Timer`",
    ),
    (
        "Instant::now",
        "is not the crate's clock: use `crate::seam::time::now`",
    ),
    (
        ".elapsed()",
        "is not the crate's clock: subtract from `crate::seam::time::now()`",
    ),
    (
        ".inner",
        "is private to the registry: use its public API or its seam",
    ),
];

#[test]
fn the_seam_check_finds_a_forbidden_use() {
    let sources = files(&[
        (
            "remote/driver.rs",
            "// Instant::now\nlet t = std::time::Instant::now();",
        ),
        ("remote/util.rs", "const S: &str = \"registry.inner\";"),
    ]);
    let report = forbidden_uses(&sources, "remote/", CLUSTER_FORBIDDEN);
    assert!(report.contains("remote/driver.rs:2"), "{report}");
    assert!(!report.contains("util.rs"), "{report}");
}

/// Each line of a file under `prefix` that names one of `forbidden`
/// (comments and strings aside), with what to use instead.
fn forbidden_uses(
    sources: &BTreeMap<String, String>,
    prefix: &str,
    forbidden: &[(&str, &str)],
) -> String {
    let mut report = String::new();
    for (file, text) in sources.iter().filter(|(file, _)| file.starts_with(prefix)) {
        for (number, line) in strip(text).lines().enumerate() {
            for (name, instead) in forbidden {
                if line.contains(name) {
                    let _ = writeln!(report, "{file}:{}: `{name}` {instead}", number + 1);
                }
            }
        }
    }
    report
}

fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect()
}

/// Every `.rs` file under `dir`, by its path relative to `dir`.
fn read_sources(dir: &Path) -> BTreeMap<String, String> {
    let mut sources = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read the source directory") {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(dir).expect("under src");
                let name = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = std::fs::read_to_string(&path).expect("read a source file");
                sources.insert(name, text);
            }
        }
    }
    rename_path_modules(&mut sources);
    sources
}

/// Files given to a module by `#[path = "file.rs"] mod name;` in `lib.rs`
/// are keyed as `name.rs`, the file the module would have without it.
fn rename_path_modules(sources: &mut BTreeMap<String, String>) {
    let Some(lib) = sources.get("lib.rs").cloned() else {
        return;
    };
    let mut lines = lib.lines();
    while let Some(line) = lines.next() {
        let Some(file) = line
            .trim()
            .strip_prefix("#[path = \"")
            .and_then(|rest| rest.strip_suffix("\"]"))
        else {
            continue;
        };
        let declaration = lines
            .by_ref()
            .map(str::trim)
            .find(|line| !line.starts_with("#["));
        let name = declaration
            .and_then(|line| line.split("mod ").nth(1))
            .and_then(|rest| rest.strip_suffix(';'));
        if let (Some(name), Some(text)) = (name, sources.remove(file)) {
            sources.insert(format!("{name}.rs"), text);
        }
    }
}

type ModPath = Vec<String>;

#[derive(Default)]
struct Module {
    children: BTreeSet<String>,
    /// Names bound by `use` in this module: the absolute path they name,
    /// or `None` for something outside the crate.
    uses: BTreeMap<String, Option<ModPath>>,
    /// Absolute paths this module names, with where (`file:line`).
    refs: Vec<(ModPath, String)>,
}

struct Graph {
    modules: BTreeMap<ModPath, Module>,
}

impl Graph {
    fn build(sources: &BTreeMap<String, String>) -> Graph {
        let mut modules: BTreeMap<ModPath, Module> = BTreeMap::new();
        let mut parsed = Parsed::default();
        for (file, text) in sources {
            let path = file_module(file);
            for ancestor in 1..=path.len() {
                modules
                    .entry(path[..ancestor - 1].to_vec())
                    .or_default()
                    .children
                    .insert(path[ancestor - 1].clone());
            }
            modules.entry(path.clone()).or_default();
            parse_file(file, text, path, &mut modules, &mut parsed);
        }
        // Relative paths may name a child module: resolved once all are known.
        for (module, name, path) in parsed.uses {
            let target = absolute(&modules, &module, &path);
            let entry = modules.get_mut(&module).expect("module exists");
            entry.uses.insert(name, target);
        }
        for (module, path, place) in parsed.refs {
            if let Some(path) = absolute(&modules, &module, &path) {
                let entry = modules.get_mut(&module).expect("module exists");
                entry.refs.push((path, place));
            }
        }
        Graph { modules }
    }

    /// The module that defines the item `path` names (absolute, from the
    /// crate root), following re-exports.
    fn defining_module(&self, path: &[String], hops: usize) -> ModPath {
        let mut current: ModPath = Vec::new();
        for (index, segment) in path.iter().enumerate() {
            let module = &self.modules[&current];
            if module.children.contains(segment) {
                current.push(segment.clone());
                continue;
            }
            if hops < 32 {
                if let Some(Some(target)) = module.uses.get(segment) {
                    let mut followed = target.clone();
                    followed.extend(path[index + 1..].iter().cloned());
                    return self.defining_module(&followed, hops + 1);
                }
            }
            break;
        }
        current
    }

    /// Every edge between sibling modules, by their parent: `(from, to)`
    /// with the first place that shows it. `ignored(parent, from, to)` drops
    /// an edge (`""` is the crate root).
    fn sibling_edges(
        &self,
        mut ignored: impl FnMut(&str, &str, &str) -> bool,
    ) -> BTreeMap<ModPath, BTreeMap<(String, String), String>> {
        let mut edges: BTreeMap<ModPath, BTreeMap<(String, String), String>> = BTreeMap::new();
        for (module, data) in &self.modules {
            for (path, place) in &data.refs {
                let target = self.defining_module(path, 0);
                let common = module
                    .iter()
                    .zip(&target)
                    .take_while(|(a, b)| a == b)
                    .count();
                if common == module.len() || common == target.len() {
                    continue; // one contains the other
                }
                let parent = module[..common].to_vec();
                let (from, to) = (module[common].clone(), target[common].clone());
                if ignored(&parent.join("::"), &from, &to) {
                    continue;
                }
                let evidence = format!(
                    "{place}: `{}` uses `{}`",
                    module.join("::"),
                    target.join("::")
                );
                edges
                    .entry(parent)
                    .or_default()
                    .entry((from, to))
                    .or_insert(evidence);
            }
        }
        edges
    }

    /// The cycles between siblings, as a readable report (empty if none).
    /// `ignored(parent, from, to)` drops an edge between the children
    /// `from` and `to` of `parent` (`""` for the crate root).
    fn cycles(&self, ignored: impl FnMut(&str, &str, &str) -> bool) -> String {
        let edges = self.sibling_edges(ignored);
        let mut report = String::new();
        for (parent, edges) in &edges {
            for (component, cycle) in find_cycles(edges) {
                let name = if parent.is_empty() {
                    "the crate root".to_owned()
                } else {
                    format!("`{}`", parent.join("::"))
                };
                let _ = writeln!(
                    report,
                    "children of {name} in one import cycle: {}; for example:",
                    component.join(", ")
                );
                for pair in cycle.windows(2) {
                    let evidence = &edges[&(pair[0].clone(), pair[1].clone())];
                    let _ = writeln!(report, "  `{}` -> `{}` ({evidence})", pair[0], pair[1]);
                }
            }
        }
        report
    }
}

/// Each strongly connected component with more than one module, with one
/// cycle through it as a closed walk `[a, b, .., a]`.
fn find_cycles(edges: &BTreeMap<(String, String), String>) -> Vec<(Vec<String>, Vec<String>)> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
        next.entry(to).or_default();
    }
    let reaches = |start: &str| -> BTreeMap<String, Option<String>> {
        // Breadth-first, remembering each module's predecessor.
        let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.to_owned()]);
        seen.insert(start.to_owned(), None);
        while let Some(node) = queue.pop_front() {
            for to in &next[node.as_str()] {
                if !seen.contains_key(*to) {
                    seen.insert((*to).to_owned(), Some(node.clone()));
                    queue.push_back((*to).to_owned());
                }
            }
        }
        seen
    };
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut cycles = Vec::new();
    for start in next.keys() {
        if done.contains(*start) {
            continue;
        }
        let from_start = reaches(start);
        // The component of `start`: what it reaches and what reaches it.
        let component: BTreeSet<String> = from_start
            .keys()
            .filter(|node| reaches(node).contains_key(*start))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        if component.len() < 2 {
            continue;
        }
        // A shortest way back to `start` through one of its predecessors.
        let back = next
            .iter()
            .filter(|(_, tos)| tos.contains(start))
            .map(|(from, _)| *from)
            .find(|from| component.contains(*from))
            .expect("a component has a way back");
        let mut walk = vec![(*start).to_owned()];
        let mut node = back.to_owned();
        let mut reversed = vec![node.clone()];
        while let Some(Some(previous)) = from_start.get(&node) {
            node = previous.clone();
            reversed.push(node.clone());
        }
        reversed.pop(); // `start` itself
        walk.extend(reversed.into_iter().rev());
        walk.push((*start).to_owned());
        cycles.push((component.into_iter().collect(), walk));
    }
    cycles
}

/// `lib.rs` is the root, `a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`.
fn file_module(file: &str) -> ModPath {
    let mut parts: Vec<String> = file.split('/').map(str::to_owned).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts
}

/// What `parse_file` finds, with paths as written.
#[derive(Default)]
struct Parsed {
    /// (module, name bound by a `use`, path it names)
    uses: Vec<(ModPath, String, Vec<String>)>,
    /// (module, path named, `file:line`)
    refs: Vec<(ModPath, Vec<String>, String)>,
}

/// Records the modules, `use` bindings and paths of one file.
fn parse_file(
    file: &str,
    text: &str,
    path: ModPath,
    modules: &mut BTreeMap<ModPath, Module>,
    parsed: &mut Parsed,
) {
    let tokens = tokenize(&strip(text));
    // The inline modules entered, with the brace depth they were opened at.
    let mut scopes = vec![(path, 0usize)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let current = scopes.last().expect("a module").0.clone();
        let token = &tokens[i];
        let place = format!("{file}:{}", token.line);
        match token.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if scopes.len() > 1 && scopes.last().expect("a module").1 == depth {
                    scopes.pop();
                }
            }
            "mod" if i + 2 < tokens.len() && is_ident(&tokens[i + 1].text) => {
                let name = tokens[i + 1].text.clone();
                modules
                    .entry(current.clone())
                    .or_default()
                    .children
                    .insert(name.clone());
                if tokens[i + 2].text == "{" {
                    let mut inner = current.clone();
                    inner.push(name);
                    modules.entry(inner.clone()).or_default();
                    scopes.push((inner, depth));
                }
            }
            "use" => {
                let (items, next) = parse_use(&tokens, i + 1);
                for item in items {
                    if let Some(name) = item.name {
                        parsed.uses.push((current.clone(), name, item.path.clone()));
                    }
                    parsed
                        .refs
                        .push((current.clone(), item.path, place.clone()));
                }
                i = next;
                continue;
            }
            "crate" | "super" | "self"
                if tokens.get(i + 1).is_some_and(|t| t.text == "::")
                    && (i == 0 || !matches!(tokens[i - 1].text.as_str(), "::" | "in")) =>
            {
                let mut segments = vec![token.text.clone()];
                let mut j = i + 1;
                while j + 1 < tokens.len()
                    && tokens[j].text == "::"
                    && is_ident(&tokens[j + 1].text)
                {
                    segments.push(tokens[j + 1].text.clone());
                    j += 2;
                }
                parsed.refs.push((current.clone(), segments, place));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The absolute path a path written in `module` names, or `None` if it
/// names something outside the crate.
fn absolute(
    modules: &BTreeMap<ModPath, Module>,
    module: &ModPath,
    path: &[String],
) -> Option<ModPath> {
    let (first, rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => {
            let mut base = module.clone();
            base.pop();
            base
        }
        child
            if modules
                .get(module)
                .is_some_and(|m| m.children.contains(child)) =>
        {
            let mut base = module.clone();
            base.push(child.to_owned());
            base
        }
        _ => return None,
    };
    let mut rest = rest;
    while let Some(("super", tail)) = rest.split_first().map(|(s, t)| (s.as_str(), t)) {
        base.pop();
        rest = tail;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

struct UseItem {
    /// As written, `self` in braces resolved: `a::b::{self, C}` gives
    /// `a::b` and `a::b::C`.
    path: Vec<String>,
    /// The name it binds (`None` for globs and `as _`).
    name: Option<String>,
}

/// Parses the use tree starting at `start` up to its `;`.
fn parse_use(tokens: &[Token], start: usize) -> (Vec<UseItem>, usize) {
    let mut items = Vec::new();
    let mut i = start;
    parse_tree(tokens, &mut i, Vec::new(), &mut items);
    while i < tokens.len() && tokens[i].text != ";" {
        i += 1;
    }
    (items, i + 1)
}

fn parse_tree(tokens: &[Token], i: &mut usize, mut prefix: Vec<String>, items: &mut Vec<UseItem>) {
    let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    if text(*i) == "$" {
        *i += 1;
    }
    if text(*i) == "::" {
        *i += 1;
    }
    loop {
        match text(*i) {
            "{" => {
                *i += 1;
                while text(*i) != "}" && *i < tokens.len() {
                    parse_tree(tokens, i, prefix.clone(), items);
                    if text(*i) == "," {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                *i += 1;
                items.push(UseItem {
                    path: prefix,
                    name: None,
                });
                return;
            }
            "self" if !prefix.is_empty() => {
                *i += 1;
                let name = alias(tokens, i).unwrap_or_else(|| prefix.last().cloned());
                items.push(UseItem { path: prefix, name });
                return;
            }
            segment if is_ident(segment) => {
                prefix.push(segment.to_owned());
                *i += 1;
                if text(*i) == "::" {
                    *i += 1;
                    continue;
                }
                let name = alias(tokens, i).unwrap_or_else(|| prefix.last().cloned());
                items.push(UseItem { path: prefix, name });
                return;
            }
            _ => return,
        }
    }
}

/// `as name` (`Some(Some(name))`), `as _` (`Some(None)`), or no alias.
fn alias(tokens: &[Token], i: &mut usize) -> Option<Option<String>> {
    if tokens.get(*i).is_some_and(|t| t.text == "as") {
        let name = tokens.get(*i + 1).map(|t| t.text.clone());
        *i += 2;
        return Some(name.filter(|name| name != "_"));
    }
    None
}

fn is_ident(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_alphanumeric() || c == '_')
}

struct Token {
    text: String,
    line: usize,
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// `text` with comments, string and character literals blanked out (line
/// breaks kept, so that line numbers stay right).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            // A raw string: r"..", r#".."#.
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[j]);
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&c) = chars.get(i) {
                    blank(&mut out, c);
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{..}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3; // 'a'
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
