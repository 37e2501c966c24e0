"""Reads finished runs the way training teams do, and checks what each reader sees.

Run by the integration test `readers::python_readers_load_a_run_as_written`
(tests/integration/readers.rs), which makes the two runs first:

    python3 tests/python/read_dataset.py --webdataset RUN_DIR --png RUN_DIR \
        --webdataset-s3 s3://BUCKET/PREFIX/RUN_ID --readme README.md

The code that reads is README's own: every ```python block of its "Reading the dataset"
section is executed (its `RUN = "…"` line pointed at the run under test), so the README
snippets cannot rot. Each block starts with a comment naming its reader; the checks below
then look at what the block defined (`ds`, `hf`, `df`, `table`, `image`/`label`). The truth they
compare against is manifest.jsonl read with Python's own json module, whose integers are
exact.
"""

import argparse
import hashlib
import io
import json
import os
import re
import shlex
import sys
import tempfile

import numpy as np
from PIL import Image

SECTION = "## Reading the dataset"
READERS = ["# webdataset", "# Hugging Face datasets", "# pandas", "# Parquet side tables", "# PNG run"]


def snippets(readme):
    text = open(readme, encoding="utf-8").read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    found = [b.splitlines()[0].strip() for b in blocks]
    if len(found) != len(READERS) or not all(f.startswith(r) for f, r in zip(found, READERS)):
        sys.exit(f"{readme}: expected python blocks {READERS} in {SECTION!r}, found {found}")
    return blocks


def run_snippet(code, run_dir):
    pointed, n = re.subn(r'^RUN = ".*"', f"RUN = {run_dir!r}", code, flags=re.M)
    if n != 1:
        sys.exit(f"snippet {code.splitlines()[0]!r}: expected one line `RUN = \"…\"`, found {n}")
    env = {}
    exec(compile(pointed, code.splitlines()[0], "exec"), env)
    return env


def truth(run_dir):
    """Keys, seeds and sizes from manifest.jsonl through Python's json (exact integers)."""
    lines = [json.loads(l) for l in open(os.path.join(run_dir, "manifest.jsonl"), encoding="utf-8")]
    for l in lines:
        # The loss-free format: seeds and keys are strings in the JSON itself.
        assert isinstance(l["seed"], str) and isinstance(l["key"], str), l
    manifest = json.load(open(os.path.join(run_dir, "manifest.json"), encoding="utf-8"))
    table = manifest["class_table"]
    codes = {c["code"] for c in table["classes"]}
    assert len(lines) == manifest["count"], (len(lines), manifest["count"])
    return lines, manifest, codes | {table["ignore_code"]}


def check_label(where, label, size, codes):
    label = np.asarray(label)
    assert label.dtype == np.uint8 and label.ndim == 2, f"{where}: label is {label.dtype} {label.shape}, expected H×W uint8"
    assert label.shape == (size[1], size[0]), f"{where}: label {label.shape} vs image {size}"
    bad = set(np.unique(label).tolist()) - codes
    assert not bad, f"{where}: values {sorted(bad)} are not class codes {sorted(codes)}"


def check_webdataset(env, lines, codes):
    seen = []
    for key, image, label, meta in env["ds"]:
        assert image.mode == "RGB", f"{key}: image mode {image.mode}"
        check_label(key, label, image.size, codes)
        seen.append((key, int(meta["seed"]), image.size))
    want = [(l["key"], int(l["seed"]), (l["width"], l["height"])) for l in lines]
    assert seen == want, f"webdataset read {len(seen)} samples; first differences: {[(a, b) for a, b in zip(seen, want) if a != b][:3]}"
    print(f"webdataset: {len(seen)} samples, keys, seeds and labels as written")


def check_hf(env, lines, codes):
    hf = env["hf"]
    assert len(hf) == len(lines), (len(hf), len(lines))
    got = sorted((row["__key__"], int(row["json"]["seed"])) for row in hf)
    assert got == sorted((l["key"], int(l["seed"])) for l in lines), "keys or seeds differ"
    for row in hf:
        image, label = row["png"], row["label.png"]
        assert image.mode == "RGB", image.mode
        check_label(row["__key__"], label, image.size, codes)
    print(f"datasets.load_dataset('webdataset'): {len(hf)} rows, keys, seeds and labels as written")


def check_pandas(env, lines):
    df = env["df"]
    assert len(df) == len(lines)
    assert df["key"].tolist() == [l["key"] for l in lines], df["key"].tolist()[:3]
    assert df["seed"].map(int).tolist() == [int(l["seed"]) for l in lines], "seeds differ"
    print(f"pandas.read_json(lines=True): {len(df)} rows, keys strings, seeds exact")


def check_parquet(env, lines, manifest):
    table = env["table"]
    assert len(table) == len(lines), (len(table), len(lines))
    assert table["key"].tolist() == [l["key"] for l in lines]
    assert str(table["seed"].dtype) == "uint64", table["seed"].dtype
    assert [int(s) for s in table["seed"]] == [int(l["seed"]) for l in lines], "seeds differ"
    # shared::share_column's rule: lowercased, every character but ASCII a-z/0-9 as "_".
    column = lambda name: "share_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in name.lower())
    shares = [column(c["name"]) for c in manifest["class_table"]["classes"]]
    sums = table[shares].sum(axis=1)
    assert ((sums - 1.0).abs() < 1e-9).all(), sums.tolist()
    for l, (_, row) in zip(lines, table.iterrows()):
        total = sum(l["class_pixels"].values())
        assert abs(row["share_road"] - l["class_pixels"]["road"] / total) < 1e-12, l["key"]
    print(f"pandas.read_parquet on the side tables: {len(table)} rows, seeds uint64 exact, shares sum to 1")


def check_png(env, run_dir, lines, codes):
    df = env["df"]
    assert df["key"].tolist() == [l["key"] for l in lines]
    image, label = env["image"], env["label"]
    assert image.mode == "RGB"
    check_label(df["key"][0], label, image.size, codes)
    for l in lines:
        im = Image.open(os.path.join(run_dir, l["image"]))
        check_label(l["key"], Image.open(os.path.join(run_dir, l["label"])), im.size, codes)
    print(f"PNG run through manifest.jsonl: {len(lines)} pairs, labels as written")


def check_json_loader(run_dir, lines):
    """pyarrow's JSON reader (what load_dataset("json") uses) keeps the seeds exact."""
    from datasets import load_dataset

    rows = load_dataset("json", data_files=os.path.join(run_dir, "manifest.jsonl"), split="train")
    assert [int(s) for s in rows["seed"]] == [int(l["seed"]) for l in lines]
    assert rows["key"] == [l["key"] for l in lines]
    print(f"datasets.load_dataset('json') on manifest.jsonl: {len(rows)} rows, seeds exact")


def check_s3(url):
    """A run in a bucket, streamed by webdataset through a `pipe:` command per tar (README
    suggests `aws s3 cp`; the test machine has boto3 instead), the brace pattern from
    manifest.json expanded inside the command as webdataset does for any URL."""
    import webdataset as wds

    cat = " ".join(shlex.quote(p) for p in [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "s3cat.py")])
    manifest = json.loads(os.popen(f"{cat} {url}/manifest.json").read())
    lines = [json.loads(l) for l in os.popen(f"{cat} {url}/manifest.jsonl").read().splitlines()]
    urls = "::".join(f"pipe:{cat} {url}/{p}" for p in manifest["dataset"]["pattern"].split("::"))
    ds = wds.WebDataset(urls, shardshuffle=False).to_tuple("__key__", "json")
    seen = [(key, json.loads(meta)["seed"]) for key, meta in ds]
    assert seen == [(l["key"], l["seed"]) for l in lines], f"{len(seen)} samples from S3"
    print(f"webdataset from S3 ({url}/{manifest['dataset']['pattern']}): {len(seen)} samples as written")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--webdataset", required=True, help="a finished run with output.format = webdataset")
    ap.add_argument("--png", required=True, help="a finished run with output.format = png")
    ap.add_argument("--webdataset-s3", help="a finished WebDataset run in a bucket: s3://BUCKET/PREFIX/RUN_ID (AWS_* variables name the server)")
    ap.add_argument("--readme", required=True)
    a = ap.parse_args()
    # No network and no cache outside the test's directories.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="labelgen-hf-"))
    wds_code, hf_code, pandas_code, parquet_code, png_code = snippets(a.readme)

    lines, manifest, codes = truth(a.webdataset)
    assert manifest["dataset"]["pattern"].startswith("dataset/{"), manifest["dataset"]
    with open(os.path.join(a.webdataset, manifest["dataset"]["shards_jsonl"]), "rb") as f:
        listing = f.read()
    assert hashlib.sha256(listing).hexdigest() == manifest["dataset"]["shards_jsonl_sha256"]
    shards = [json.loads(l) for l in listing.decode().splitlines()]
    assert len(shards) == manifest["dataset"]["count"] == manifest["shards"], (len(shards), manifest["dataset"])
    assert sum(s["samples"] for s in shards) == len(lines)
    for s in shards:
        assert os.path.getsize(os.path.join(a.webdataset, s["path"])) == s["bytes"], s
    check_webdataset(run_snippet(wds_code, a.webdataset), lines, codes)
    check_hf(run_snippet(hf_code, a.webdataset), lines, codes)
    check_pandas(run_snippet(pandas_code, a.webdataset), lines)
    check_json_loader(a.webdataset, lines)
    check_parquet(run_snippet(parquet_code, a.webdataset), lines, manifest)

    if a.webdataset_s3:
        check_s3(a.webdataset_s3)

    png_lines, _, png_codes = truth(a.png)
    check_png(run_snippet(png_code, a.png), a.png, png_lines, png_codes)
    print("all readers agree with manifest.jsonl")


if __name__ == "__main__":
    main()
