//! End-to-end runs of [`run`] on procedural data.

use std::path::Path;

use shared::dataset::DEFAULT_TEST_FRACTION;

use super::*;

/// The command's defaults (`labelgen-eval utility --real REAL --synthetic RUN --out OUT
/// --test-stems STEMS`).
fn options(real: &Path, run: &Path, out: &Path, test_stems: &Path) -> UtilityOptions {
    UtilityOptions {
        classes: ClassTable::ai_hub(),
        real: real.to_path_buf(),
        dataset: DatasetOptions { test_fraction: DEFAULT_TEST_FRACTION, ..DatasetOptions::default() },
        synthetic: run.display().to_string(),
        mix: Mix::Replace(0.1),
        consistency_samples: DEFAULT_CONSISTENCY_SAMPLES,
        test_stems: Some(test_stems.to_path_buf()),
        seeds: 3,
        seed: 0,
        epochs: 20,
        budget: Budget::Steps,
        size: 512,
        width: 32,
        batch: 8,
        lr: 1e-3,
        out: out.to_path_buf(),
    }
}

/// A run directory whose manifest pairs real training image `stems[i]` with real label
/// `stems[(i + shift) % n]` (shift 0: exact copies; otherwise wrong labels).
fn copy_run(real: &Path, run: &Path, stems: &[String], shift: usize) {
    std::fs::create_dir_all(run.join("data")).unwrap();
    let mut manifest = String::new();
    for (i, s) in stems.iter().enumerate() {
        let label = &stems[(i + shift) % stems.len()];
        std::fs::copy(real.join(format!("images/{s}.png")), run.join(format!("data/{s}.png"))).unwrap();
        std::fs::copy(real.join(format!("labels/{label}.png")), run.join(format!("data/{s}.label.png"))).unwrap();
        manifest.push_str(&shared::manifest::ManifestLine::for_files(i as u64, s, &format!("data/{s}.png"), &format!("data/{s}.label.png")).to_jsonl());
    }
    std::fs::write(run.join("manifest.jsonl"), manifest).unwrap();
}

/// The evaluation tells help from harm (80 procedural pairs, 16 held out, 3 seeds of
/// 20 epochs at 64×64, width 8; about 2½ minutes on 2 cores): replacing 10% of the
/// training split with exact copies of real training pairs stays within the seed
/// spread; replacing 30% with real images paired with other tiles' labels lowers mIoU
/// beyond it. Training is deterministic per seed, so the baseline is the same in both.
/// Measured: baseline 18.5 ± 0.3; copies 18.1 ± 0.5 (|Δ| 0.4 < spread 0.9);
/// shuffled 14.9 ± 0.2 (Δ −3.6, spread 0.6). Image–label consistency (the baseline
/// networks on all 64 of each run's samples): copies 19.7% mIoU, shuffled 6.7%.
#[test]
fn eval_utility_tells_help_from_harm() {
    let dir = std::env::temp_dir().join(format!("labelgen-eval-harm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let real = dir.join("real");
    shared::procedural::write_dataset(&real, 80, 32, 5, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
    let stems: Vec<String> = (0..80).map(shared::procedural::tile_name).collect();
    let stems_file = dir.join("test_stems.txt");
    std::fs::write(&stems_file, stems[..16].iter().map(|s| format!("{s}\n")).collect::<String>()).unwrap();
    copy_run(&real, &dir.join("copies"), &stems[16..], 0);
    copy_run(&real, &dir.join("shuffled"), &stems[16..], 7);
    let verdict = |run: &str, share: f64| {
        let out = dir.join(format!("out-{run}"));
        let a = UtilityOptions { mix: Mix::Replace(share), seeds: 3, epochs: 20, size: 64, width: 8, batch: 8, lr: 0.003, ..options(&real, &dir.join(run), &out, &stems_file) };
        super::run(&a, DeviceChoice::Cpu).unwrap();
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let v = &report["verdict"];
        let (base, syn) = (report["baseline"]["miou_mean"].as_f64().unwrap(), report["with_synthetic"]["miou_mean"].as_f64().unwrap());
        let c = &report["consistency"];
        let consistent = c["on_synthetic"]["miou_mean"].as_f64().unwrap();
        eprintln!(
            "{run} ({share}): baseline {base:.4}, with synthetic {syn:.4}, Δ {:.4}, spread {:.4}; consistency mIoU {consistent:.4}, KID×1000 {}",
            v["delta_miou"], v["spread"], c["kid_x1000_mean"]
        );
        assert_eq!(c["kid_x1000"].as_array().unwrap().len(), 3);
        (v["delta_miou"].as_f64().unwrap(), v["spread"].as_f64().unwrap(), v["exceeds_spread"].as_bool().unwrap(), consistent)
    };
    let (d, spread, exceeds, copies_consistent) = verdict("copies", 0.1);
    assert!(!exceeds && d.abs() <= spread, "exact copies of real pairs: Δ {d:.4} must stay within the spread {spread:.4}");
    let (d, spread, exceeds, shuffled_consistent) = verdict("shuffled", 0.3);
    assert!(exceeds && d < -spread, "30% wrong labels: Δ {d:.4} must fall below −spread {spread:.4}");
    // Image–label consistency sees the wrong labels directly: the baseline networks agree
    // with the copies' labels far more than with the shuffled ones.
    assert!(copies_consistent > 1.5 * shuffled_consistent, "consistency: copies {copies_consistent:.4}, shuffled {shuffled_consistent:.4}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The "synthetic" run is exact copies of real training pairs (a manifest pointing to
/// PNGs): `--replace 0.1` with tiny settings runs end to end and writes the reports;
/// a --test-stems file naming a missing stem is an error that names it.
#[test]
fn eval_utility_end_to_end_with_copies() {
    let dir = std::env::temp_dir().join(format!("labelgen-eval-utility-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (real, run, out) = (dir.join("real"), dir.join("run"), dir.join("out"));
    shared::procedural::write_dataset(&real, 24, 32, 3, &shared::procedural::ClassShares::default(), |_| {}).unwrap();
    std::fs::create_dir_all(run.join("data")).unwrap();
    let stems: Vec<String> = (0..24).map(shared::procedural::tile_name).collect();
    let test: Vec<&String> = stems.iter().take(4).collect();
    let mut manifest = String::new();
    for (i, s) in stems.iter().skip(4).take(6).enumerate() {
        std::fs::copy(real.join(format!("images/{s}.png")), run.join(format!("data/{s}.png"))).unwrap();
        std::fs::copy(real.join(format!("labels/{s}.png")), run.join(format!("data/{s}.label.png"))).unwrap();
        manifest.push_str(&shared::manifest::ManifestLine::for_files(i as u64, s, &format!("data/{s}.png"), &format!("data/{s}.label.png")).to_jsonl());
    }
    std::fs::write(run.join("manifest.jsonl"), manifest).unwrap();
    let stems_file = dir.join("test_stems.txt");
    std::fs::write(&stems_file, test.iter().map(|s| format!("{s}\n")).collect::<String>()).unwrap();
    let a = UtilityOptions { mix: Mix::Replace(0.1), seeds: 2, epochs: 1, size: 32, width: 2, batch: 4, ..options(&real, &run, &out, &stems_file) };
    super::run(&a, DeviceChoice::Cpu).unwrap();

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let settings = &report["settings"];
    assert_eq!((settings["real_train_pairs"].as_u64(), settings["test_pairs"].as_u64(), settings["synthetic_pairs"].as_u64()), (Some(20), Some(4), Some(2)));
    assert_eq!(report["baseline"]["runs"].as_array().unwrap().len(), 2);
    // A hand-assembled run has no run.json naming models: said, not hidden.
    assert!(settings["leak_check"].as_str().unwrap().starts_with("not checked"), "{settings}");
    let run0 = &report["with_synthetic"]["runs"][0];
    assert_eq!((run0["train_pairs"].as_u64(), run0["synthetic_pairs"].as_u64()), (Some(20), Some(2)));
    let confusion: u64 = run0["confusion"]["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(confusion + run0["confusion"]["ignored"].as_u64().unwrap(), 4 * 32 * 32, "every test pixel is evaluated once");
    assert!(report["verdict"]["exceeds_spread"].is_boolean(), "{}", report["verdict"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| Baseline (real only) |") && md.contains("| With synthetic (replace 10%) |") && md.contains("mIoU") && md.contains(" ± "), "{md}");
    assert!(md.contains("Rule:"), "{md}");
    assert!(md.contains("## Image–label consistency") && md.contains("| Run's images vs their labels |") && md.contains("not Inception-KID"), "{md}");
    let c = &report["consistency"];
    assert_eq!(c["on_synthetic"]["runs"].as_array().unwrap().len(), 2);
    // The consistency scores all 6 of the run's samples (--consistency-samples 256, at
    // most the run's size), not just the 2 mixed in.
    assert_eq!(c["on_synthetic"]["runs"][0]["synthetic_pairs"].as_u64(), Some(6), "{c}");
    assert!(md.contains("label the run's 6 images") && md.contains("2 of them were mixed in"), "{md}");
    assert!(c["feature_dim"].as_u64().unwrap() == 4 && c["kid_x1000"].as_array().unwrap().iter().all(|v| v.is_f64()), "{c}");
    assert!(out.join("iou.png").exists() && out.join("synthetic/images/00000005.png").exists());
    let mixed_in: Vec<Vec<u8>> = (0..2).map(|i| std::fs::read(out.join(format!("synthetic/images/{i:08}.png"))).unwrap()).collect();

    // --consistency-samples 0: only the mixed-in samples are fetched and scored, and they
    // are the same picks as above.
    let a = UtilityOptions { consistency_samples: 0, mix: Mix::Replace(0.1), seeds: 2, epochs: 1, size: 32, width: 2, batch: 4, ..options(&real, &run, &out, &stems_file) };
    super::run(&a, DeviceChoice::Cpu).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["consistency"]["on_synthetic"]["runs"][0]["synthetic_pairs"].as_u64(), Some(2));
    assert!(!out.join("synthetic/images/00000002.png").exists());
    let again: Vec<Vec<u8>> = (0..2).map(|i| std::fs::read(out.join(format!("synthetic/images/{i:08}.png"))).unwrap()).collect();
    assert_eq!(mixed_in, again, "the mix's picks do not depend on --consistency-samples");

    // Added samples: the baseline trains the mixed arm's steps (20 pairs, batch 4: 5 steps
    // an epoch; 26 pairs: 7, two epochs 14 → 3 baseline epochs, 15 steps).
    let a = UtilityOptions { mix: Mix::Add(0.3), seeds: 2, epochs: 2, size: 32, width: 2, batch: 4, ..options(&real, &run, &out, &stems_file) };
    super::run(&a, DeviceChoice::Cpu).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((report["settings"]["budget"].as_str(), report["settings"]["baseline_epochs"].as_u64()), (Some("steps"), Some(3)));
    assert_eq!(report["with_synthetic"]["runs"][0]["train_pairs"].as_u64(), Some(26));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("2 epoch(s) with synthetic and 3 for the baseline") && md.contains("(adding 30% of the real"), "{md}");

    // A share below one pair takes one: the report says what was taken.
    let a = UtilityOptions { mix: Mix::Replace(0.01), consistency_samples: 0, seeds: 2, epochs: 1, size: 32, width: 2, batch: 4, ..options(&real, &run, &out, &stems_file) };
    super::run(&a, DeviceChoice::Cpu).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("1 samples (replacing 5% of the real training split; 1% asked for, rounded to whole pairs)"), "{md}");

    // A mistyped path fails before the earlier report is touched.
    for (real, run) in [(dir.join("no-real"), run.clone()), (real.clone(), dir.join("no-run"))] {
        let a = UtilityOptions { epochs: 1, size: 32, width: 2, ..options(&real, &run, &out, &stems_file) };
        let e = format!("{:#}", super::run(&a, DeviceChoice::Cpu).unwrap_err());
        assert!(e.contains("no such directory") && (e.contains("no-real") || e.contains("no-run")), "{e}");
        assert!(out.join("report.json").exists(), "{e}: the earlier report was removed");
    }
    // A run too small for the share asked fails and leaves no half-fetched samples.
    let a = UtilityOptions { mix: Mix::Add(50.0), epochs: 1, size: 32, width: 2, ..options(&real, &run, &out, &stems_file) };
    let e = format!("{:#}", super::run(&a, DeviceChoice::Cpu).unwrap_err());
    assert!(e.contains("fewer than"), "{e}");
    assert!(!out.join(".synthetic.partial").exists(), "{e}");

    std::fs::write(&stems_file, "no-such-stem\n").unwrap();
    let a = UtilityOptions { epochs: 1, size: 32, width: 2, ..options(&real, &run, &out, &stems_file) };
    let e = format!("{:#}", super::run(&a, DeviceChoice::Cpu).unwrap_err());
    assert!(e.contains("no-such-stem") && e.contains("test_stems.txt"), "{e}");
    for f in ["report.json", "report.md", "iou.png"] {
        assert!(!out.join(f).exists(), "the failed run left the earlier run's {f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run whose models trained on a test stem is refused, naming the model, its
/// test_stems.txt and the stem; a model without test_stems.txt is refused too; a run
/// without run.json is evaluated but the report says the check was not possible.
#[test]
fn eval_utility_refuses_test_stems_the_models_trained_on() {
    let dir = std::env::temp_dir().join(format!("labelgen-eval-leaks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (labels, images, run) = (dir.join("ddpm"), dir.join("spade"), dir.join("run"));
    for d in [&labels, &images, &run] {
        std::fs::create_dir_all(d).unwrap();
    }
    for d in [&labels, &images] {
        std::fs::write(d.join("model.json"), "{}").unwrap();
    }
    let spec = shared::spec::RunSpec::parse(
        &format!(
            "[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"{}\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n[pipeline.labels]\nmodel = \"{}\"\n[pipeline.images]\nmodel = \"{}\"\n",
            dir.display(),
            labels.display(),
            images.display()
        ),
        "test",
    )
    .unwrap();
    std::fs::write(run.join("run.json"), serde_json::to_vec(&serde_json::json!({ "run_id": "run", "spec": spec })).unwrap()).unwrap();
    let store = shared::storage::Store::open(run.to_str().unwrap()).unwrap();
    let test: Vec<String> = ["t1", "t2", "t3"].iter().map(|s| s.to_string()).collect();
    std::fs::write(labels.join("test_stems.txt"), "t1\nt2\nt3\nt4\n").unwrap();
    std::fs::write(images.join("test_stems.txt"), "t1\nt3\n").unwrap();
    let e = format!("{:#}", super::leaks::check(&store, &test).unwrap_err());
    assert!(e.contains("pipeline.images.model") && e.contains("spade") && e.contains("trained on 1 of the 3 test stems (t2)") && e.contains("test_stems.txt"), "{e}");
    std::fs::write(images.join("test_stems.txt"), "t3\nt2\nt1\n").unwrap();
    let ok = super::leaks::check(&store, &test).unwrap();
    assert!(ok.contains("held out by") && ok.contains("ddpm") && ok.contains("spade"), "{ok}");
    std::fs::remove_file(labels.join("test_stems.txt")).unwrap();
    let e = format!("{:#}", super::leaks::check(&store, &test).unwrap_err());
    assert!(e.contains("pipeline.labels.model") && e.contains("does not exist") && e.contains("--test-fraction"), "{e}");
    // A model directory that is not there (e.g. a relative path read from elsewhere).
    std::fs::remove_file(images.join("model.json")).unwrap();
    std::fs::write(labels.join("test_stems.txt"), "t1\nt2\nt3\n").unwrap();
    let e = format!("{:#}", super::leaks::check(&store, &test).unwrap_err());
    assert!(e.contains("pipeline.images.model") && e.contains("model.json does not exist") && e.contains("current directory"), "{e}");
    std::fs::remove_file(run.join("run.json")).unwrap();
    assert!(super::leaks::check(&store, &test).unwrap().starts_with("not checked"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model `run.json` pins must still be that model: one retrained in place since made a
/// new `test_stems.txt` that says nothing of what the run's model held out.
#[test]
fn eval_utility_refuses_a_model_retrained_since_the_run() {
    let dir = std::env::temp_dir().join(format!("labelgen-eval-pins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (labels, images, run) = (dir.join("ddpm"), dir.join("spade"), dir.join("run"));
    for (from, to) in [("ddpm", &labels), ("spade", &images)] {
        std::fs::create_dir_all(to).unwrap();
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo").join(from);
        for f in std::fs::read_dir(&demo).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
        std::fs::write(to.join("test_stems.txt"), "t1\n").unwrap();
    }
    std::fs::create_dir_all(&run).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let digest = |p: &std::path::Path| rt.block_on(shared::artifact::inspect(p.to_str().unwrap(), None)).unwrap().digest;
    let (ld, id) = (digest(&labels), digest(&images));
    let write_run = |label_pin: &str| {
        let text = format!(
            "[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"{}\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n[pipeline.labels]\nmodel = \"{}\"\nsha256 = \"{label_pin}\"\n[pipeline.images]\nmodel = \"{}\"\nsha256 = \"{id}\"\n",
            dir.display(),
            labels.display(),
            images.display()
        );
        let spec = shared::spec::RunSpec::parse(&text, "test").unwrap();
        std::fs::write(run.join("run.json"), serde_json::to_vec(&serde_json::json!({ "run_id": "run", "spec": spec })).unwrap()).unwrap();
    };
    let store = shared::storage::Store::open(run.to_str().unwrap()).unwrap();
    let test = vec!["t1".to_string()];
    write_run(&ld);
    assert!(super::leaks::check(&store, &test).unwrap().contains("held out by"));
    write_run(&"0".repeat(64));
    let e = format!("{:#}", super::leaks::check(&store, &test).unwrap_err());
    assert!(e.contains("pipeline.labels.model") && e.contains("not the model that made the run") && e.contains(&ld), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_baseline_gets_the_mixed_arms_steps_in_whole_epochs() {
    use super::baseline_epochs;
    // 92 real pairs at batch 8: 12 steps an epoch. Adding 92 (23 steps) for 10 epochs is
    // 230 steps: 19 baseline epochs (228); adding 276 (46 steps): 460 → 38 (456).
    assert_eq!(baseline_epochs(Budget::Steps, 10, 8, 92, 184), 19);
    assert_eq!(baseline_epochs(Budget::Steps, 10, 8, 92, 368), 38);
    // Replacing keeps the size, and so the epochs; --budget epochs never changes them.
    assert_eq!(baseline_epochs(Budget::Steps, 10, 8, 92, 92), 10);
    assert_eq!(baseline_epochs(Budget::Epochs, 10, 8, 92, 368), 10);
    assert_eq!(baseline_epochs(Budget::Steps, 1, 8, 1000, 1), 1);
}
