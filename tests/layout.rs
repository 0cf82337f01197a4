//! The README's layout table matches the tree: every path it names exists, and every folder
//! of `src/`, every module file at the root of `src/` and every top-level folder is named.

use std::collections::BTreeSet;
use std::path::Path;

/// The backticked paths of the README's "Layout" table rows.
fn layout_paths() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("## Layout\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Layout section");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first = line.split('|').nth(1).unwrap_or_default();
            first
                .split(',')
                .map(|p| p.trim().trim_matches('`').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every folder below `dir` (recursively), as paths relative to the crate root.
fn folders(root: &Path, dir: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(root.join(dir)).expect("a folder") {
        let entry = entry.expect("an entry");
        if entry.file_type().expect("a file type").is_dir() {
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            out.push(format!("{path}/"));
            folders(root, &path, out);
        }
    }
}

#[test]
fn the_readme_layout_table_names_every_folder_and_only_real_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let named = layout_paths();
    for path in &named {
        assert!(
            root.join(path).exists(),
            "README names `{path}`, which does not exist"
        );
    }
    let mut expected = Vec::new();
    folders(root, "src", &mut expected);
    for entry in std::fs::read_dir(root.join("src")).expect("src") {
        let name = entry
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        let is_module = name.ends_with(".rs")
            && !["lib.rs", "main.rs", "test_support.rs"].contains(&name.as_str());
        if is_module {
            expected.push(format!("src/{name}"));
        }
    }
    for dir in [
        "assets",
        "bench/results",
        "deploy",
        "docs",
        "examples",
        "fuzz",
        "kernels",
        "proto",
        "python",
        "scripts",
        "tests",
    ] {
        expected.push(format!("{dir}/"));
    }
    let missing: Vec<_> = expected.iter().filter(|p| !named.contains(*p)).collect();
    assert!(
        missing.is_empty(),
        "the README's layout table leaves out {missing:?}"
    );
}
