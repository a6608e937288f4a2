//! The daemon's files import each other downwards only: the graph of `crate::` and `super::`
//! paths between the files of `node/src` has no circle (the layering is drawn in `lib.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as its module path (`["procman", "stdin"]`, `[]` for lib.rs).
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            modules(&path, &p, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut p = prefix.to_vec();
            match stem {
                "lib" | "mod" => {}
                // the binary is its own crate
                "main" if prefix.is_empty() => continue,
                s => p.push(s.to_string()),
            }
            out.insert(p, path);
        }
    }
}

/// The module paths a file names: `crate::a::b` and `super::a` (made absolute).
fn referenced(text: &str, me: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    // `super` of a mod.rs or lib.rs file is its folder's parent; of a.rs, its folder
    let parent: Vec<String> = if is_mod_file || me.is_empty() {
        me[..me.len().saturating_sub(1)].to_vec()
    } else {
        me[..me.len() - 1].to_vec()
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            out.push(ident(&code[i + 7..]));
        }
        for (i, _) in code.match_indices("super::") {
            if code[..i].ends_with("::") {
                continue;
            }
            let mut p = parent.clone();
            p.extend(ident(&code[i + 7..]));
            out.push(p);
        }
        // `use super::{a, b}` names several
        if let Some(i) = code.find("super::{") {
            let inner = code[i + 8..].split('}').next().unwrap_or("");
            for name in inner.split(',') {
                let mut p = parent.clone();
                p.extend(ident(name.trim()));
                out.push(p);
            }
        }
        if let Some(i) = code.find("crate::{") {
            let inner = code[i + 8..].split('}').next().unwrap_or("");
            for name in inner.split(',') {
                out.push(ident(name.trim()));
            }
        }
    }
    out
}

/// The file a module path leads to: its longest prefix that is a file.
fn file_of(path: &[String], files: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

#[test]
fn the_file_graph_of_the_daemon_has_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    modules(&src, &[], &mut files);
    assert!(files.len() > 10, "found {} files", files.len());
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (me, path) in &files {
        let text = std::fs::read_to_string(path).expect("read file");
        let is_mod = path.file_name().is_some_and(|n| n == "mod.rs");
        let to: BTreeSet<Vec<String>> = referenced(&text, me, is_mod)
            .iter()
            .filter_map(|p| file_of(p, &files))
            .filter(|f| f != me)
            .collect();
        edges.insert(me.clone(), to);
    }
    // depth-first search for a back edge
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) {
        match state.get(n) {
            Some(2) => return,
            Some(1) => {
                let at = stack.iter().position(|s| s == n).unwrap_or(0);
                let circle: Vec<String> = stack[at..]
                    .iter()
                    .chain(std::iter::once(n))
                    .map(|m| m.join("/"))
                    .collect();
                panic!(
                    "files import each other in a circle: {}",
                    circle.join(" -> ")
                );
            }
            _ => {}
        }
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, state, stack);
        }
        stack.pop();
        state.insert(n.clone(), 2);
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        visit(n, &edges, &mut state, &mut Vec::new());
    }
}
