//! The layer order of ARCHITECTURE.md ("Layers"), checked on the source.
//!
//! Each crate's top-level modules are listed on layers, lowest first. A module may use the
//! modules of the layers below its own and nothing else: not its own layer's (so peers stay
//! independent) and not a higher one's. A module and its own children may use each other
//! freely. Every path a file names counts: `use` trees and paths in code alike, whether
//! written `crate::…`, `super::…` or `self::…`; code under `#[cfg(test)]` does not.
//!
//! A second rule keeps the wire at the edge: only the files listed in `wire` may name
//! `weir_proto` or `tonic`.
//!
//! A third rule keeps a layer's internals its own: the files under a prefix may not name
//! certain types or fields (the edge reads partitions through `Topic` and the facade, never a
//! `PartitionLog` or the group coordinator).
//!
//! `known` lists the back-edges not yet removed, so the rules could land before the code
//! obeys them. It can only shrink: a listed edge that no longer exists fails the test too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// One crate's rules.
struct Rules {
    /// The crate's `src` directory, relative to the workspace.
    src: &'static str,
    /// Top-level modules, lowest layer first.
    layers: &'static [&'static [&'static str]],
    /// Path prefixes (relative to `src`) of the files that may name the wire crates.
    wire: &'static [&'static str],
    /// Back-edges still in the code: (from, to) modules.
    known: &'static [(&'static str, &'static str)],
    /// Files (relative to `src`) that name a wire crate outside `wire`, still in the code.
    known_wire: &'static [&'static str],
    /// (path prefix, names): files under the prefix may not name these types or fields.
    hidden: &'static [(&'static str, &'static [&'static str])],
}

const WIRE_CRATES: [&str; 3] = ["weir_proto", "tonic", "kafka_protocol"];

const BROKER: Rules = Rules {
    src: "broker/src",
    layers: &[
        &["error", "types"],
        &["storage", "metrics", "blocking"],
        &["log", "plugins", "security"],
        &["topics"],
        &["groups", "pipelines"],
        &["cluster"],
        &["config"],
        &["broker"],
        &["server", "kafka"],
    ],
    wire: &["server/", "kafka/", "cluster/network/", "main.rs"],
    known: &[],
    known_wire: &[],
    hidden: &[("server/", EDGE_HIDDEN), ("kafka/", EDGE_HIDDEN)],
};

/// What the broker's two edges (gRPC, Kafka) may not name: they read partitions through
/// `Topic` and the facade.
const EDGE_HIDDEN: &[&str] = &[
    "PartitionLog",
    "GroupCoordinator",
    "Appender",
    "log",
    "appender",
];

const SDK: Rules = Rules {
    src: "sdk-rust/src",
    layers: &[
        &["error"],
        &["auth", "start"],
        &["tls"],
        &["client"],
        &["admin", "producer"],
        &["consumer"],
        &["pipeline", "transform", "users", "views"],
        &["status"],
    ],
    // The SDK is a gRPC client through and through: every module may speak the wire.
    wire: &[""],
    known: &[],
    known_wire: &[],
    hidden: &[],
};

const CONNECT: Rules = Rules {
    src: "connect/src",
    layers: &[
        &["config", "json"],
        &["error"],
        &["state", "postgres"],
        &["status"],
        &["context", "record"],
        &["transform"],
        &["source", "sink"],
        &["runtime"],
    ],
    wire: &[],
    known: &[],
    known_wire: &[],
    hidden: &[],
};

const CHAOS: Rules = Rules {
    src: "chaos/src",
    layers: &[
        &["history", "net", "faults", "availability"],
        &["checker", "brokers", "workload"],
        &["drive"],
    ],
    // Its workloads are clients: the SDK is their wire.
    wire: &[],
    known: &[],
    known_wire: &[],
    hidden: &[],
};

#[test]
fn the_broker_keeps_its_layers() {
    check_crate(&BROKER);
}

#[test]
fn the_rust_sdk_keeps_its_layers() {
    check_crate(&SDK);
}

#[test]
fn the_connectors_keep_their_layers() {
    check_crate(&CONNECT);
}

#[test]
fn the_chaos_harness_keeps_its_layers() {
    check_crate(&CHAOS);
}

/// The checker finds a back-edge, wherever it is written, and a wire crate outside the edge.
#[test]
fn a_back_edge_or_a_stray_wire_type_fails_the_check() {
    const RULES: Rules = Rules {
        src: "",
        layers: &[&["storage"], &["log", "groups"], &["server"]],
        wire: &["server/"],
        known: &[],
        known_wire: &[],
        hidden: &[("server/", &["Store", "inner"])],
    };
    let clean = [
        (
            "lib.rs",
            "pub mod storage; pub mod log; pub mod groups; pub mod server;",
        ),
        ("storage/mod.rs", "pub struct Store; pub mod keys;"),
        ("storage/keys.rs", "use super::Store; fn f(_: &Store) {}"),
        (
            "log/mod.rs",
            "use crate::storage::Store; pub struct Log(Store);",
        ),
        (
            "server/mod.rs",
            "use crate::{log::Log, groups}; fn f(_: tonic::Status) {}",
        ),
        (
            "groups/mod.rs",
            "#[cfg(test)] mod tests { use crate::server::X; fn f() -> weir_proto::A {} }",
        ),
    ];
    let found = violations(&RULES, &parse(&clean));
    assert_eq!(found, Violations::default());

    // A storage file names the log in code, not in a `use`.
    let mut back = clean.to_vec();
    back[2] = ("storage/keys.rs", "fn f(_: super::super::log::Log) {}");
    // Two peers of one layer.
    back.push(("groups/state.rs", "use crate::log::{self, Log};"));
    // The wire below the edge.
    back[3] = (
        "log/mod.rs",
        "use crate::storage::Store; pub struct Log(Store, weir_proto::v1::Batch);",
    );
    let found = violations(&RULES, &parse(&back));
    assert_eq!(
        found.edges,
        BTreeMap::from([
            (("groups".into(), "log".into()), "groups/state.rs".into()),
            (("storage".into(), "log".into()), "storage/keys.rs".into()),
        ])
    );
    assert_eq!(found.wire, BTreeSet::from(["log/mod.rs".to_string()]));
    assert!(found.hidden.is_empty(), "{:?}", found.hidden);

    // The edge reaching into a lower layer's internals, by type or by field.
    let mut reach = clean.to_vec();
    reach[4] = (
        "server/mod.rs",
        "use crate::log::Log; fn f(s: &crate::storage::Store) -> usize { s.inner.len() }",
    );
    let found = violations(&RULES, &parse(&reach));
    assert_eq!(
        found.hidden,
        BTreeSet::from([
            ("server/mod.rs".to_string(), "Store".to_string()),
            ("server/mod.rs".to_string(), "inner".to_string()),
        ])
    );
}

#[derive(Debug, Default, PartialEq)]
struct Violations {
    /// (from, to) → the first file that makes the edge.
    edges: BTreeMap<(String, String), String>,
    /// Files naming a wire crate outside the edge.
    wire: BTreeSet<String>,
    /// (file, name) for each hidden name a file uses.
    hidden: BTreeSet<(String, String)>,
}

/// What one file names: the top-level modules of its crate, whether it names the wire, and
/// the items (a path's last segment, a `use`'s leaf) and fields it uses.
#[derive(Debug, Default)]
struct Names {
    modules: BTreeSet<String>,
    wire: bool,
    idents: BTreeSet<String>,
}

fn check_crate(rules: &Rules) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rules.src);
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|rel| {
            let text = std::fs::read_to_string(root.join(rel)).expect("readable source");
            (rel.clone(), text)
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = sources
        .iter()
        .map(|(p, s)| (p.as_str(), s.as_str()))
        .collect();
    let parsed = parse(&borrowed);

    let placed: BTreeSet<&str> = rules
        .layers
        .iter()
        .flat_map(|l| l.iter().copied())
        .collect();
    let present: BTreeSet<String> = parsed.keys().filter_map(|file| top_module(file)).collect();
    let unplaced: Vec<&String> = present
        .iter()
        .filter(|m| !placed.contains(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "{}: modules on no layer: {unplaced:?}; put each on a layer here and in ARCHITECTURE.md",
        rules.src
    );

    let found = violations(rules, &parsed);
    assert!(
        found.hidden.is_empty(),
        "{}: files naming what their layer may not see: {:?}",
        rules.src,
        found.hidden
    );
    let known: BTreeSet<(String, String)> = rules
        .known
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<String> = found
        .edges
        .iter()
        .filter(|(edge, _)| !known.contains(*edge))
        .map(|((a, b), file)| format!("{a} -> {b} (in {file})"))
        .collect();
    assert!(
        new.is_empty(),
        "{}: modules using a module on their own or a higher layer: {new:#?}",
        rules.src
    );
    let gone: Vec<&(String, String)> = known
        .iter()
        .filter(|edge| !found.edges.contains_key(*edge))
        .collect();
    assert!(
        gone.is_empty(),
        "{}: back-edges gone from the code; remove them from `known`: {gone:?}",
        rules.src
    );

    let known_wire: BTreeSet<String> = rules.known_wire.iter().map(|f| f.to_string()).collect();
    let stray: Vec<&String> = found.wire.difference(&known_wire).collect();
    assert!(
        stray.is_empty(),
        "{}: files below the edge naming {WIRE_CRATES:?}: {stray:?}",
        rules.src
    );
    let gone: Vec<&String> = known_wire.difference(&found.wire).collect();
    assert!(
        gone.is_empty(),
        "{}: files no longer naming the wire; remove them from `known_wire`: {gone:?}",
        rules.src
    );
}

fn violations(rules: &Rules, parsed: &BTreeMap<String, Names>) -> Violations {
    let layer_of: BTreeMap<&str, usize> = rules
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect();
    let mut out = Violations::default();
    for (file, names) in parsed {
        if names.wire && !rules.wire.iter().any(|p| file.starts_with(p)) {
            out.wire.insert(file.clone());
        }
        for (prefix, hidden) in rules.hidden {
            if file.starts_with(prefix) {
                for name in hidden.iter().filter(|n| names.idents.contains(**n)) {
                    out.hidden.insert((file.clone(), name.to_string()));
                }
            }
        }
        // The crate root declares and re-exports everything: it is above every layer.
        let Some(from) = top_module(file) else {
            continue;
        };
        let Some(&from_layer) = layer_of.get(from.as_str()) else {
            continue;
        };
        for to in &names.modules {
            if *to == from {
                continue;
            }
            // Names that are not modules of this crate (a type at the root, say) are not edges.
            let Some(&to_layer) = layer_of.get(to.as_str()) else {
                continue;
            };
            if to_layer >= from_layer {
                out.edges
                    .entry((from.clone(), to.clone()))
                    .or_insert_with(|| file.clone());
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, relative to `root`, except test-only files.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_stem().is_some_and(|s| s != "tests")
        {
            let rel = path.strip_prefix(root).expect("under the root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path of a file: `log/mod.rs` and `log.rs` are `["log"]`, the roots `[]`.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").expect("a .rs file");
    let mut parts: Vec<String> = stem.split('/').map(String::from).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// A file's top-level module; `None` for the crate roots.
fn top_module(file: &str) -> Option<String> {
    module_of(file).into_iter().next()
}

fn parse(sources: &[(&str, &str)]) -> BTreeMap<String, Names> {
    sources
        .iter()
        .map(|(file, text)| {
            let ast = syn::parse_file(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut walker = Walker {
                module: module_of(file),
                names: Names::default(),
            };
            walker.visit_file(&ast);
            (file.to_string(), walker.names)
        })
        .collect()
}

struct Walker {
    /// The module being walked (grows inside inline `mod x { … }`).
    module: Vec<String>,
    names: Names,
}

impl Walker {
    /// Records a path given as segments, resolving `crate`, `super` and `self`.
    fn name(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let first = first.trim_start_matches("r#");
        if WIRE_CRATES.contains(&first) {
            self.names.wire = true;
            return;
        }
        let mut module = match first {
            "crate" => Vec::new(),
            "self" | "super" => self.module.clone(),
            _ => return,
        };
        let mut rest = &segments[1..];
        if first == "super" {
            module.pop();
        }
        while rest.first().is_some_and(|s| s == "super") {
            module.pop();
            rest = &rest[1..];
        }
        let top = module.first().or(rest.first());
        if let Some(top) = top {
            self.names.modules.insert(top.clone());
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                self.names.idents.insert(n.ident.to_string());
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.name(&full);
            }
            syn::UseTree::Rename(r) => {
                self.names.idents.insert(r.ident.to_string());
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.name(&full);
            }
            syn::UseTree::Glob(_) => self.name(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl<'ast> Visit<'ast> for Walker {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test_only(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut prefix = Vec::new();
        self.use_tree(&mut prefix, &u.tree);
    }

    fn visit_member(&mut self, m: &'ast syn::Member) {
        if let syn::Member::Named(ident) = m {
            self.names.idents.insert(ident.to_string());
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        // A one-segment path in lower case is a local variable or function, not an item.
        if let Some(last) = segments.last()
            && (segments.len() > 1 || last.starts_with(char::is_uppercase))
        {
            self.names.idents.insert(last.clone());
        }
        self.name(&segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Macro bodies are tokens, not syntax: look for `crate::x`, `super::x` and the wire
        // crates' names in them.
        let tokens: Vec<String> = m.tokens.clone().into_iter().flat_map(flatten).collect();
        for window in tokens.windows(4) {
            if matches!(window[0].as_str(), "crate" | "super" | "self")
                && window[1] == ":"
                && window[2] == ":"
            {
                let segments = [window[0].clone(), window[3].clone()];
                self.name(&segments);
            }
        }
        if tokens.iter().any(|t| WIRE_CRATES.contains(&t.as_str())) {
            self.names.wire = true;
        }
        syn::visit::visit_macro(self, m);
    }
}

fn flatten(tree: proc_macro2::TokenTree) -> Vec<String> {
    match tree {
        proc_macro2::TokenTree::Group(g) => g.stream().into_iter().flat_map(flatten).collect(),
        proc_macro2::TokenTree::Ident(i) => vec![i.to_string()],
        proc_macro2::TokenTree::Punct(p) => vec![p.as_char().to_string()],
        proc_macro2::TokenTree::Literal(l) => vec![l.to_string()],
    }
}
