//! [`evaluate`] with two tiny untrained models (one-hot and gray) on procedural maps.

use std::path::{Path, PathBuf};

use super::*;
use shared::procedural::{generate_labels, ClassShares};
use worker::backend::{Cpu, CpuDevice};
use worker::ddpm::{DdpmMeta, Encoding, UNetConfig};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("labelgen-eval-sampling-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An untrained 8×8 model with `T = 20`, saved at `dir`.
fn save_model(dir: &Path, encoding: Encoding) -> DdpmModel<Cpu> {
    let device = CpuDevice::default();
    let classes = ClassTable::ai_hub();
    let unet = UNetConfig::new(encoding.channels(classes.len()), 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
    let meta = DdpmMeta::untrained(unet, encoding, 20, 8);
    let model = DdpmModel::new(meta.unet.init(&device), meta, device);
    model.save(&dir.display().to_string()).unwrap();
    model
}

fn real_set(dir: &Path) -> PathBuf {
    let real = dir.join("real");
    std::fs::create_dir_all(real.join("labels")).unwrap();
    let classes = ClassTable::ai_hub();
    for i in 0..6 {
        let m = generate_labels(70 + i, 32, &ClassShares::default());
        std::fs::write(real.join(format!("labels/{i:06}.png")), m.to_png(&classes)).unwrap();
    }
    real
}

fn options(dir: &Path, models: &[(&str, &Path)]) -> SamplingOptions {
    SamplingOptions {
        real: real_set(dir),
        models: models.iter().map(|(n, p)| (n.to_string(), p.display().to_string())).collect(),
        samplers: vec![Sampler::Ddim(2), Sampler::Ddim(4), Sampler::Ddpm],
        ddpm_all: false,
        eta: 0.0,
        count: 5,
        batch: 2,
        seed: 3,
        upscale: LabelUpscale::Nearest,
        size: None,
        open_radius_px: 0,
        min_island_px: 32,
        connectivity: Connectivity::Eight,
        precision: Default::default(),
        out: dir.join("out"),
    }
}

#[test]
fn every_model_meets_every_sampler_on_the_same_seeds() {
    let dir = temp_dir("rows");
    let (a, b) = (dir.join("onehot"), dir.join("gray"));
    let onehot = save_model(&a, Encoding::OneHot);
    save_model(&b, Encoding::Gray);
    let opts = options(&dir, &[("ours", &a), ("paper", &b)]);
    let mut calls = Vec::new();
    let rep = evaluate::<Cpu>(&opts, &CpuDevice::default(), &mut |d, t| calls.push((d, t))).unwrap();

    // DDPM runs for the first model only; rows keep the flag order.
    let rows: Vec<(usize, &str, usize)> = rep.rows.iter().map(|r| (r.model, r.sampler.as_str(), r.steps)).collect();
    assert_eq!(rows, vec![(0, "ddim-2", 2), (0, "ddim-4", 4), (0, "ddpm-20", 20), (1, "ddim-2", 2), (1, "ddim-4", 4)]);
    assert_eq!(calls.last(), Some(&(5, 5)));
    assert_eq!((rep.size, rep.real_maps, rep.models[1].encoding.as_str()), (32, 6, "gray"));

    // Row 1 measured exactly the maps the model gives for seeds sample_seed(3, 0..5).
    let classes = ClassTable::ai_hub();
    let stats_opts = StatsOptions { min_island: 32, connectivity: Connectivity::Eight };
    let (real, _) = measure_real(&opts.real, None, &classes, stats_opts).unwrap();
    let mut raw = LabelStats::new(classes.len(), stats_opts);
    let seeds: Vec<u64> = (0..5).map(|i| sample_seed(3, i)).collect();
    for m in onehot.sample(&seeds, &SamplerConfig::ddim(4, 0.0)) {
        raw.add(&m.resize_nearest(32, 32));
    }
    let d = compare(&real, &raw);
    assert_eq!((rep.rows[1].raw.share_tv, rep.rows[1].raw.adjacency_tv), (d.share_tv, d.adjacency_tv));

    for r in &rep.rows {
        // Islands under 32 output px (2 model pixels) are what the cleanup removes.
        assert_eq!(r.cleaned.islands_per_map, 0.0, "{r:?}");
        assert!(r.raw.islands_per_map >= r.cleaned.islands_per_map);
        // Nearest upscale of 8 → 32: every border on the 4-px grid.
        for s in [r.raw.staircase, r.cleaned.staircase].into_iter().flatten() {
            assert_eq!(s, 1.0, "{r:?}");
        }
        assert!((0.0..=100.0).contains(&r.cleanup_changed_percent));
    }

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(opts.out.join("sampling.json")).unwrap()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 5);
    assert_eq!(json["models"][0]["name"], "ours");
    let md = std::fs::read_to_string(opts.out.join("sampling.md")).unwrap();
    assert_eq!(md, rep.table);
    assert!(md.contains("| paper (gray + eps, linear) | ddim-4 |"), "{md}");
    for g in &rep.grids {
        assert!(g.exists(), "{}", g.display());
    }
    assert!(opts.out.join("grids/ours-ddpm-20.png").exists());
}

#[test]
fn bad_settings_are_refused_before_sampling_and_name_the_model() {
    let dir = temp_dir("errors");
    let (a, b) = (dir.join("onehot"), dir.join("gray"));
    save_model(&a, Encoding::OneHot);
    save_model(&b, Encoding::Gray);
    let dev = CpuDevice::default();

    let mut o = options(&dir, &[("x", &a), ("x", &b)]);
    let e = evaluate::<Cpu>(&o, &dev, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("the name \"x\" is given twice"), "{e}");

    o = options(&dir, &[("ours", &a), ("paper", &b)]);
    o.samplers = vec![Sampler::Ddim(50)];
    let e = format!("{:#}", evaluate::<Cpu>(&o, &dev, &mut |_, _| {}).unwrap_err());
    assert!(e.contains(&format!("--model ours={} with --samplers ddim-50", a.display())) && e.contains("20 timesteps"), "{e}");

    o = options(&dir, &[("ours", &a), ("paper", &b)]);
    o.upscale = LabelUpscale::Smooth;
    let e = format!("{:#}", evaluate::<Cpu>(&o, &dev, &mut |_, _| {}).unwrap_err());
    assert!(e.contains("--model paper=") && e.contains("--upscale smooth") && e.contains("smooth needs a onehot"), "{e}");

    o = options(&dir, &[("gone", &dir.join("missing"))]);
    let e = format!("{:#}", evaluate::<Cpu>(&o, &dev, &mut |_, _| {}).unwrap_err());
    assert!(e.contains("--model gone="), "{e}");
    assert!(!o.out.join("sampling.json").exists(), "nothing written on failure");
}

/// Models trained on a set with its own classes are measured against that set read with
/// their table; a model of another table beside them is refused, naming both.
#[test]
fn the_real_set_is_read_with_the_models_class_table() {
    let dir = temp_dir("own-classes");
    let table = "[classes]\nignore_code = 255\n\
        [[classes.classes]]\nname = \"water\"\ncode = 1\ncolor = [0, 0, 255]\n\
        [[classes.classes]]\nname = \"land\"\ncode = 2\ncolor = [0, 255, 0]\n\
        [[classes.classes]]\nname = \"town\"\ncode = 3\ncolor = [255, 0, 0]\n";
    let classes = ClassTable::from_toml(table, "t.toml").unwrap();
    let device = CpuDevice::default();
    let unet = UNetConfig::new(Encoding::OneHot.channels(classes.len()), 8, vec![1, 2], 1, vec![], 0.0, 8).with_groups(4);
    let meta = DdpmMeta { classes: classes.clone(), ..DdpmMeta::untrained(unet, Encoding::OneHot, 20, 8) };
    let own = dir.join("own");
    DdpmModel::<Cpu>::new(meta.unet.init(&device), meta, device).save(&own.display().to_string()).unwrap();
    let hub = dir.join("hub");
    save_model(&hub, Encoding::OneHot);

    let mut o = options(&dir, &[("own", &own)]);
    o.samplers = vec![Sampler::Ddim(2)];
    // Real maps in the table's codes 1..3: read with the AI Hub table, they would be refused.
    let _ = std::fs::remove_dir_all(o.real.join("labels"));
    std::fs::create_dir_all(o.real.join("labels")).unwrap();
    for i in 0..4u32 {
        let mut m = LabelMap::new(32, 32, 0);
        for y in 0..32 {
            for x in 0..32 {
                m.set(x, y, ((x / 8 + y / 8 + i) % 3) as u8);
            }
        }
        std::fs::write(o.real.join(format!("labels/{i:06}.png")), m.to_png(&classes)).unwrap();
    }
    let rep = evaluate::<Cpu>(&o, &CpuDevice::default(), &mut |_, _| {}).unwrap();
    assert_eq!((rep.real_maps, rep.rows.len()), (4, 1));

    o.models.push(("hub".into(), hub.display().to_string()));
    let e = format!("{:#}", evaluate::<Cpu>(&o, &CpuDevice::default(), &mut |_, _| {}).unwrap_err());
    assert!(e.contains("--model hub=") && e.contains("[1, 2, 3]") && e.contains("--model own="), "{e}");
}
