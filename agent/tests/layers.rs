//! The module layers of `agent/src`, checked against the code. The `# Layers` section of
//! `agent/src/lib.rs` is the source of truth: its table names the layers from the highest to
//! the lowest and the modules of each. This test reads every source file under `agent/src`
//! (without comments, string literals other than paths and `#[cfg(test)]` items or
//! modules), finds the `crate::<module>` paths (in `use crate::{a, b::c}` groups too, over
//! several lines, `super::` paths that climb to the crate root, and paths written as strings
//! such as `#[serde(with = "crate::a::b")]`), and fails when
//! - a module uses a module of a higher layer,
//! - the uses between the modules of one layer form a cycle,
//! - a module under `agent/src` is missing from the table, the table names a module that
//!   does not exist, or `lib.rs` declares a module the table does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Uses that break the rule and are being removed; each is ignored by both checks. An
/// entry whose use no longer exists fails the test, so the list only shrinks: delete the
/// entry together with the last use it allows. None today.
const PENDING: &[(&str, &str)] = &[];

/// The library's name, as `main.rs` (the binary) writes its paths.
const CRATE_NAME: &str = "cutover";

#[test]
fn modules_use_only_their_own_layer_and_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read agent/src/lib.rs");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    files.sort();
    let problems = check(&lib, &files, PENDING);
    assert!(
        problems.is_empty(),
        "the module layers of agent/src (see `# Layers` in agent/src/lib.rs):\n{}",
        problems.join("\n")
    );
}

/// Every `.rs` file under `dir`, with its path relative to `root`.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let rel = path.strip_prefix(root).expect("under root").to_owned();
            out.push((rel, text));
        }
    }
}

/// One layer of the table: its name and modules.
#[derive(Debug, PartialEq)]
struct Layer {
    name: String,
    modules: Vec<String>,
}

/// The layers of the `# Layers` section of `lib`'s crate doc, highest first: the rows of
/// its table (`| layer | modules, comma-separated | what it holds |`).
fn parse_layers(lib: &str) -> Result<Vec<Layer>, String> {
    let doc: Vec<&str> = lib
        .lines()
        .map_while(|l| l.trim_start().strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let start = doc
        .iter()
        .position(|l| l.trim() == "# Layers")
        .ok_or("agent/src/lib.rs: the crate doc has no `# Layers` section")?;
    let mut layers = Vec::new();
    for line in doc[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with("# "))
        .filter(|l| l.trim_start().starts_with('|'))
        .skip(1)
    {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        if cells.len() < 2 || cells[0].trim().starts_with('-') {
            continue;
        }
        let name = cells[0].trim().trim_matches('`').to_owned();
        let modules = cells[1]
            .split(',')
            .map(|m| m.trim().trim_matches('`').to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        layers.push(Layer { name, modules });
    }
    if layers.is_empty() {
        return Err("agent/src/lib.rs: the `# Layers` section has no table rows".into());
    }
    Ok(layers)
}

/// A token of Rust source with comments, string and character literals and lifetimes taken
/// out: an identifier (keywords and numbers too) or one punctuation character.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
}

/// `text` as tokens, each with its line (1-based).
fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips from `i` to `end`, counting lines.
    let skip = |i: &mut usize, end: usize, line: &mut usize| {
        let end = end.min(c.len());
        *line += c[*i..end].iter().filter(|&&ch| ch == '\n').count();
        *i = end;
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            skip(&mut i, j, &mut line);
        } else if ch == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            // A string that is a path names an item as code does
            // (`#[serde(with = "crate::store::codec")]`); any other string is no use.
            let content: String = c[(i + 1).min(c.len())..j.min(c.len())].iter().collect();
            if is_path(&content) {
                out.extend(tokenize(&content).into_iter().map(|(t, _)| (t, line)));
            }
            skip(&mut i, j + 1, &mut line);
        } else if ch == '\'' {
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime or label: its name is no path.
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let mut j = i;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            let word: String = c[i..j].iter().collect();
            // Raw strings (`r"…"`, `br#"…"#`, `cr##"…"##`) and raw identifiers (`r#type`).
            if matches!(word.as_str(), "r" | "br" | "cr") {
                let mut k = j;
                while c.get(k) == Some(&'#') {
                    k += 1;
                }
                if c.get(k) == Some(&'"') {
                    let hashes = k - j;
                    let mut m = k + 1;
                    while m < c.len()
                        && !(c[m] == '"' && (1..=hashes).all(|h| c.get(m + h) == Some(&'#')))
                    {
                        m += 1;
                    }
                    skip(&mut i, m + 1 + hashes, &mut line);
                    continue;
                }
                if word == "r" && k == j + 1 {
                    i = k;
                    continue;
                }
            }
            out.push((Tok::Ident(word), line));
            i = j;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// Whether `s` is a path of two or more segments (`crate::a::b`), and nothing else.
fn is_path(s: &str) -> bool {
    let segments: Vec<&str> = s.split("::").collect();
    segments.len() > 1
        && segments.iter().all(|seg| {
            seg.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

fn is_ident(t: Option<&(Tok, usize)>, name: &str) -> bool {
    matches!(t, Some((Tok::Ident(w), _)) if w == name)
}

fn is_punct(t: Option<&(Tok, usize)>, p: char) -> bool {
    t.is_some_and(|(tok, _)| *tok == Tok::Punct(p))
}

/// Whether the tokens at `i` are `#[cfg(test)]`; returns the index after it.
fn cfg_test_at(t: &[(Tok, usize)], i: usize) -> Option<usize> {
    let want = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let found = want
        .iter()
        .enumerate()
        .all(|(k, w)| t.get(i + k).is_some_and(|(tok, _)| tok == w));
    found.then_some(i + want.len())
}

/// The index after the bracketed group that opens at `i` (`(`, `[` or `{`).
fn close_of(t: &[(Tok, usize)], i: usize) -> usize {
    let mut depth = 0usize;
    for (k, (tok, _)) in t.iter().enumerate().skip(i) {
        match tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// `tokens` without the items under `#[cfg(test)]`, and the names of the modules declared
/// there without a body (`#[cfg(test)] mod tests;`), whose files are test code too.
fn without_test_items(tokens: Vec<(Tok, usize)>) -> (Vec<(Tok, usize)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut test_files = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(mut j) = cfg_test_at(&tokens, i) else {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        };
        // Further attributes of the same item.
        while is_punct(tokens.get(j), '#') && is_punct(tokens.get(j + 1), '[') {
            j = close_of(&tokens, j + 1);
        }
        let item = j;
        // The item ends at its first `;` outside brackets, or with its first `{…}` block.
        let mut depth = 0usize;
        while j < tokens.len() {
            match tokens[j].0 {
                Tok::Punct('{') if depth == 0 => {
                    j = close_of(&tokens, j);
                    break;
                }
                Tok::Punct(';') if depth == 0 => {
                    j += 1;
                    break;
                }
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            j += 1;
        }
        let decl: Vec<&Tok> = tokens[item..j].iter().map(|(t, _)| t).collect();
        if let [.., Tok::Ident(kw), Tok::Ident(name), Tok::Punct(';')] = decl.as_slice() {
            if kw == "mod" {
                test_files.push(name.clone());
            }
        }
        i = j;
    }
    (kept, test_files)
}

/// A use of a top-level module: who uses what, and where.
#[derive(Debug, Clone, PartialEq)]
struct Use {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

/// The top-level modules that `tokens` (of a file whose module path has `depth` segments)
/// names through `<root>::…` or `super::…` paths that reach the crate root.
fn used_modules(tokens: &[(Tok, usize)], root: &str, depth: usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    // Brace depths at which inline modules (`mod name { … }`) opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    let path_sep = |k: usize| is_punct(tokens.get(k), ':') && is_punct(tokens.get(k + 1), ':');
    let after_sep = |k: usize| k >= 2 && path_sep(k - 2);
    while i < tokens.len() {
        match &tokens[i].0 {
            Tok::Punct('{') => braces += 1,
            Tok::Punct('}') => {
                braces = braces.saturating_sub(1);
                while inline.last().is_some_and(|&d| d > braces) {
                    inline.pop();
                }
            }
            Tok::Ident(kw)
                if kw == "mod"
                    && matches!(tokens.get(i + 1), Some((Tok::Ident(_), _)))
                    && is_punct(tokens.get(i + 2), '{') =>
            {
                inline.push(braces + 1);
            }
            _ => {}
        }
        // Where a path that reaches the crate root continues, if one starts here.
        let after_root = match &tokens[i].0 {
            // `a::crate` is no path from the root (`$crate::` is).
            Tok::Ident(w) if w == root && path_sep(i + 1) && !after_sep(i) => Some(i + 3),
            Tok::Ident(w) if w == "super" && path_sep(i + 1) && !after_sep(i) => {
                let mut k = i;
                let mut climbs = 0;
                while is_ident(tokens.get(k), "super") && path_sep(k + 1) {
                    climbs += 1;
                    k += 3;
                }
                i = k - 1;
                (climbs == depth + inline.len()).then_some(k)
            }
            _ => None,
        };
        if let Some(k) = after_root {
            match tokens.get(k) {
                Some((Tok::Ident(m), line)) => out.push((m.clone(), *line)),
                Some((Tok::Punct('{'), _)) => {
                    let end = close_of(tokens, k);
                    let mut level = 0usize;
                    let mut entry_start = true;
                    for (tok, line) in &tokens[k..end] {
                        match tok {
                            Tok::Punct('{') => {
                                level += 1;
                                entry_start = level == 1;
                                continue;
                            }
                            Tok::Punct('}') => level -= 1,
                            Tok::Punct(',') if level == 1 => {
                                entry_start = true;
                                continue;
                            }
                            Tok::Ident(m) if level == 1 && entry_start => {
                                out.push((m.clone(), *line));
                            }
                            _ => {}
                        }
                        entry_start = false;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.retain(|(m, _)| m != "self");
    out
}

/// The module path segments of a file (`proxy/nginx/mod.rs` -> 2, `fsio.rs` -> 1).
fn module_depth(file: &Path) -> usize {
    let n = file.components().count();
    match file.file_name().and_then(|f| f.to_str()) {
        Some("mod.rs") => n - 1,
        _ => n,
    }
}

/// The directory that holds the files of the modules `file` declares.
fn child_dir(file: &Path) -> PathBuf {
    match file.file_name().and_then(|f| f.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => {
            file.parent().map(Path::to_owned).unwrap_or_default()
        }
        _ => file.with_extension(""),
    }
}

/// The top-level module a file belongs to (`proxy/nginx/mod.rs` -> `proxy`).
fn top_module(file: &Path) -> String {
    let first = file.components().next().expect("a file has a name");
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

/// The problems of the tree `files` (paths relative to `agent/src`, with their text; `lib`
/// is `lib.rs`) against its `# Layers` table, given the `pending` uses to ignore.
fn check(lib: &str, files: &[(PathBuf, String)], pending: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    let layers = match parse_layers(lib) {
        Ok(l) => l,
        Err(e) => return vec![e],
    };
    // Rank 0 is the lowest layer.
    let mut layer_of: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let rank = layers.len() - 1 - i;
        for m in &layer.modules {
            if layer_of.insert(m, (rank, &layer.name)).is_some() {
                problems.push(format!("the `# Layers` table lists module `{m}` twice"));
            }
        }
    }

    // Modules on disk, and those `lib.rs` declares.
    let mut on_disk: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, _) in files {
        if path == Path::new("lib.rs") {
            continue;
        }
        on_disk
            .entry(top_module(path))
            .or_insert_with(|| path.clone());
    }
    let (lib_tokens, _) = without_test_items(tokenize(lib));
    let declared: BTreeSet<String> = lib_tokens
        .windows(3)
        .filter_map(|w| match w {
            [(Tok::Ident(kw), _), (Tok::Ident(name), _), (Tok::Punct(';'), _)] if kw == "mod" => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    for (m, path) in &on_disk {
        if !layer_of.contains_key(m.as_str()) {
            problems.push(format!(
                "module `{m}` (agent/src/{}) is missing from the `# Layers` table of \
                 agent/src/lib.rs: add it to the layer it belongs to",
                path.display()
            ));
        }
    }
    for m in &declared {
        if !layer_of.contains_key(m.as_str()) && !on_disk.contains_key(m) {
            problems.push(format!(
                "agent/src/lib.rs declares module `{m}`, which the `# Layers` table does not list"
            ));
        }
    }
    for m in layer_of.keys() {
        if !on_disk.contains_key(*m) {
            problems.push(format!(
                "the `# Layers` table lists module `{m}`, which does not exist under agent/src"
            ));
        } else if *m != "main" && !declared.contains(*m) {
            problems.push(format!(
                "the `# Layers` table lists module `{m}`, which agent/src/lib.rs does not declare"
            ));
        }
    }

    // Files of test modules (`#[cfg(test)] mod tests;`), and the uses of the others.
    let mut tokens: BTreeMap<&Path, Vec<(Tok, usize)>> = BTreeMap::new();
    let mut test_dirs: Vec<PathBuf> = Vec::new();
    for (path, text) in files {
        if path == Path::new("lib.rs") {
            continue;
        }
        let (kept, test_mods) = without_test_items(tokenize(text));
        for name in test_mods {
            test_dirs.push(child_dir(path).join(&name));
        }
        tokens.insert(path, kept);
    }
    let mut uses: Vec<Use> = Vec::new();
    for (path, toks) in &tokens {
        let is_test = test_dirs
            .iter()
            .any(|d| path.with_extension("") == *d || path.starts_with(d));
        if is_test {
            continue;
        }
        let from = top_module(path);
        let root = if *path == Path::new("main.rs") {
            CRATE_NAME
        } else {
            "crate"
        };
        for (to, line) in used_modules(toks, root, module_depth(path)) {
            if to == from {
                continue;
            }
            if !on_disk.contains_key(&to) {
                problems.push(format!(
                    "agent/src/{}:{line}: `{root}::{to}` names no module under agent/src",
                    path.display()
                ));
                continue;
            }
            uses.push(Use {
                from: from.clone(),
                to,
                file: path.to_path_buf(),
                line,
            });
        }
    }

    // The pending uses: each must still exist and still break the rule.
    for &(from, to) in pending {
        let exists = uses.iter().any(|u| u.from == from && u.to == to);
        let breaks = match (layer_of.get(from), layer_of.get(to)) {
            (Some((a, _)), Some((b, _))) => a <= b,
            _ => false,
        };
        if !exists {
            problems.push(format!(
                "PENDING in agent/tests/layers.rs allows {from} -> {to}, but no such use \
                 exists any more: remove the entry"
            ));
        } else if !breaks {
            problems.push(format!(
                "PENDING in agent/tests/layers.rs allows {from} -> {to}, which the layers \
                 allow anyway: remove the entry"
            ));
        }
    }
    let uses: Vec<Use> = uses
        .into_iter()
        .filter(|u| !pending.contains(&(u.from.as_str(), u.to.as_str())))
        .collect();

    // Uses of a higher layer.
    for u in &uses {
        let (Some(&(from_rank, from_layer)), Some(&(to_rank, to_layer))) =
            (layer_of.get(u.from.as_str()), layer_of.get(u.to.as_str()))
        else {
            continue;
        };
        if to_rank > from_rank {
            problems.push(format!(
                "agent/src/{}:{}: `{}` (layer {from_layer}) uses `{}`, which is in layer \
                 {to_layer}, above it",
                u.file.display(),
                u.line,
                u.from,
                u.to
            ));
        }
    }

    // Cycles within a layer.
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Use>> = BTreeMap::new();
    for u in &uses {
        let same_layer = matches!(
            (layer_of.get(u.from.as_str()), layer_of.get(u.to.as_str())),
            (Some((a, _)), Some((b, _))) if a == b
        );
        if same_layer {
            graph
                .entry(u.from.as_str())
                .or_default()
                .entry(u.to.as_str())
                .or_insert(u);
        }
    }
    let mut reported: BTreeSet<BTreeSet<&str>> = BTreeSet::new();
    for &start in graph.keys() {
        let Some(cycle) = shortest_cycle(&graph, start) else {
            continue;
        };
        let members: BTreeSet<&str> = cycle.iter().copied().collect();
        if !reported.insert(members) {
            continue;
        }
        let layer = layer_of[start].1;
        let mut text = format!("a cycle within layer {layer}: {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            let u = graph[pair[0]][pair[1]];
            let _ = write!(
                text,
                "\n    {} -> {} at agent/src/{}:{}",
                u.from,
                u.to,
                u.file.display(),
                u.line
            );
        }
        problems.push(text);
    }
    problems
}

/// The shortest cycle through `start` (`start -> … -> start`), by breadth-first search.
fn shortest_cycle<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, &Use>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in graph.get(node).into_iter().flat_map(|n| n.keys()) {
            if next == start {
                // node, …, start, followed back; then turned round and closed.
                let mut path = vec![node];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    path.push(at);
                }
                path.reverse();
                path.push(start);
                return Some(path);
            }
            if !came_from.contains_key(next) && next != start {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The check on small made-up trees: it must find what it is there to find.
mod made_up_trees {
    use super::*;

    /// A `lib.rs` with layers `top` (module `a`) over `low` (modules `b`, `c`).
    const LIB: &str = "//! Example.\n\
        //!\n\
        //! # Layers\n\
        //!\n\
        //! | Layer | Modules | What it holds |\n\
        //! |-------|---------|---------------|\n\
        //! | `top` | `a`     | Above. |\n\
        //! | `low` | `b`, `c` | Below. |\n\
        //!\n\
        //! # Other\n\
        //! | `ignored` | `z` | Not a layer row. |\n\
        pub mod a;\n\
        pub mod b;\n\
        pub mod c;\n";

    fn tree(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        let mut out = vec![(PathBuf::from("lib.rs"), LIB.to_owned())];
        out.extend(
            files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), (*t).to_owned())),
        );
        out
    }

    #[test]
    fn reads_the_table() {
        let layers = parse_layers(LIB).unwrap();
        assert_eq!(
            layers,
            [
                Layer {
                    name: "top".into(),
                    modules: vec!["a".into()]
                },
                Layer {
                    name: "low".into(),
                    modules: vec!["b".into(), "c".into()]
                },
            ]
        );
        assert!(parse_layers("//! No section.\npub mod a;\n").is_err());
    }

    #[test]
    fn a_clean_tree_passes() {
        let files = tree(&[
            ("a.rs", "use crate::{b::X, c};\nfn f() { crate::b::g(); }\n"),
            ("b.rs", "use crate::c::Y;\n"),
            ("c.rs", ""),
        ]);
        assert_eq!(check(LIB, &files, &[]), Vec::<String>::new());
    }

    #[test]
    fn finds_a_use_of_a_higher_layer_in_a_multi_line_group() {
        let files = tree(&[
            ("a.rs", ""),
            ("b/mod.rs", "mod deep;\n"),
            ("b/deep.rs", "use crate::{\n    c::Y,\n    a::{X, Z},\n};\n"),
            ("c.rs", "fn f(x: super::a::X) {}\n"),
        ]);
        let problems = check(LIB, &files, &[]);
        assert_eq!(
            problems,
            [
                "agent/src/b/deep.rs:3: `b` (layer low) uses `a`, which is in layer top, above it",
                "agent/src/c.rs:1: `c` (layer low) uses `a`, which is in layer top, above it",
            ],
        );
    }

    #[test]
    fn finds_a_path_written_as_a_string() {
        let files = tree(&[
            ("a.rs", ""),
            (
                "b.rs",
                "#[derive(serde::Serialize)]\nstruct S {\n    #[serde(with = \"crate::a::codec\")]\n    \
                 x: u8,\n}\nconst NOT_A_PATH: &str = \"see crate::a\";\n",
            ),
            ("c.rs", ""),
        ]);
        assert_eq!(
            check(LIB, &files, &[]),
            ["agent/src/b.rs:3: `b` (layer low) uses `a`, which is in layer top, above it"],
        );
    }

    #[test]
    fn finds_a_cycle_within_a_layer() {
        let files = tree(&[
            ("a.rs", ""),
            ("b.rs", "use crate::c;\n"),
            ("c.rs", "\nfn f() -> crate::b::T { todo!() }\n"),
        ]);
        let problems = check(LIB, &files, &[]);
        assert_eq!(
            problems,
            ["a cycle within layer low: b -> c -> b\n    \
              b -> c at agent/src/b.rs:1\n    \
              c -> b at agent/src/c.rs:2"],
        );
    }

    #[test]
    fn finds_a_module_missing_from_the_table() {
        let files = tree(&[("a.rs", ""), ("b.rs", ""), ("c.rs", ""), ("d/mod.rs", "")]);
        let problems = check(LIB, &files, &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("module `d` (agent/src/d/mod.rs) is missing from the"),
            "{problems:?}"
        );
        let problems = check(LIB, &tree(&[("a.rs", ""), ("b.rs", "")]), &[]);
        assert_eq!(
            problems,
            ["the `# Layers` table lists module `c`, which does not exist under agent/src"],
        );
    }

    #[test]
    fn ignores_comments_strings_and_test_code() {
        let files = tree(&[
            ("a.rs", ""),
            (
                "b.rs",
                r##"//! See [`crate::a`].
/// Unlike [crate::a::X], this
/* crate::a /* nested */ crate::a */
const S: &str = "crate::a \" crate::a";
const R: &str = r#"crate::a " crate::a"#;
const C: char = '"';
fn f<'a>(x: &'a str) -> char { '\'' }
#[cfg(test)]
mod tests {
    use crate::a;
}
#[cfg(test)]
use crate::a::X;
#[cfg(test)]
#[allow(dead_code)]
mod more;
mod real;
"##,
            ),
            ("b/more.rs", "use crate::a;\n"),
            ("b/real.rs", "use crate::c;\n"),
            ("c.rs", ""),
        ]);
        assert_eq!(check(LIB, &files, &[]), Vec::<String>::new());
    }

    #[test]
    fn pending_uses_are_allowed_until_they_are_gone() {
        let files = tree(&[("a.rs", ""), ("b.rs", "use crate::a;\n"), ("c.rs", "")]);
        assert_eq!(check(LIB, &files, &[("b", "a")]), Vec::<String>::new());
        let problems = check(LIB, &files, &[("b", "a"), ("c", "a")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("allows c -> a, but no such use exists any more"),
            "{problems:?}"
        );
        let files = tree(&[
            ("a.rs", "use crate::b;\n"),
            ("b.rs", "use crate::a;\n"),
            ("c.rs", ""),
        ]);
        let problems = check(LIB, &files, &[("b", "a"), ("a", "b")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("allows a -> b, which the layers allow anyway"),
            "{problems:?}"
        );
    }
}
