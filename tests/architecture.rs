//! The layering of `src/`, checked from the code's own paths: every module points only down
//! the layers below, and no set of files imports itself in a circle.
//!
//! `cargo test --test architecture -- --nocapture` prints the module graph;
//! `PETREL_SRC_DIR=<other checkout>/src` checks another tree (e.g. an older commit).
//!
//! How paths are read: every `crate::`, `super::` and `self::` path in a file's code (not
//! comments, not its `#[cfg(test)]` module), and every path that starts with a name the
//! file imported with `use`, is resolved to the file that defines it. A `pub use` in a
//! `mod.rs` only re-exports: it is followed to the defining file and is not an edge of its
//! own, and `mod x;` declarations are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may use modules of lower layers only (not its own
/// layer's siblings: `cluster` and `group` are independent services).
const LAYERS: &[&[&str]] = &[
    &["runtime", "record_batch"],
    &["protocol", "testkit", "storage"],
    &["cluster", "group"],
    &["config", "simulation"],
    &["shard"],
    &["server"],
    &["broker"],
];

/// One `.rs` file as a module path (`["storage", "log", "append"]`).
type Module = Vec<String>;

struct Source {
    /// Module path of every file, and its code with comments and test modules removed.
    files: BTreeMap<Module, String>,
}

impl Source {
    fn load(root: &Path) -> Source {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let module = module_of(root, &path);
                    // Test-only modules (`tests.rs`) are not part of the layering.
                    if module.last().is_some_and(|m| m == "tests") {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).expect("read file");
                    files.insert(module, strip(&text));
                }
            }
        }
        Source { files }
    }

    fn is_module(&self, module: &[String]) -> bool {
        self.files.contains_key(module)
    }

    /// The file a path names: the longest prefix that is a module, then (if that module
    /// re-exports the next segment) the module it re-exports it from.
    fn resolve(&self, path: &[String], depth: usize) -> Option<Module> {
        let prefix = (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.is_module(p))?;
        let Some(item) = path.get(prefix.len()) else {
            return Some(prefix);
        };
        if depth > 8 {
            return Some(prefix);
        }
        let code = &self.files[&prefix];
        for (alias, target) in uses(code, &prefix, true) {
            if &alias == item {
                let mut full = target;
                full.extend_from_slice(&path[prefix.len() + 1..]);
                if let Some(found) = self.resolve(&full, depth + 1) {
                    return Some(found);
                }
            }
        }
        Some(prefix)
    }

    /// Every file `module` depends on.
    fn dependencies(&self, module: &Module) -> BTreeSet<Module> {
        let code = &self.files[module];
        let aliases: BTreeMap<String, Vec<String>> =
            uses(code, module, false).into_iter().collect();
        let mut found = BTreeSet::new();
        for path in paths(code) {
            let absolute = match path[0].as_str() {
                "crate" | "super" | "self" => absolute(module, &path),
                first => aliases.get(first).map(|target| {
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    full
                }),
            };
            if let Some(target) = absolute.and_then(|p| self.resolve(&p, 0)) {
                if &target != module && !target.is_empty() {
                    found.insert(target);
                }
            }
        }
        // A glob import depends on the module it globs (and, through its names, on its
        // children: `use super::handlers::*` then `produce::handle`).
        for target in globs(code, module) {
            if let Some(target) = self.resolve(&target, 0) {
                for path in paths(code) {
                    let mut child = target.clone();
                    child.push(path[0].clone());
                    if self.is_module(&child) && child != *module {
                        found.insert(child);
                    }
                }
                if target != *module {
                    found.insert(target);
                }
            }
        }
        found
    }
}

fn module_of(root: &Path, file: &Path) -> Module {
    let relative: PathBuf = file.strip_prefix(root).expect("under src").to_path_buf();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code without comments, string literals' contents and the `#[cfg(test)] mod tests`.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn absolute(module: &Module, path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = module.clone();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend_from_slice(rest);
    Some(base)
}

/// Every `a::b::c` path in the code, as segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts_word {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            segments.push(code[start..j].to_string());
            let next = j + 2;
            if code[j..].starts_with("::")
                && next < bytes.len()
                && (bytes[next].is_ascii_alphabetic() || bytes[next] == b'_')
            {
                j = next;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            found.push(segments);
        }
        i = j.max(i + 1);
    }
    found
}

/// The `use` declarations of a file as (name in scope, absolute path). `reexports_only`:
/// only `pub use` (what a module re-exports); otherwise only private `use` (`pub use` is a
/// re-export, not a dependency of the file that states it).
fn uses(code: &str, module: &Module, reexports_only: bool) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for statement in use_statements(code) {
        let (public, tree) = statement;
        if public != reexports_only {
            continue;
        }
        for (path, alias) in expand(&tree) {
            let segments: Vec<String> = path.split("::").map(str::to_string).collect();
            let Some(name) = alias.or_else(|| segments.last().cloned()) else {
                continue;
            };
            if name == "*" || name == "self" && segments.len() == 1 {
                continue;
            }
            let segments = if segments.last().is_some_and(|s| s == "self") {
                segments[..segments.len() - 1].to_vec()
            } else {
                segments
            };
            let name = if name == "self" {
                segments.last().cloned().unwrap_or_default()
            } else {
                name
            };
            let resolved = match segments[0].as_str() {
                "crate" | "super" | "self" => absolute(module, &segments),
                // `use child::X` inside a module means its own child.
                first if is_child(module, first, code) => {
                    let mut full = module.clone();
                    full.extend(segments.iter().cloned());
                    Some(full)
                }
                _ => None,
            };
            if let Some(resolved) = resolved {
                found.push((name, resolved));
            }
        }
    }
    found
}

fn is_child(_module: &Module, name: &str, code: &str) -> bool {
    code.contains(&format!("mod {name};"))
}

/// `use a::b::*` targets, as absolute paths.
fn globs(code: &str, module: &Module) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (public, tree) in use_statements(code) {
        if public {
            continue;
        }
        for (path, _) in expand(&tree) {
            if let Some(base) = path.strip_suffix("::*") {
                let segments: Vec<String> = base.split("::").map(str::to_string).collect();
                if matches!(segments[0].as_str(), "crate" | "super" | "self") {
                    if let Some(target) = absolute(module, &segments) {
                        found.push(target);
                    }
                }
            }
        }
    }
    found
}

/// Every `use` statement as (is `pub`, the tree without spaces).
fn use_statements(code: &str) -> Vec<(bool, String)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        let prefix = before[line_start..].trim();
        rest = &rest[at + 4..];
        if !(prefix.is_empty() || prefix.starts_with("pub")) {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        // `e as f` is kept as `e=>f`; every other space goes.
        let words = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        let tree = words.replace(" as ", "=>").replace(' ', "");
        found.push((prefix.starts_with("pub"), tree));
        rest = &rest[end..];
    }
    found
}

/// `a::{b,c::{d,e=>f}}` (spaces removed, `as` written `=>`) into (`a::b`, None),
/// (`a::c::d`, None), (`a::c::e`, Some(f)).
fn expand(tree: &str) -> Vec<(String, Option<String>)> {
    let Some(open) = tree.find('{') else {
        return match tree.split_once("=>") {
            Some((path, alias)) => vec![(path.to_string(), Some(alias.to_string()))],
            None => vec![(tree.to_string(), None)],
        };
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|part| expand(&format!("{prefix}{part}")))
        .collect()
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a Module) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        for target in state.graph.get(node).into_iter().flatten() {
            let Some((target, _)) = state.graph.get_key_value(target) else {
                continue;
            };
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.clone());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.found
}

fn layer_of(module: &Module) -> Option<usize> {
    let top = module.first()?;
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top.as_str()))
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = std::env::var_os("PETREL_SRC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let source = Source::load(&root);
    source
        .files
        .keys()
        .map(|module| (module.clone(), source.dependencies(module)))
        .collect()
}

#[test]
fn every_module_points_down_the_layers() {
    let graph = graph();
    let mut layer_edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut violations = Vec::new();
    for (module, targets) in &graph {
        // The binary's entry point (`main.rs`, module path empty) may use every layer.
        let Some(from) = module.first() else { continue };
        for target in targets {
            let Some(to) = target.first() else { continue };
            if from == to {
                continue;
            }
            *layer_edges.entry((from.clone(), to.clone())).or_default() += 1;
            match (layer_of(module), layer_of(target)) {
                (Some(a), Some(b)) if b < a => {}
                (a, b) => violations.push(format!(
                    "{} (layer {a:?}) -> {} (layer {b:?})",
                    module.join("::"),
                    target.join("::")
                )),
            }
        }
    }
    println!("module -> module: files that use it");
    for ((from, to), count) in &layer_edges {
        println!("  {from} -> {to}: {count}");
    }
    assert!(
        violations.is_empty(),
        "imports that do not point down the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let graph = graph();
    let found = circles(&graph);
    for circle in &found {
        println!(
            "circle of {} files: {}",
            circle.len(),
            circle
                .iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The same over top-level modules (`shard` -> `server` -> `shard` is a circle even when
    // the files involved differ).
    let mut modules: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, targets) in &graph {
        let from: Module = module.iter().take(1).cloned().collect();
        let entry = modules.entry(from.clone()).or_default();
        for target in targets {
            let to: Module = target.iter().take(1).cloned().collect();
            if to != from {
                entry.insert(to);
            }
        }
    }
    let module_circles = circles(&modules);
    for circle in &module_circles {
        let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
        let files = graph
            .keys()
            .filter(|file| circle.iter().any(|m| file.starts_with(m)))
            .count();
        println!("module circle: {} ({files} files)", names.join(", "));
    }
    println!(
        "{} files: {} file circles, {} module circles",
        graph.len(),
        found.len(),
        module_circles.len()
    );
    assert!(found.is_empty(), "file import circles: {found:?}");
    assert!(
        module_circles.is_empty(),
        "module import circles: {module_circles:?}"
    );
}

/// The reader itself: a known circle is found, and layered code passes.
#[test]
fn the_reader_finds_a_circle_and_follows_reexports() {
    let module = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let mut graph = BTreeMap::new();
    graph.insert(module("a"), BTreeSet::from([module("b")]));
    graph.insert(module("b"), BTreeSet::from([module("c")]));
    graph.insert(module("c"), BTreeSet::from([module("a")]));
    graph.insert(module("d"), BTreeSet::from([module("a")]));
    let found = circles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);

    let source = Source {
        files: BTreeMap::from([
            (module("s"), strip("mod log;\npub use log::{Log, Read as LogRead};\n")),
            (module("s::log"), strip("pub struct Log;\n")),
            (
                module("u"),
                strip("use crate::s::LogRead;\n// crate::x::y is a comment\nfn f(_: crate::s::Log) {}\n"),
            ),
        ]),
    };
    assert_eq!(
        source.dependencies(&module("u")),
        BTreeSet::from([module("s::log")])
    );
    assert!(source.dependencies(&module("s")).is_empty());
    assert_eq!(
        expand("a::{b,c::{d,e=>f}}"),
        vec![
            ("a::b".to_string(), None),
            ("a::c::d".to_string(), None),
            ("a::c::e".to_string(), Some("f".to_string())),
        ]
    );
}
