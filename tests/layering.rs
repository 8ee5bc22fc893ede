//! The floors in `src/lib.rs`'s layout are true of the code: no module imports one that stands
//! above it (`crate::name` paths are read from every source file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;

/// Module name -> floor (0 at the top), from the layout block of `src/lib.rs`.
fn floors() -> HashMap<String, usize> {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let block = lib
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("lib.rs has a layout block");
    let mut out = HashMap::new();
    for (floor, line) in block
        .lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let names = line.split("  ").next().unwrap();
        for name in names.split(',') {
            let name = name.trim().trim_end_matches('/');
            assert!(!name.is_empty(), "layout line {line:?}");
            out.insert(name.to_owned(), floor);
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_one_on_a_higher_floor() {
    let floors = floors();
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix("src").unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_owned();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let Some(&own) = floors.get(&module) else {
            panic!("src/{module} is not in lib.rs's layout");
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(&other) = floors.get(&name)
                && other < own
            {
                wrong.push(format!(
                    "{} imports {name} (floor {other} < {own})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up:\n{}",
        wrong.join("\n")
    );
}
