//! The layering of `src/`, read from the code's own paths and checked against
//! `ARCHITECTURE.md`, the one place the layers and the outside crates' places are written:
//! every module points only down the layers, no files or modules import each other in a
//! circle, an outside crate is named only where ARCHITECTURE.md puts it, and `src/lib.rs`
//! declares exactly the layered modules.
//!
//! `cargo test --test architecture -- --nocapture --test-threads 1` prints the graph and a
//! line to quote: `architecture: N files, E edges, C file circles, ...`.
//! `PETREL_SRC_DIR=<dir>` reads another tree (an older commit's `src/`) and
//! `PETREL_ARCHITECTURE_MD=<file>` another spec; the two are independent, so an old tree
//! can be measured against a new spec. `PETREL_ARCH_EDGES=1` also prints every file edge.
//!
//! ARCHITECTURE.md: the first fenced block after `## Layers` has one line per layer
//! (`3  cluster/  group/  services`: a number, higher is higher, then tokens ending in `/`
//! or `.rs`, then free text); the first fenced block after `## Outside crates` has one line
//! per restricted crate (`raft  cluster/quorum/  consensus`: the name as Rust paths write
//! it, then the places it may be named: `x/` is every file under `src/x/`, `x.rs` the file
//! `src/x.rs`, `main.rs` the binary). Crates not listed are unrestricted.
//!
//! How paths are read. A file's code is cleaned first: comments go, string and char
//! literals are emptied, and its `#[cfg(test)] mod` items and `tests.rs` files are dropped
//! (test-only code is not part of the layering). Every path is then anchored to an absolute
//! module path:
//! - `crate::`, `self::`, `super::` as Rust reads them (in `main.rs`, the binary, `crate::`
//!   is the binary itself and `petrel::` the library);
//! - a first segment naming a child module the file declares (`mod x;`) is that child;
//! - a first segment the file imported with `use` is what it imported;
//! - a first segment naming a child of a glob-imported module is that child
//!   (`use super::handlers::*;` then `produce::handle`).
//!
//! An anchored path is resolved to the file defining what it names: the longest prefix that
//! is a file; then, if that file imports or re-exports the next segment (`use`, `pub use`,
//! `pub use x::*`), on to where that name comes from, up to `REEXPORT_DEPTH` times.
//!
//! The edges of a file: every path in its code, and every item of every `use` in it
//! (private, `pub`, `pub(crate)`; grouped, nested, `self` in a group, globs) that lands in
//! the crate. A name imported only to be written bare (`use super::{Partition, Shard};`
//! then `Shard` in a type) is still an import, and a re-export is an import of the file it
//! re-exports from. `mod x;` declarations are not edges.
//!
//! An inline `mod x { .. }` (outside tests) is read as part of its file, which is right for
//! `crate::` paths and re-exports (`pub mod sync { pub use glommio::sync::Semaphore; }`).
//! What it cannot read, and says so: an inline module writing `self::` or `super::` (its paths
//! would be read as the file's own), two files for one module.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A reader that silently reads nothing (a moved directory, a parsing slip) would pass
/// every check; the real tree must yield at least this much.
const FILES_READ_MIN: usize = 100;
const EDGES_READ_MIN: usize = 400;
const LAYERS_MIN: usize = 5;

/// The library's name as the binary (`src/main.rs`) writes it.
const LIB_CRATE: &str = "petrel";

/// The module path given to `src/main.rs`: the binary is a crate of its own, above every
/// layer (no real module name contains a dot). `src/lib.rs` is the empty path.
const BIN: &str = "main.rs";

/// How many imports or re-exports one name is followed through (a longer chain is a loop).
const REEXPORT_DEPTH: usize = 8;

/// A file as a module path (`["storage", "log", "append"]`).
type Module = Vec<String>;
type Graph<T> = BTreeMap<T, BTreeSet<T>>;
/// (from top-level module, to top-level module) -> the files of `from` that use `to`.
type ModuleEdges = BTreeMap<(String, String), BTreeSet<String>>;

// ---------------------------------------------------------------------------------------
// Cleaning a file's text

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_len(s: &str) -> usize {
    s.bytes().take_while(|b| is_ident_byte(*b)).count()
}

/// The code without comments and with string and char literals emptied (`""`, `' '`), so
/// neither a path in a comment or a message nor a `{` in a literal is read as code.
/// Newlines are kept.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match literal_or_comment_end(&chars, i) {
            Some((end, stand_in)) => {
                out.push_str(stand_in);
                out.extend(chars[i..end].iter().filter(|c| **c == '\n'));
                i = end;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// If a comment or a literal starts at `i`: where it ends, and what stands in for it.
fn literal_or_comment_end(chars: &[char], i: usize) -> Option<(usize, &'static str)> {
    let after_word = i > 0 && is_ident_char(chars[i - 1]);
    match (chars[i], chars.get(i + 1)) {
        ('/', Some('/')) => Some((line_end(chars, i), " ")),
        ('/', Some('*')) => Some((block_comment_end(chars, i), " ")),
        ('"', _) => Some((string_end(chars, i + 1), "\"\"")),
        ('r', _) | ('b', Some('r')) if !after_word => raw_string_end(chars, i).map(|e| (e, "\"\"")),
        ('\'', _) => char_literal_end(chars, i).map(|e| (e, "' '")),
        _ => None,
    }
}

fn line_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] != '\n' {
        i += 1;
    }
    i
}

/// Block comments nest in Rust.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let (mut depth, mut i) = (0, start);
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
            ('*', Some('/')) => (depth, i) = (depth - 1, i + 2),
            _ => i += 1,
        }
        if depth == 0 {
            return i;
        }
    }
    i
}

/// The end of a string whose contents start at `i`.
fn string_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// `r"…"`, `r#"…"#`, `br"…"`; None for a word that only starts with `r` or `br`.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + usize::from(chars[start] == 'b');
    if chars.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
    i += hashes;
    if chars.get(i) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let end = (i + 1..chars.len()).find(|k| chars[*k..].starts_with(&closing));
    Some(end.map_or(chars.len(), |k| k + closing.len()))
}

/// `'x'`, `'\n'`, `'\''`, `'\u{1F600}'`; None for a lifetime or a label (`'a`, `'static`).
fn char_literal_end(chars: &[char], start: usize) -> Option<usize> {
    match (chars.get(start + 1), chars.get(start + 2)) {
        (Some('\\'), _) => {
            let quote = (start + 3..chars.len()).find(|k| chars[*k] == '\'');
            Some(quote.map_or(chars.len(), |k| k + 1))
        }
        (Some(_), Some('\'')) => Some(start + 3),
        _ => None,
    }
}

/// The code without its `#[cfg(test)] mod x { .. }` and `#[cfg(test)] mod x;` items, and the
/// names of the latter (test-only files, not read). Everything after a test module is kept.
fn remove_test_modules(code: &str) -> (String, Vec<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut test_files = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        out.push_str(&rest[..at]);
        match test_module(after) {
            Some((len, name, is_file)) => {
                out.extend(after[..len].chars().filter(|c| *c == '\n'));
                if is_file {
                    test_files.push(name);
                }
                rest = &after[len..];
            }
            // A test-only function or field: kept (its paths count, conservatively).
            None => {
                out.push_str(MARK);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, test_files)
}

/// If `code` (what follows a `#[cfg(test)]`) is a module item: its length, its name, and
/// whether it declares a file (`mod x;`) rather than an inline module.
fn test_module(code: &str) -> Option<(usize, String, bool)> {
    let item = skip_visibility(skip_attributes(code));
    let after_mod = item.strip_prefix("mod")?;
    if !after_mod.starts_with(char::is_whitespace) {
        return None;
    }
    let named = after_mod.trim_start();
    let name = &named[..ident_len(named)];
    let after_name = named[name.len()..].trim_start();
    let taken = code.len() - after_name.len();
    match after_name.chars().next()? {
        _ if name.is_empty() => None,
        ';' => Some((taken + 1, name.to_string(), true)),
        '{' => Some((
            taken + closing(after_name, '{', '}')? + 1,
            name.to_string(),
            false,
        )),
        _ => None,
    }
}

/// Past whitespace and `#[..]` attributes.
fn skip_attributes(mut code: &str) -> &str {
    loop {
        code = code.trim_start();
        match code.strip_prefix('#').filter(|c| c.starts_with('[')) {
            Some(attribute) => match closing(attribute, '[', ']') {
                Some(end) => code = &attribute[end + 1..],
                None => return code,
            },
            None => return code,
        }
    }
}

/// Past `pub`, `pub(crate)`, `pub(in a::b)` and the whitespace after it.
fn skip_visibility(code: &str) -> &str {
    let Some(after) = code.strip_prefix("pub") else {
        return code;
    };
    let after = after.trim_start();
    match after
        .starts_with('(')
        .then(|| closing(after, '(', ')'))
        .flatten()
    {
        Some(end) => after[end + 1..].trim_start(),
        None => after,
    }
}

/// The index of the bracket closing the one `code` starts with.
fn closing(code: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in code.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Blanks `range` of `text`, newlines kept.
fn blank(text: &mut String, range: Range<usize>) {
    let spaces: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range, &spaces);
}

// ---------------------------------------------------------------------------------------
// Reading a cleaned file: words, paths, `use` and `mod` declarations

/// Every identifier-like word with its byte offset.
fn words(code: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = code.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if is_ident_byte(bytes[i]) && (i == 0 || !is_ident_byte(bytes[i - 1])) {
                let start = i;
                i += ident_len(&code[i..]);
                return Some((start, &code[start..i]));
            }
            i += 1;
        }
        None
    })
}

/// Every `a::b::c` path in the code, as segments. `a::\n  b` is one path; `a::<T>` ends it.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !is_ident_byte(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let (segments, end) = path_at(code, i);
        if segments.len() > 1 {
            found.push(segments);
        }
        i = end;
    }
    found
}

/// The path starting at `start`, and where it ends.
fn path_at(code: &str, start: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut at = start;
    loop {
        let len = ident_len(&code[at..]);
        segments.push(code[at..at + len].to_string());
        at += len;
        match code[at..].strip_prefix("::").map(str::trim_start) {
            Some(next) if next.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => {
                at = code.len() - next.len();
            }
            _ => return (segments, at),
        }
    }
}

/// Every `use` declaration: its byte range (`use` to `;`) and its tree without spaces, with
/// `e as f` written `e=>f`. Visibility does not matter: every `use` item is an edge.
fn use_declarations(code: &str) -> Vec<(Range<usize>, String)> {
    let mut found = Vec::new();
    for (at, word) in words(code) {
        let after = &code[at + word.len()..];
        let tree = after.trim_start();
        // `use` is a keyword, but `impl Trait + use<'a>` is not a declaration.
        let starts_tree = |c: char| is_ident_char(c) || matches!(c, ':' | '{' | '$');
        if word != "use" || tree.len() == after.len() || !tree.starts_with(starts_tree) {
            continue;
        }
        let Some(end) = after.find(';') else { continue };
        let spaced = after[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let tree = spaced.replace(" as ", "=>").replace(' ', "");
        found.push((at..at + word.len() + end + 1, tree));
    }
    found
}

/// `a::{b,c::{d,e=>f}}` into (`a::b`, None), (`a::c::d`, None), (`a::c::e`, Some(f)).
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

/// One name a `use` brings into scope.
#[derive(Debug)]
struct UseItem {
    /// The path as written, without a trailing `*` or `self`.
    path: Vec<String>,
    /// The name in scope (the alias, or the last segment); `*` for a glob.
    name: String,
}

fn use_items(tree: &str) -> Vec<UseItem> {
    let mut items = Vec::new();
    for (path, alias) in expand(tree) {
        let mut segments: Vec<String> = path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_start_matches('$').to_string())
            .collect();
        let glob = segments.last().is_some_and(|s| s == "*");
        if glob || segments.last().is_some_and(|s| s == "self") {
            segments.pop();
        }
        let name = match (glob, alias) {
            (true, _) => Some("*".to_string()),
            (false, Some(alias)) => Some(alias),
            (false, None) => segments.last().cloned(),
        };
        if let (Some(name), false) = (name, segments.is_empty()) {
            items.push(UseItem {
                path: segments,
                name,
            });
        }
    }
    items
}

/// The `mod x;` children a file declares, and its inline `mod x { .. }` modules that write
/// `self::` or `super::` (which mean the inline module there, not the file).
fn module_declarations(code: &str) -> (BTreeSet<String>, Vec<String>) {
    let (mut children, mut inline) = (BTreeSet::new(), Vec::new());
    for (at, word) in words(code).filter(|(_, w)| *w == "mod") {
        let named = code[at + word.len()..].trim_start();
        let name = &named[..ident_len(named)];
        match named[name.len()..].trim_start().chars().next() {
            _ if name.is_empty() => {}
            Some(';') => {
                children.insert(name.to_string());
            }
            Some('{') if relative_paths_inside(named) => inline.push(name.to_string()),
            _ => {}
        }
    }
    (children, inline)
}

/// Whether the braces that `code` opens (after a name) write a `self::` or `super::` path.
fn relative_paths_inside(code: &str) -> bool {
    let Some(open) = code.find('{') else {
        return false;
    };
    let end = closing(&code[open..], '{', '}').map_or(code.len(), |e| open + e);
    let relative = |p: &Vec<String>| p[0] == "self" || p[0] == "super";
    paths(&code[open..end]).iter().any(relative)
}

/// The crates of `extern crate x;`.
fn extern_crates(code: &str) -> Vec<String> {
    words(code)
        .filter(|(_, w)| *w == "extern")
        .filter_map(|(at, _)| {
            let after = code[at + "extern".len()..].trim_start();
            let named = after.strip_prefix("crate")?.trim_start();
            Some(named[..ident_len(named)].to_string()).filter(|n| !n.is_empty())
        })
        .collect()
}

/// Whether the code defines an item `name` (rather than importing it).
fn defines(code: &str, name: &str) -> bool {
    const KEYWORDS: [&str; 11] = [
        "struct",
        "enum",
        "union",
        "trait",
        "type",
        "fn",
        "const",
        "static",
        "mut",
        "mod",
        "macro_rules",
    ];
    let list: Vec<(usize, &str)> = words(code).collect();
    list.windows(2).any(|pair| {
        let ((at, keyword), (next, word)) = (pair[0], pair[1]);
        let between = &code[at + keyword.len()..next];
        word == name
            && KEYWORDS.contains(&keyword)
            && between
                .trim_matches(|c: char| c.is_whitespace() || c == '!')
                .is_empty()
    })
}

// ---------------------------------------------------------------------------------------
// The source tree

struct File {
    /// Relative to `src/`, `/`-separated: `shard/mod.rs`.
    path: String,
    module: Module,
    /// As written (for `src/lib.rs`'s doc comment).
    raw: String,
    /// Cleaned: no comments, literals' contents or test modules.
    code: String,
    /// `code` without its `use` declarations and `pub(in ..)` paths: where paths are read.
    body: String,
    uses: Vec<UseItem>,
    children: BTreeSet<String>,
    /// Inline modules whose `self::`/`super::` paths the reader would misread.
    inline_modules: Vec<String>,
    extern_crates: Vec<String>,
}

impl File {
    /// The file, and the test-only children it declares.
    fn read(path: String, raw: String) -> (File, Vec<String>) {
        let (code, test_files) = remove_test_modules(&blank_comments_and_literals(&raw));
        let declarations = use_declarations(&code);
        let mut body = code.clone();
        // Blanked last to first: a blank may change byte lengths after it.
        for (range, _) in declarations.iter().rev() {
            blank(&mut body, range.clone());
        }
        blank_restricted_visibility(&mut body);
        let (children, inline_modules) = module_declarations(&code);
        let file = File {
            module: module_of(&path),
            path,
            uses: declarations
                .iter()
                .flat_map(|(_, t)| use_items(t))
                .collect(),
            extern_crates: extern_crates(&code),
            raw,
            body,
            code,
            children,
            inline_modules,
        };
        (file, test_files)
    }
}

/// `pub(in crate::a)` says who may see an item; it is not a use of `a`.
fn blank_restricted_visibility(body: &mut String) {
    let mut from = 0;
    while let Some(at) = body[from..].find("pub(in").map(|a| a + from) {
        let end = body[at..].find(')').map_or(body.len(), |e| at + e + 1);
        blank(body, at..end);
        from = end;
    }
}

fn module_of(path: &str) -> Module {
    match path {
        "lib.rs" => Vec::new(),
        "main.rs" => vec![BIN.to_string()],
        _ => {
            let stem = path.strip_suffix(".rs").unwrap_or(path);
            let mut parts: Module = stem.split('/').map(str::to_string).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            parts
        }
    }
}

fn join(base: &[String], rest: &[String]) -> Module {
    base.iter().chain(rest).cloned().collect()
}

fn is_bin(module: &[String]) -> bool {
    module.first().is_some_and(|m| m == BIN)
}

/// `self::` and `super::` from `module`; None above the crate root.
fn relative(module: &[String], path: &[String]) -> Option<Module> {
    let mut base = module.to_vec();
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "self") {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        if is_bin(&base) || base.pop().is_none() {
            return None;
        }
        rest = &rest[1..];
    }
    Some(join(&base, rest))
}

struct Source {
    files: BTreeMap<Module, File>,
    /// What the reader met and cannot read.
    unread: Vec<String>,
}

impl Source {
    fn load(root: &Path) -> Source {
        let mut texts = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let relative = path.strip_prefix(root).expect("a file under src");
                    let relative: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
                    texts.push((relative.join("/"), read(&path)));
                }
            }
        }
        Source::from_texts(texts)
    }

    fn from_texts(texts: impl IntoIterator<Item = (String, String)>) -> Source {
        let (mut files, mut unread, mut test_only) = (BTreeMap::new(), Vec::new(), Vec::new());
        for (path, raw) in texts {
            if module_of(&path).last().is_some_and(|m| m == "tests") {
                continue;
            }
            let (file, test_files) = File::read(path, raw);
            test_only.extend(
                test_files
                    .iter()
                    .map(|c| join(&file.module, std::slice::from_ref(c))),
            );
            for name in &file.inline_modules {
                let path = &file.path;
                unread.push(format!(
                    "src/{path}: inline `mod {name}` writes self:: or super::"
                ));
            }
            if let Some(other) = files.insert(file.module.clone(), file) {
                unread.push(format!("src/{}: a second file for its module", other.path));
            }
        }
        files.retain(|module: &Module, _| !test_only.iter().any(|t| module.starts_with(t)));
        Source { files, unread }
    }

    fn file(&self, module: &Module) -> &File {
        self.files.get(module).expect("a module the reader found")
    }

    /// `path` as written in `file`, as an absolute module path of this crate; None when it
    /// names something else (an outside crate, a type's associated item, a local name).
    fn anchor(&self, file: &File, path: &[String], depth: usize) -> Option<Module> {
        let (first, rest) = path.split_first()?;
        match first.as_str() {
            _ if depth > REEXPORT_DEPTH => None,
            "crate" if is_bin(&file.module) => Some(join(&[BIN.to_string()], rest)),
            "crate" => Some(rest.to_vec()),
            "self" | "super" => relative(&file.module, path),
            _ if file.children.contains(first) => Some(join(&file.module, path)),
            _ if is_bin(&file.module) && first == LIB_CRATE => Some(rest.to_vec()),
            _ => self.anchor_imported(file, first, rest, depth),
        }
    }

    /// A path starting with a name the file imported: by name, or as a child of a module it
    /// glob-imported.
    fn anchor_imported(
        &self,
        file: &File,
        first: &String,
        rest: &[String],
        depth: usize,
    ) -> Option<Module> {
        if let Some(import) = file.uses.iter().find(|u| &u.name == first) {
            let target = self.anchor(file, &import.path, depth + 1)?;
            return Some(join(&target, rest));
        }
        file.uses.iter().filter(|u| u.name == "*").find_map(|glob| {
            let base = self.anchor(file, &glob.path, depth + 1)?;
            let child = join(&base, std::slice::from_ref(first));
            self.files.contains_key(&child).then(|| join(&child, rest))
        })
    }

    /// The file defining what an absolute path names.
    fn resolve(&self, path: &[String], depth: usize) -> Option<Module> {
        let file = (0..=path.len())
            .rev()
            .find_map(|n| self.files.get(&path[..n]))?;
        let here = Some(file.module.clone());
        let Some(item) = path.get(file.module.len()) else {
            return here;
        };
        if depth >= REEXPORT_DEPTH {
            return here;
        }
        let rest = &path[file.module.len() + 1..];
        // A name the file imports or re-exports is defined where it comes from.
        for import in file.uses.iter().filter(|u| &u.name == item) {
            if let Some(target) = self.anchor(file, &import.path, 0) {
                return self.resolve(&join(&target, rest), depth + 1).or(here);
            }
        }
        if defines(&file.code, item) {
            return here;
        }
        self.resolve_through_globs(file, item, rest, depth).or(here)
    }

    /// A name not defined in `file` may come in through one of its globs (`pub use x::*`).
    fn resolve_through_globs(
        &self,
        file: &File,
        item: &String,
        rest: &[String],
        depth: usize,
    ) -> Option<Module> {
        file.uses.iter().filter(|u| u.name == "*").find_map(|glob| {
            let base = self.anchor(file, &glob.path, 0)?;
            let base_file = self.resolve(&base, depth + 1)?;
            let wanted = join(&join(&base, std::slice::from_ref(item)), rest);
            let found = self.resolve(&wanted, depth + 1)?;
            // Elsewhere than the glob's own file: `item` is its child or its re-export.
            (found != base_file || defines(&self.file(&found).code, item)).then_some(found)
        })
    }

    /// Every path `file` writes and every `use` item it states, as written.
    fn written_paths<'a>(&self, file: &'a File) -> impl Iterator<Item = Vec<String>> + 'a {
        let uses = file.uses.iter().map(|u| u.path.clone());
        paths(&file.body).into_iter().chain(uses)
    }

    /// Every file `file` depends on.
    fn dependencies(&self, file: &File) -> BTreeSet<Module> {
        self.written_paths(file)
            .filter_map(|path| self.anchor(file, &path, 0))
            .filter_map(|absolute| self.resolve(&absolute, 0))
            .filter(|target| *target != file.module)
            .collect()
    }

    fn graph(&self) -> Graph<Module> {
        self.files
            .iter()
            .map(|(module, file)| (module.clone(), self.dependencies(file)))
            .collect()
    }

    /// The crates among `crates` that `file` names: `krate::…` in its code, `use krate…`,
    /// `extern crate krate`. A child module or an import of the same name is not the crate.
    fn crates_named(&self, file: &File, crates: &BTreeSet<&str>) -> BTreeSet<String> {
        let mut found: BTreeSet<String> = self
            .written_paths(file)
            .filter_map(|path| path.into_iter().next())
            .filter(|first| crates.contains(first.as_str()) && !self.is_local(file, first))
            .collect();
        let externs = file.extern_crates.iter();
        found.extend(externs.filter(|c| crates.contains(c.as_str())).cloned());
        found
    }

    fn is_local(&self, file: &File, name: &String) -> bool {
        file.children.contains(name)
            || file.uses.iter().any(|u| {
                &u.name == name
                    && u.path.first() != Some(name)
                    && self.anchor(file, &u.path, 0).is_some()
            })
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// ARCHITECTURE.md

struct Spec {
    /// Layer number (higher is higher) -> its module tokens (`runtime/`, `config.rs`).
    layers: BTreeMap<u32, Vec<String>>,
    /// Restricted outside crate -> the places it may be named; None without the block.
    crates: Option<BTreeMap<String, Vec<String>>>,
    problems: Vec<String>,
}

impl Spec {
    fn parse(md: &str) -> Spec {
        let mut problems = Vec::new();
        let layers = match fenced_block_after(md, "## Layers") {
            Some(lines) => parse_layers(&lines, &mut problems),
            None => {
                problems.push("ARCHITECTURE.md has no fenced block after `## Layers`".into());
                BTreeMap::new()
            }
        };
        let crates = fenced_block_after(md, "## Outside crates")
            .map(|lines| parse_crates(&lines, &mut problems));
        if crates.is_none() {
            problems.push("ARCHITECTURE.md has no fenced block after `## Outside crates`".into());
        }
        Spec {
            layers,
            crates,
            problems,
        }
    }

    fn layer_of(&self, top: &str) -> Option<u32> {
        let listed = |tokens: &Vec<String>| tokens.iter().any(|t| token_name(t) == top);
        self.layers.iter().find(|(_, t)| listed(t)).map(|(n, _)| *n)
    }
}

/// The lines of the first fenced block after the line `heading`, before the next section.
fn fenced_block_after<'a>(md: &'a str, heading: &str) -> Option<Vec<&'a str>> {
    let mut lines = md.lines().skip_while(|l| l.trim_end() != heading).skip(1);
    lines
        .by_ref()
        .find(|l| l.starts_with("```") || l.starts_with("## "))?
        .starts_with("```")
        .then_some(())?;
    Some(lines.take_while(|l| !l.starts_with("```")).collect())
}

/// The tokens that name modules or places: words ending in `/` or `.rs`, up to the first
/// that does not (the free text).
fn module_tokens<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    let is_token = |w: &&str| w.ends_with('/') || w.ends_with(".rs");
    words.take_while(is_token).map(str::to_string).collect()
}

fn token_name(token: &str) -> &str {
    token
        .strip_suffix(".rs")
        .unwrap_or(token)
        .trim_end_matches('/')
}

fn parse_layers(lines: &[&str], problems: &mut Vec<String>) -> BTreeMap<u32, Vec<String>> {
    let mut layers: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for line in lines.iter().map(|l| l.trim_start()) {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(number) = line[..digits].parse::<u32>() else {
            continue;
        };
        let tokens = module_tokens(line[digits..].split_whitespace());
        if tokens.is_empty() {
            problems.push(format!(
                "ARCHITECTURE.md layer {number} names no module: `{line}`"
            ));
        }
        for token in tokens.iter().filter(|t| token_name(t).contains('/')) {
            problems.push(format!(
                "ARCHITECTURE.md layer {number}: `{token}` is not a top-level module"
            ));
        }
        layers.entry(number).or_default().extend(tokens);
    }
    layers
}

fn parse_crates(lines: &[&str], problems: &mut Vec<String>) -> BTreeMap<String, Vec<String>> {
    let mut crates = BTreeMap::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let rust_name = name.replace('-', "_");
        if !rust_name.chars().all(is_ident_char) {
            problems.push(format!(
                "ARCHITECTURE.md outside crates: `{name}` is not a crate name"
            ));
        } else if rust_name != name {
            problems.push(format!(
                "ARCHITECTURE.md outside crates: write `{name}` as Rust paths do: `{rust_name}`"
            ));
        }
        crates.insert(rust_name, module_tokens(words));
    }
    crates
}

// ---------------------------------------------------------------------------------------
// The analysis

/// Every finding about one tree, against one spec.
struct Report {
    files: usize,
    /// File path -> the file paths it depends on.
    graph: Graph<String>,
    file_circles: Vec<Vec<String>>,
    module_circles: Vec<ModuleCircle>,
    module_edges: ModuleEdges,
    layer_violations: Vec<String>,
    layers: usize,
    /// Crate -> place (`cluster/`, `config.rs`, `main.rs`) -> files naming it.
    crate_usage: BTreeMap<String, BTreeMap<String, usize>>,
    outside_violations: Vec<String>,
    has_crates_block: bool,
    layout: Vec<String>,
    reader: Vec<String>,
    undeclared: Vec<String>,
}

/// A circle among the modules of one folder (`src/shard/`: `shard` (its mod.rs),
/// `shard::cluster`, ...), with the file edges that close it.
struct ModuleCircle {
    folder: String,
    nodes: Vec<String>,
    edges: Vec<(String, String)>,
}

fn analyse(source: &Source, spec: &Spec) -> Report {
    let modules = source.graph();
    let path = |m: &Module| source.file(m).path.clone();
    let graph: Graph<String> = modules
        .iter()
        .map(|(m, targets)| (path(m), targets.iter().map(path).collect()))
        .collect();
    let (module_edges, layer_violations) = check_layers(&modules, source, spec);
    let (crate_usage, outside_violations) = check_crates(source, spec);
    let mut report = Report {
        files: source.files.len(),
        file_circles: circles(&graph),
        module_circles: folder_circles(&modules, source),
        graph,
        module_edges,
        layer_violations,
        layers: spec.layers.len(),
        crate_usage,
        outside_violations,
        has_crates_block: spec.crates.is_some(),
        layout: check_layout(source, spec),
        reader: source.unread.clone(),
        undeclared: undeclared(source),
    };
    report.reader.extend(minimums(&report));
    report
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// The top-level module of a file as ARCHITECTURE.md names places: `cluster/`, `config.rs`.
fn place_of(path: &str) -> String {
    match path.split_once('/') {
        Some((top, _)) => format!("{top}/"),
        None => path.to_string(),
    }
}

fn check_layers(
    modules: &Graph<Module>,
    source: &Source,
    spec: &Spec,
) -> (ModuleEdges, Vec<String>) {
    let (mut edges, mut violations) = (BTreeMap::new(), Vec::new());
    for (from, targets) in modules {
        // The roots (`lib.rs`, the binary) stand above every layer.
        let Some(a) = from.first().filter(|_| !is_bin(from)) else {
            continue;
        };
        for target in targets {
            let b = target.first().cloned().unwrap_or_else(|| display(target));
            if *a == b {
                continue;
            }
            let file = source.file(from).path.clone();
            edges
                .entry((a.clone(), b.clone()))
                .or_insert_with(BTreeSet::new)
                .insert(file.clone());
            let (x, y) = (spec.layer_of(a), spec.layer_of(&b));
            let verdict = match (x, y) {
                (Some(x), Some(y)) if y < x => continue,
                (Some(x), Some(y)) if y == x => "sideways",
                (Some(_), Some(_)) => "upward",
                _ => "unlayered",
            };
            let to = &source.file(target).path;
            let layer = |l: Option<u32>| l.map_or("no layer".to_string(), |l| format!("layer {l}"));
            violations.push(format!(
                "{verdict}: {file} -> {to} ({a}, {} -> {b}, {})",
                layer(x),
                layer(y)
            ));
        }
    }
    (edges, violations)
}

fn check_crates(
    source: &Source,
    spec: &Spec,
) -> (BTreeMap<String, BTreeMap<String, usize>>, Vec<String>) {
    let (mut usage, mut violations) = (BTreeMap::new(), Vec::new());
    let Some(crates) = &spec.crates else {
        return (usage, violations);
    };
    let names: BTreeSet<&str> = crates.keys().map(String::as_str).collect();
    for file in source.files.values() {
        for krate in source.crates_named(file, &names) {
            let places = &crates[&krate];
            let counts: &mut BTreeMap<String, usize> = usage.entry(krate.clone()).or_default();
            *counts.entry(place_of(&file.path)).or_default() += 1;
            if !places.iter().any(|place| allows(place, &file.path)) {
                violations.push(format!(
                    "{} uses {krate} (allowed in: {})",
                    file.path,
                    places.join(" ")
                ));
            }
        }
    }
    (usage, violations)
}

/// `x/` allows every file under `src/x/`; `x.rs` (and `main.rs`) the one file.
fn allows(place: &str, path: &str) -> bool {
    if place.ends_with('/') {
        path.starts_with(place)
    } else {
        path == place
    }
}

/// `src/`'s top-level modules against the layer list, and `src/lib.rs` against both.
fn check_layout(source: &Source, spec: &Spec) -> Vec<String> {
    let mut problems = spec.problems.clone();
    // Top-level name -> how it exists in src/ (`x/`, `x.rs`, or both: `x.rs` with `x/y.rs`).
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let roots = |f: &&File| f.module.is_empty() || is_bin(&f.module);
    for file in source.files.values().filter(|f| !roots(f)) {
        let place = place_of(&file.path);
        tops.entry(token_name(&place).to_string())
            .or_default()
            .insert(place);
    }
    let mut placed: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (number, tokens) in &spec.layers {
        for token in tokens {
            let name = token_name(token);
            match tops.get(name) {
                None => problems.push(format!(
                    "ARCHITECTURE.md layer {number} lists `{token}`, which is not in src/"
                )),
                Some(forms) if !forms.contains(token) => problems.push(format!(
                    "ARCHITECTURE.md layer {number} lists `{token}`, but src/ has {}",
                    forms.iter().cloned().collect::<Vec<_>>().join(" and ")
                )),
                Some(_) => {}
            }
            placed.entry(name.to_string()).or_default().push(*number);
        }
    }
    for (name, forms) in &tops {
        match placed.get(name).map(Vec::as_slice) {
            None => problems.push(format!(
                "src/{} is in no layer of ARCHITECTURE.md",
                forms.iter().cloned().collect::<Vec<_>>().join(" and src/")
            )),
            Some([_]) => {}
            Some(numbers) => {
                problems.push(format!("`{name}` is in more than one layer: {numbers:?}"))
            }
        }
    }
    problems.extend(check_lib_rs(source, &placed));
    problems
}

/// `src/lib.rs` declares exactly the layered modules and does not repeat the layer list.
fn check_lib_rs(source: &Source, placed: &BTreeMap<String, Vec<u32>>) -> Vec<String> {
    let Some(lib) = source.files.get(&Vec::new()) else {
        return vec!["no src/lib.rs".to_string()];
    };
    let mut problems = Vec::new();
    for name in placed.keys().filter(|n| !lib.children.contains(*n)) {
        problems.push(format!(
            "src/lib.rs does not declare layered module `mod {name};`"
        ));
    }
    for name in lib.children.iter().filter(|n| !placed.contains_key(*n)) {
        problems.push(format!(
            "src/lib.rs declares `mod {name};`, which is in no layer"
        ));
    }
    for (number, line) in lib.raw.lines().enumerate() {
        let Some(doc) = line.trim_start().strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim_start();
        let digits = doc.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && doc[digits..].starts_with('.') {
            problems.push(format!(
                "src/lib.rs repeats a numbered layer list (line {}: `{}`); \
                 point to ARCHITECTURE.md instead",
                number + 1,
                line.trim()
            ));
        }
    }
    problems
}

/// Files no parent declares: not compiled, but read (reported, not failed).
fn undeclared(source: &Source) -> Vec<String> {
    let declared = |m: &Module| {
        let (name, parent) = m.split_last().expect("not a root");
        source
            .files
            .get(parent)
            .is_some_and(|p| p.children.contains(name))
    };
    let modules = source.files.keys().filter(|m| !m.is_empty() && !is_bin(m));
    modules
        .filter(|m| !declared(m))
        .map(|m| format!("src/{}", source.file(m).path))
        .collect()
}

fn minimums(report: &Report) -> Vec<String> {
    let edges = report.edges();
    let mut problems = Vec::new();
    if report.files < FILES_READ_MIN {
        let files = report.files;
        problems.push(format!(
            "read {files} files, fewer than FILES_READ_MIN ({FILES_READ_MIN})"
        ));
    }
    if edges < EDGES_READ_MIN {
        problems.push(format!(
            "found {edges} edges, fewer than EDGES_READ_MIN ({EDGES_READ_MIN})"
        ));
    }
    if report.layers < LAYERS_MIN {
        let layers = report.layers;
        problems.push(format!(
            "parsed {layers} layers, fewer than LAYERS_MIN ({LAYERS_MIN})"
        ));
    }
    problems
}

/// Circles among the top-level modules (`shard` -> `server` -> `shard` is a circle even
/// when the files involved differ). Within a module, only file circles count: a folder may
/// hold both a leaf its parent uses (`shard/replication/state.rs`, a partition's state) and
/// code above its parent (`shard/replication/leader.rs`, which uses `Shard`).
fn folder_circles(modules: &Graph<Module>, source: &Source) -> Vec<ModuleCircle> {
    let folders: BTreeSet<Module> = BTreeSet::from([Vec::new()]);
    let mut found = Vec::new();
    for folder in folders {
        let node = |m: &Module| {
            m.starts_with(&folder)
                .then(|| display(&m[..m.len().min(folder.len() + 1)]))
        };
        let mut projected: Graph<String> = BTreeMap::new();
        let mut crossing = Vec::new();
        for (from, targets) in modules {
            let Some(a) = node(from) else { continue };
            for (target, b) in targets.iter().filter_map(|t| Some((t, node(t)?))) {
                if a != b {
                    projected.entry(a.clone()).or_default().insert(b.clone());
                    crossing.push((a.clone(), b, from, target));
                }
            }
        }
        for nodes in circles(&projected) {
            let inside = |n: &String| nodes.contains(n);
            let edges = crossing
                .iter()
                .filter(|(a, b, _, _)| inside(a) && inside(b));
            let files = |(_, _, f, t): &(String, String, &Module, &Module)| {
                (source.file(f).path.clone(), source.file(t).path.clone())
            };
            let folder = if folder.is_empty() {
                String::new()
            } else {
                format!("{}/", folder.join("/"))
            };
            found.push(ModuleCircle {
                folder: format!("src/{folder}"),
                edges: edges.map(files).collect(),
                nodes,
            });
        }
    }
    found
}

/// Strongly connected components of more than one node (Tarjan), each sorted.
fn circles(graph: &Graph<String>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph<String>,
        index: BTreeMap<&'a String, usize>,
        low: BTreeMap<&'a String, usize>,
        stack: Vec<&'a String>,
        on_stack: BTreeSet<&'a String>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a String) {
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
                component.sort();
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
    state.found.sort();
    state.found
}

impl Report {
    fn edges(&self) -> usize {
        self.graph.values().map(BTreeSet::len).sum()
    }

    fn summary(&self) -> String {
        format!(
            "architecture: {} files, {} edges, {} file circles, {} module circles, \
             {} upward or sideways imports, {} outside-crate violations",
            self.files,
            self.edges(),
            self.file_circles.len(),
            self.module_circles.len(),
            self.layer_violations.len(),
            self.outside_violations.len()
        )
    }

    /// Every finding as one line, for the reader's self-test.
    fn findings(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (from, targets) in &self.graph {
            lines.extend(targets.iter().map(|to| format!("edge {from} -> {to}")));
        }
        lines.extend(
            self.file_circles
                .iter()
                .map(|c| format!("file circle: {}", c.join(", "))),
        );
        for circle in &self.module_circles {
            lines.push(format!(
                "module circle in {}: {}",
                circle.folder,
                circle.nodes.join(", ")
            ));
        }
        lines.extend(self.layer_violations.iter().cloned());
        lines.extend(
            self.outside_violations
                .iter()
                .map(|v| format!("outside crate: {v}")),
        );
        lines.extend(self.layout.iter().map(|p| format!("layout: {p}")));
        lines.extend(self.reader.iter().map(|p| format!("reader: {p}")));
        lines
    }

    fn print_circles(&self) {
        for circle in &self.file_circles {
            println!(
                "file circle of {} files: {}",
                circle.len(),
                circle.join(", ")
            );
            for from in circle {
                let targets = self.graph[from].iter().filter(|t| circle.contains(t));
                targets.for_each(|to| println!("    {from} -> {to}"));
            }
        }
        for circle in &self.module_circles {
            println!(
                "module circle in {}: {}",
                circle.folder,
                circle.nodes.join(", ")
            );
            for (from, to) in &circle.edges {
                println!("    {from} -> {to}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The real tree

fn real() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let var =
            |name: &str, default: PathBuf| std::env::var_os(name).map_or(default, PathBuf::from);
        let src = var("PETREL_SRC_DIR", manifest.join("src"));
        let md = var("PETREL_ARCHITECTURE_MD", manifest.join("ARCHITECTURE.md"));
        println!("reading {} against {}", src.display(), md.display());
        analyse(&Source::load(&src), &Spec::parse(&read(&md)))
    })
}

fn print_list(title: &str, lines: &[String]) {
    println!("{title}: {}", lines.len());
    lines.iter().for_each(|line| println!("  {line}"));
}

#[test]
fn the_reader_reads_the_whole_tree() {
    let report = real();
    println!("{}", report.summary());
    // Every edge, to audit the reader against the code: PETREL_ARCH_EDGES=1.
    if std::env::var_os("PETREL_ARCH_EDGES").is_some() {
        for (from, targets) in &report.graph {
            let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            println!("  {from} -> {}", targets.join(", "));
        }
    }
    print_list("files no parent declares (read anyway)", &report.undeclared);
    print_list("reader problems", &report.reader);
    let problems = report.reader.len();
    assert!(problems == 0, "{problems} reader problems (listed above)");
}

#[test]
fn every_module_points_down_the_layers() {
    let report = real();
    println!("module -> module: files that use it");
    for ((from, to), files) in &report.module_edges {
        println!("  {from} -> {to}: {}", files.len());
    }
    print_list("upward or sideways imports", &report.layer_violations);
    let violations = report.layer_violations.len();
    assert!(
        violations == 0,
        "{violations} upward or sideways imports (listed above)"
    );
}

#[test]
fn no_files_or_modules_import_each_other_in_a_circle() {
    let report = real();
    report.print_circles();
    let (files, modules) = (report.file_circles.len(), report.module_circles.len());
    let top = report
        .module_circles
        .iter()
        .filter(|c| c.folder == "src/")
        .count();
    println!("{files} file circles, {modules} module circles ({top} among top-level modules)");
    assert!(
        files + modules == 0,
        "import circles: {files} of files, {modules} of modules"
    );
}

#[test]
fn outside_crates_stay_where_architecture_md_places_them() {
    let report = real();
    println!("outside crate: files naming it, by place");
    for (krate, places) in &report.crate_usage {
        let counts: Vec<String> = places.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!("  {krate}: {}", counts.join(", "));
    }
    print_list("outside-crate violations", &report.outside_violations);
    assert!(
        report.has_crates_block,
        "ARCHITECTURE.md has no `## Outside crates` block"
    );
    let violations = report.outside_violations.len();
    assert!(
        violations == 0,
        "{violations} outside-crate violations (listed above)"
    );
}

#[test]
fn lib_rs_and_architecture_md_agree_with_src() {
    let report = real();
    print_list("layout problems", &report.layout);
    let problems = report.layout.len();
    assert!(problems == 0, "{problems} layout problems (listed above)");
}

// ---------------------------------------------------------------------------------------
// The reader's self-test: small trees, each proving a rule finds what it is about

const SPEC: &str = "\
# Fixture
## Layers
Each layer uses only those below.
```
3  top/                       the top
2  mid/      side/            two siblings
1  low/      leaf.rs          the bottom
```
## Outside crates
```
raft    mid/quorum/ main.rs    consensus
```
";

/// `low` in two layers, and a `## Layers` section whose block is in the next section.
const SPEC_TWICE: &str = "\
## Layers
```
2  low/  x
1  low/
```
## Outside crates
No block here.
## Code map
```
raft  low/
```
";

struct Case {
    rule: &'static str,
    spec: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// Each must be part of some finding.
    finds: &'static [&'static str],
    /// None may be part of any finding.
    misses: &'static [&'static str],
}

const LIB: (&str, &str) = (
    "lib.rs",
    "pub mod leaf;\npub mod low;\npub mod mid;\npub mod side;\npub mod top;\n",
);

const CASES: &[Case] = &[
    Case {
        rule: "old: a path through a re-export lands on the defining file; comments are not code",
        spec: SPEC,
        files: &[
            LIB,
            (
                "mid/mod.rs",
                "mod log;\npub use log::{Log, Read as LogRead};\n",
            ),
            ("mid/log.rs", "pub struct Log;\npub struct Read;\n"),
            (
                "top/mod.rs",
                "use crate::mid::LogRead;\n// crate::side::X is a comment\n\
                 fn f(_: crate::mid::Log) {}\n",
            ),
        ],
        finds: &["edge top/mod.rs -> mid/log.rs"],
        misses: &[
            "edge top/mod.rs -> mid/mod.rs",
            "-> side/",
            "upward",
            "sideways",
        ],
    },
    Case {
        rule: "cleaning: literals, lifetimes and test modules hide nothing after them",
        spec: SPEC,
        files: &[
            LIB,
            ("low/mod.rs", "pub mod x;\npub struct Y;\n"),
            ("low/x.rs", "pub struct X;\n"),
            (
                "mid/mod.rs",
                "#[cfg(test)]\nmod tests;\n\
                 fn f<'a>(s: &'a str) -> char { let _ = \"http://x {\"; '{' }\n\
                 const R: &str = r#\"crate::top::Hidden \"# ;\n\
                 /* crate::top::Block /* nested */ crate::top::Still */\n\
                 #[cfg(test)]\nmod inline_tests {\n    use crate::top::T;\n}\n\
                 fn g(_: crate::low::x::X) {}\n",
            ),
            ("mid/tests.rs", "use crate::top::T;\n"),
            ("top/mod.rs", "pub struct T;\n"),
        ],
        finds: &["edge mid/mod.rs -> low/x.rs"],
        misses: &["-> top/mod.rs", "mid/tests.rs"],
    },
    Case {
        rule: "1: an import up or sideways fails; roots and lower layers do not",
        spec: SPEC,
        files: &[
            LIB,
            ("top/mod.rs", "pub struct T;\nfn f(_: crate::low::L) {}\n"),
            ("mid/mod.rs", "use crate::top::T;\n"),
            ("side/mod.rs", "fn f(_: crate::mid::M) {}\n"),
            ("low/mod.rs", "pub struct L;\n"),
            ("leaf.rs", "fn f(_: crate::low::L) {}\n"),
            (
                "main.rs",
                "use petrel::top::T;\nfn main() { petrel::low::L; }\n",
            ),
        ],
        finds: &[
            "upward: mid/mod.rs -> top/mod.rs",
            "sideways: side/mod.rs -> mid/mod.rs",
            "sideways: leaf.rs -> low/mod.rs",
            "edge main.rs -> top/mod.rs",
            "edge main.rs -> low/mod.rs",
        ],
        misses: &[
            "upward: top/",
            "sideways: top/",
            "main.rs -> top/mod.rs (",
            "layout:",
        ],
    },
    Case {
        rule: "1: lib.rs and the layer list agree with src/",
        spec: SPEC,
        files: &[
            (
                "lib.rs",
                "//! Layers:\n//! 1. `low`\npub mod leaf;\npub mod low;\npub mod extra;\n\
                 #[cfg(test)]\nmod testing;\n",
            ),
            ("leaf/mod.rs", "pub struct L;\n"),
            ("low/mod.rs", ""),
            ("extra.rs", ""),
            ("mid/mod.rs", ""),
            ("testing.rs", ""),
        ],
        finds: &[
            "layout: src/lib.rs repeats a numbered layer list (line 2: `//! 1. `low``)",
            "layout: src/extra.rs is in no layer",
            "layout: src/lib.rs declares `mod extra;`, which is in no layer",
            "layout: src/lib.rs does not declare layered module `mod mid;`",
            "layout: src/lib.rs does not declare layered module `mod top;`",
            "layout: ARCHITECTURE.md layer 1 lists `leaf.rs`, but src/ has leaf/",
            "layout: ARCHITECTURE.md layer 2 lists `side/`, which is not in src/",
        ],
        misses: &["testing", "`mod low;`", "`mod leaf;`"],
    },
    Case {
        rule: "1: a module in two layers; a block must be in its own section",
        spec: SPEC_TWICE,
        files: &[("lib.rs", "pub mod low;\n"), ("low/mod.rs", "")],
        finds: &[
            "layout: `low` is in more than one layer: [1, 2]",
            "layout: ARCHITECTURE.md has no fenced block after `## Outside crates`",
        ],
        misses: &["`x`"],
    },
    Case {
        rule: "2: a path through a declared child module is an edge to it",
        spec: SPEC,
        files: &[
            LIB,
            (
                "mid/mod.rs",
                "pub mod cluster;\npub(crate) mod groups;\nuse std::rc::Rc;\n\
                 pub struct Shard { c: Rc<cluster::ClusterNode>, g: groups::Loaded }\n",
            ),
            (
                "mid/cluster.rs",
                "pub struct ClusterNode;\nfn f(_: &super::Shard) {}\n",
            ),
            ("mid/groups.rs", "pub struct Loaded;\n"),
        ],
        finds: &[
            "edge mid/mod.rs -> mid/cluster.rs",
            "edge mid/mod.rs -> mid/groups.rs",
            "file circle: mid/cluster.rs, mid/mod.rs",
        ],
        misses: &["mid::groups"],
    },
    Case {
        rule: "3: every use item is an edge, grouped, nested, with self, used bare or not at all",
        spec: SPEC,
        files: &[
            LIB,
            (
                "mid/mod.rs",
                "pub mod a;\nmod inner;\nmod other;\n\
                 use inner::Inner;\nuse self::other::Other;\n\
                 pub struct Partition;\npub struct Shard;\n",
            ),
            (
                "mid/a.rs",
                "use super::{Partition, Shard};\nfn f(_: Shard) {}\n",
            ),
            ("mid/inner.rs", "pub struct Inner;\n"),
            ("mid/other.rs", "pub struct Other;\n"),
            ("low/mod.rs", "pub mod x;\npub mod w;\npub mod v;\n"),
            ("low/x.rs", "pub struct X;\npub struct Y;\n"),
            ("low/w.rs", "pub struct W;\n"),
            ("low/v.rs", "pub struct V;\n"),
            (
                "side/mod.rs",
                "use crate::low::{\n    x::{X, Y as Z},\n    w::{self},\n};\n\
                 use crate::low::v::{self as vee, V};\n",
            ),
        ],
        finds: &[
            "edge mid/a.rs -> mid/mod.rs",
            "edge mid/mod.rs -> mid/inner.rs",
            "edge mid/mod.rs -> mid/other.rs",
            "edge side/mod.rs -> low/x.rs",
            "edge side/mod.rs -> low/w.rs",
            "edge side/mod.rs -> low/v.rs",
        ],
        misses: &[
            "edge side/mod.rs -> low/mod.rs",
            "edge mid/mod.rs -> mid/a.rs",
        ],
    },
    Case {
        rule: "4: a re-export is an edge to the defining file; globs and pub(crate) too",
        spec: SPEC,
        files: &[
            LIB,
            (
                "low/mod.rs",
                "mod x;\nmod y;\nmod z;\n\
                 pub use x::*;\npub(crate) use self::y::Y as Why;\npub use z::Zed;\n",
            ),
            ("low/x.rs", "pub struct X;\n"),
            ("low/y.rs", "pub struct Y;\n"),
            ("low/z.rs", "pub use super::y::Y as Zed;\n"),
            (
                "side/mod.rs",
                "use crate::low::X;\nfn f(_: crate::low::Why, _: crate::low::Zed) {}\n",
            ),
        ],
        finds: &[
            "edge low/mod.rs -> low/x.rs",
            "edge low/mod.rs -> low/y.rs",
            "edge low/z.rs -> low/y.rs",
            "edge side/mod.rs -> low/x.rs",
            "edge side/mod.rs -> low/y.rs",
        ],
        misses: &[
            "edge side/mod.rs -> low/mod.rs",
            "edge side/mod.rs -> low/z.rs",
            "edge low/mod.rs -> low/z.rs",
        ],
    },
    Case {
        rule: "5: an outside crate named outside its places fails; names, tests and text do not",
        spec: SPEC,
        files: &[
            LIB,
            ("mid/mod.rs", "pub mod quorum;\npub mod controller;\n"),
            (
                "mid/quorum/mod.rs",
                "use raft::prelude::Entry;\nfn f() { raft::x(); }\n",
            ),
            (
                "mid/controller.rs",
                "fn f(s: &S) { let raft = s.raft.state; }\n\
                 const T: &str = \"raft::text\"; // raft::comment\n\
                 #[cfg(test)]\nmod tests {\n    use raft::Storage;\n}\n",
            ),
            ("low/mod.rs", "use raft::{Storage};\n"),
            ("leaf.rs", "fn f() { ::raft::y(); }\n"),
            ("top/mod.rs", "extern crate raft;\n"),
            ("side/mod.rs", "mod raft;\nfn f() { raft::g(); }\n"),
            ("side/raft.rs", "pub fn g() {}\n"),
            ("main.rs", "fn main() { raft::z(); }\n"),
        ],
        finds: &[
            "outside crate: low/mod.rs uses raft (allowed in: mid/quorum/ main.rs)",
            "outside crate: leaf.rs uses raft",
            "outside crate: top/mod.rs uses raft",
            "edge side/mod.rs -> side/raft.rs",
        ],
        misses: &[
            "mid/quorum/mod.rs uses",
            "mid/controller.rs uses",
            "side/mod.rs uses",
            "main.rs uses",
        ],
    },
    Case {
        rule: "6: a tree too small to be src/ fails; so does what the reader cannot read",
        spec: SPEC,
        files: &[
            LIB,
            (
                "low/mod.rs",
                "mod inline {\n    use super::X;\n}\n\
                 pub mod sync {\n    pub use crate::leaf::L;\n}\n",
            ),
            ("low/dup.rs", ""),
            ("low/dup/mod.rs", ""),
        ],
        finds: &[
            "reader: read 3 files, fewer than FILES_READ_MIN (100)",
            "edges, fewer than EDGES_READ_MIN (400)",
            "reader: parsed 3 layers, fewer than LAYERS_MIN (5)",
            "reader: src/low/mod.rs: inline `mod inline` writes self:: or super::",
            "reader: src/low/dup",
        ],
        misses: &["`mod sync`"],
    },
    Case {
        rule: "7: top-level modules in a circle, though no files are; inside a module only files count",
        spec: SPEC,
        files: &[
            LIB,
            ("mid/mod.rs", "pub mod quorum;\npub mod controller;\n"),
            ("mid/quorum/mod.rs", "pub mod node;\npub mod journal;\n"),
            ("mid/quorum/node.rs", "use crate::mid::controller::C;\n"),
            (
                "mid/controller.rs",
                "pub struct C;\nfn f(_: super::quorum::journal::J) {}\n",
            ),
            ("mid/quorum/journal.rs", "pub struct J;\n"),
            ("top/mod.rs", "fn f(_: crate::side::S) {}\npub struct T;\n"),
            ("side/mod.rs", "pub struct S;\nfn f(_: crate::top::T) {}\n"),
        ],
        finds: &[
            "module circle in src/: side, top",
            "file circle: side/mod.rs, top/mod.rs",
        ],
        misses: &["file circle: mid", "module circle in src/mid/"],
    },
];

#[test]
fn the_reader_finds_what_each_rule_is_about() {
    let mut failures = Vec::new();
    for case in CASES {
        let texts = case
            .files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()));
        let report = analyse(&Source::from_texts(texts), &Spec::parse(case.spec));
        let findings = report.findings();
        let found = |wanted: &&str| findings.iter().any(|f| f.contains(*wanted));
        let missing: Vec<_> = case.finds.iter().filter(|w| !found(w)).collect();
        let unwanted: Vec<_> = case.misses.iter().filter(|w| found(w)).collect();
        if !missing.is_empty() || !unwanted.is_empty() {
            failures.push(format!(
                "{}\n  missing: {missing:?}\n  unwanted: {unwanted:?}\n  findings:\n    {}",
                case.rule,
                findings.join("\n    ")
            ));
        }
    }
    println!("{} reader cases, {} failed", CASES.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
