//! `docs/CONFIG.md` against the config types: every key the types accept is documented in its
//! table's section, and no documented key or table is one the types do not accept.
//!
//! The accepted keys come from the types themselves: every config struct denies unknown fields,
//! and serde's error for an unknown field lists the fields the struct expects. The test walks the
//! tables from the top: a key that takes a table of fixed keys of its own (a probe key inside it
//! is refused as unknown) is a table with its own section; any other key is a row.

use std::collections::{BTreeMap, BTreeSet};

use arrow_server::config::Config;

const PROBE: &str = "zzz_reference_probe";

/// A table path: each segment with whether it is an array of tables (`[[a.b]]`).
type Path = Vec<(String, bool)>;

fn heading(path: &Path) -> String {
    let name = path
        .iter()
        .map(|(s, _)| s.as_str())
        .collect::<Vec<_>>()
        .join(".");
    match path.last() {
        Some((_, true)) => format!("[[{name}]]"),
        Some((_, false)) => format!("[{name}]"),
        None => "(top level)".into(),
    }
}

/// The TOML that opens `path` (every enclosing table, then `path` itself) and sets the probe key.
fn probe_text(path: &Path) -> String {
    let mut text = String::new();
    for i in 1..=path.len() {
        text.push_str(&heading(&path[..i].to_vec()));
        text.push('\n');
    }
    text.push_str(&format!("{PROBE} = 1\n"));
    text
}

/// The fields the struct at `path` expects, if `path` is a struct that denies unknown fields.
fn expected_fields(path: &Path) -> Option<BTreeSet<String>> {
    let err = Config::parse(&probe_text(path), "probe").err()?.message;
    let rest = err.split(&format!("unknown field `{PROBE}`")).nth(1)?;
    let fields = if rest.contains("there are no fields") {
        BTreeSet::new()
    } else {
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    Some(fields)
}

/// Every table the types accept (by its heading) with its keys.
fn accepted() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<Path> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let fields = expected_fields(&path)
            .unwrap_or_else(|| panic!("{} does not refuse an unknown key", heading(&path)));
        let mut keys = BTreeSet::new();
        for field in fields {
            let sub = |array: bool| {
                let mut p = path.clone();
                p.push((field.clone(), array));
                p
            };
            match [false, true]
                .into_iter()
                .map(sub)
                .find(|p| expected_fields(p).is_some())
            {
                Some(p) => todo.push(p),
                None => {
                    keys.insert(field);
                }
            }
        }
        if !path.is_empty() {
            out.insert(heading(&path), keys);
        } else {
            assert!(keys.is_empty(), "keys outside any table: {keys:?}");
        }
    }
    out
}

fn reference() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The documented tables (`## [x]` / `## [[x]]`) and the keys of their tables' rows.
fn documented(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            let h = h.trim();
            current = h.starts_with('[').then(|| h.to_string());
            if let Some(c) = &current {
                assert!(
                    out.insert(c.clone(), BTreeSet::new()).is_none(),
                    "{c} documented twice"
                );
            }
            continue;
        }
        let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        let key = row.split('`').next().unwrap().to_string();
        assert!(
            out.get_mut(table).unwrap().insert(key.clone()),
            "{table} documents `{key}` twice"
        );
    }
    out
}

#[test]
fn every_key_the_types_accept_is_documented_and_nothing_else() {
    let accepted = accepted();
    for table in [
        "[node]",
        "[limits]",
        "[[disk]]",
        "[[host]]",
        "[cluster]",
        "[dns]",
    ] {
        assert!(
            accepted.contains_key(table),
            "walk missed {table}: {accepted:?}"
        );
    }
    let documented = documented(&reference());
    let mut problems = Vec::new();
    for (table, keys) in &accepted {
        match documented.get(table) {
            None => problems.push(format!("{table}: no `## {table}` section")),
            Some(doc) => {
                for k in keys.difference(doc) {
                    problems.push(format!("{table}: `{k}` accepted but not documented"));
                }
                for k in doc.difference(keys) {
                    problems.push(format!("{table}: `{k}` documented but not accepted"));
                }
            }
        }
    }
    for table in documented.keys().filter(|t| !accepted.contains_key(*t)) {
        problems.push(format!("{table}: documented, but no such table"));
    }
    assert!(
        problems.is_empty(),
        "docs/CONFIG.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_references_example_config_is_valid() {
    let text = reference();
    let example = text
        .split("```toml\n")
        .last()
        .and_then(|rest| rest.split("```").next())
        .expect("docs/CONFIG.md ends with a ```toml example");
    if let Err(e) = Config::parse(example, "docs/CONFIG.md example") {
        panic!("{e}");
    }
}

#[test]
fn an_undocumented_key_is_caught() {
    // The check itself: a section missing a key, and a key the types do not have, are reported.
    let mut doc =
        documented("## [node]\n| `name` | string | required | x |\n| `bogus` | x | x | x |\n");
    let node = doc.remove("[node]").unwrap();
    let accepted = accepted().remove("[node]").unwrap();
    assert!(accepted.contains("name") && accepted.contains("cores"));
    assert!(accepted.difference(&node).any(|k| k == "cores"));
    assert!(node.difference(&accepted).any(|k| k == "bogus"));
}
