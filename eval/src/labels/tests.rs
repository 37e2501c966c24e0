//! End-to-end runs of [`evaluate`] on procedural label maps.

use std::path::{Path, PathBuf};

use super::*;
use shared::procedural::{generate_labels, ClassShares};
use shared::{LabelMap, RgbImage};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("labelgen-eval-labels-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `dir/labels/NAME.png` for each map.
fn write_dataset(dir: &Path, maps: &[LabelMap]) {
    let classes = ClassTable::ai_hub();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    for (i, m) in maps.iter().enumerate() {
        std::fs::write(dir.join(format!("labels/{i:06}.png")), m.to_png(&classes)).unwrap();
    }
}

/// A run directory: the maps as `data/000000/0/KEY.label.png` and a manifest.jsonl
/// listing them.
fn write_run(dir: &Path, maps: &[LabelMap]) {
    let classes = ClassTable::ai_hub();
    std::fs::create_dir_all(dir.join("data/000000/0")).unwrap();
    let mut manifest = String::new();
    for (i, m) in maps.iter().enumerate() {
        let rel = format!("data/000000/0/{i:08}.label.png");
        std::fs::write(dir.join(&rel), m.to_png(&classes)).unwrap();
        let image = rel.replace(".label", "");
        manifest.push_str(&shared::manifest::ManifestLine::for_files(i as u64, &format!("{i:08}"), &image, &rel).to_jsonl());
    }
    std::fs::write(dir.join("manifest.jsonl"), manifest).unwrap();
}

fn args(real: &Path, run: &Path, out: &Path) -> LabelOptions {
    LabelOptions {
        real: real.to_path_buf(),
        synthetic: run.display().to_string(),
        out: out.to_path_buf(),
        min_island: 16,
        size: None,
        connectivity: Connectivity::Eight,
        classes: shared::ClassTable::ai_hub(),
    }
}

fn read_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("labels.json")).unwrap()).unwrap()
}

#[test]
fn eval_labels_identical_sets_are_at_zero_and_islands_are_found() {
    let dir = temp_dir("cmp");
    let maps: Vec<LabelMap> = (0..4).map(|i| generate_labels(40 + i, 48, &ClassShares::default())).collect();
    let (real, same, noisy) = (dir.join("real"), dir.join("run-same"), dir.join("run-noisy"));
    write_dataset(&real, &maps);
    write_run(&same, &maps);

    let out = dir.join("out-same");
    let e = evaluate(&args(&real, &same, &out)).unwrap();
    assert_eq!((e.json, e.plots.len(), e.distances.share_tv), (out.join("labels.json"), 3, 0.0));
    let j = read_json(&out);
    for key in ["share_tv", "component_size_tv", "adjacency_tv"] {
        assert_eq!(j["distances"][key], 0.0, "{key}: {}", j["distances"]);
    }
    assert_eq!(j["distances"]["islands_per_map"][0], j["distances"]["islands_per_map"][1]);
    assert_eq!((j["real"]["maps"].as_u64(), j["synthetic"]["maps"].as_u64()), (Some(4), Some(4)));
    assert_eq!(j["real"]["class_pixels"], j["synthetic"]["class_pixels"]);
    assert_eq!(j["classes"][0], "building");
    assert!(j["notes"].as_array().unwrap().is_empty(), "{}", j["notes"]);
    // The same maps as a `sample-labels` output (labels/*.png) and as a `cleanup`
    // output (*.png), without a manifest.
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for (i, m) in maps.iter().enumerate() {
        std::fs::write(flat.join(format!("{i:06}.png")), m.to_png(&ClassTable::ai_hub())).unwrap();
    }
    for (tag, synthetic) in [("dataset", &real), ("flat", &flat)] {
        let out = dir.join(format!("out-{tag}"));
        evaluate(&args(&real, synthetic, &out)).unwrap();
        let j = read_json(&out);
        assert_eq!((j["distances"]["share_tv"].as_f64(), j["synthetic"]["maps"].as_u64()), (Some(0.0), Some(4)), "{tag}");
    }
    for name in ["shares.png", "adjacency.png", "components.png"] {
        let img = RgbImage::from_png(&std::fs::read(out.join(name)).unwrap(), name).unwrap();
        assert!(img.width > 300 && img.height > 200, "{name}: {}×{}", img.width, img.height);
    }

    // The same maps with 5 planted single-pixel islands each (building in forest-free
    // spots: on pixels whose 8 neighbours all share one other class).
    let mut planted = 0u64;
    let noisy_maps: Vec<LabelMap> = maps
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let mut n = 0;
            'scan: for y in (2..46).step_by(7) {
                for x in (2..46).step_by(5) {
                    let c = m.get(x, y);
                    let ring = [(x - 1, y - 1), (x, y - 1), (x + 1, y - 1), (x - 1, y), (x + 1, y), (x - 1, y + 1), (x, y + 1), (x + 1, y + 1)];
                    if ring.iter().all(|&(a, b)| m.get(a, b) == c) {
                        m.set(x, y, if c == 6 { 7 } else { 6 });
                        n += 1;
                        if n == 5 {
                            break 'scan;
                        }
                    }
                }
            }
            planted += n;
            m
        })
        .collect();
    assert!(planted >= 10, "only {planted} islands planted");
    write_run(&noisy, &noisy_maps);
    let out = dir.join("out-noisy");
    evaluate(&args(&real, &noisy, &out)).unwrap();
    let j = read_json(&out);
    let d = &j["distances"];
    assert!(d["component_size_tv"].as_f64().unwrap() > 0.0 && d["adjacency_tv"].as_f64().unwrap() > 0.0 && d["share_tv"].as_f64().unwrap() > 0.0, "{d}");
    let islands = |set: &str| j[set]["islands"].as_u64().unwrap();
    assert!(islands("synthetic") >= islands("real") + planted, "{} real, {} synthetic, {planted} planted", islands("real"), islands("synthetic"));

    // Synthetic maps of another size are measured at the real size, and a note says so.
    let big: Vec<LabelMap> = maps.iter().map(|m| m.resize_nearest(96, 96)).collect();
    let run_big = dir.join("run-big");
    write_run(&run_big, &big);
    let out = dir.join("out-big");
    evaluate(&args(&real, &run_big, &out)).unwrap();
    let j = read_json(&out);
    assert_eq!(j["distances"]["share_tv"], 0.0, "a 2× nearest upscale shrinks back exactly");
    assert_eq!(j["synthetic"]["maps_resized"], 4);
    assert_eq!(j["measured_at"], serde_json::json!([48, 48]));
    assert!(j["notes"][0].as_str().unwrap().contains("resized"), "{}", j["notes"]);
    // With --size both are brought to it.
    let mut a = args(&real, &run_big, &dir.join("out-size"));
    a.size = Some(24);
    evaluate(&a).unwrap();
    let j = read_json(&dir.join("out-size"));
    assert_eq!((j["real"]["maps_resized"].as_u64(), j["synthetic"]["maps_resized"].as_u64()), (Some(4), Some(4)));
    assert_eq!(j["real"]["sizes"], serde_json::json!([{"width": 24, "height": 24, "maps": 4}]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_labels_errors_name_the_file_and_the_problem() {
    let dir = temp_dir("err");
    let maps = vec![generate_labels(1, 16, &ClassShares::default())];
    let (real, run_dir, out) = (dir.join("real"), dir.join("run"), dir.join("out"));
    write_dataset(&real, &maps);
    std::fs::create_dir_all(&run_dir).unwrap();

    let e = format!("{:#}", evaluate(&args(&real, &run_dir, &out)).unwrap_err());
    assert!(e.contains("manifest.jsonl") && e.contains("missing") && e.contains("not a finished run directory"), "{e}");

    let e = format!("{:#}", evaluate(&args(&real, &dir.join("nope"), &out)).unwrap_err());
    assert!(e.contains("nope") && e.contains("no such directory"), "{e}");

    write_run(&run_dir, &maps);
    std::fs::write(run_dir.join("data/000000/0/00000000.label.png"), b"garbage").unwrap();
    let e = format!("{:#}", evaluate(&args(&real, &run_dir, &out)).unwrap_err());
    assert!(e.contains("00000000.label.png") && e.contains("unreadable label map") && e.contains("PNG"), "{e}");

    std::fs::remove_file(run_dir.join("data/000000/0/00000000.label.png")).unwrap();
    let e = format!("{:#}", evaluate(&args(&real, &run_dir, &out)).unwrap_err());
    assert!(e.contains("00000000.label.png") && e.contains("missing"), "{e}");

    let e = format!("{:#}", evaluate(&args(&dir.join("no-real"), &run_dir, &out)).unwrap_err());
    assert!(e.contains("--real") && e.contains("no-real"), "{e}");

    let mut a = args(&real, &run_dir, &out);
    a.size = Some(0);
    assert!(evaluate(&a).unwrap_err().to_string().contains("--size 0"));
    std::fs::remove_dir_all(&dir).unwrap();
}
