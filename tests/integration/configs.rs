//! Every run spec the project ships loads and validates: `configs/*.toml` and the copies
//! the Kubernetes manifests carry.

use std::path::{Path, PathBuf};

fn specs_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            specs_under(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn shipped_run_specs_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut specs = Vec::new();
    specs_under(&root.join("configs"), &mut specs);
    specs_under(&root.join("k8s"), &mut specs);
    let specs: Vec<PathBuf> = specs.into_iter().filter(|p| !p.ends_with("kustomization.toml")).collect();
    assert!(specs.len() >= 3, "expected the shipped specs, found {specs:?}");
    for p in &specs {
        let spec = shared::spec::RunSpec::load(p).unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.shards() >= 1, "{}", p.display());
    }
}
