//! The crate's areas depend on each other one way only (see `src/lib.rs`): this reads every
//! source file and fails when a module names an area it may not depend on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each area (or crate-level module) and the areas it may use besides itself.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("error", &["config"]),
    ("ops", &[]),
    ("admission", &["config", "error", "ops"]),
    ("upstream", &["config", "error", "ops"]),
    (
        "proxy",
        &["config", "error", "ops", "admission", "upstream"],
    ),
    (
        "server",
        &["config", "error", "ops", "admission", "upstream", "proxy"],
    ),
    (
        "cli",
        &[
            "config",
            "error",
            "ops",
            "admission",
            "upstream",
            "proxy",
            "server",
        ],
    ),
    ("fuzzing", &["config", "proxy"]),
    ("lib", &["error"]),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::NAME` references in a file, comments excluded.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
            rest = after;
        }
    }
    names
}

#[test]
fn areas_depend_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let area = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap()
            .trim_end_matches(".rs");
        if area == "main" {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .find(|(name, _)| *name == area)
            .unwrap_or_else(|| panic!("{} is in no known area", relative.display()))
            .1;
        let text = std::fs::read_to_string(file).unwrap();
        for name in crate_references(&text) {
            if name != area && !allowed.contains(&name.as_str()) {
                violations.push(format!("{} uses crate::{name}", relative.display()));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_checker_sees_references() {
    let text = "use crate::proxy::EdgeProxy;\n// crate::server in a comment\nlet x = crate::ops::metrics::Metrics::new();";
    let names: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(names, ["ops", "proxy"]);
}
