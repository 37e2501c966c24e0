#!/usr/bin/env python3
"""Offline checks of labelgen's Kubernetes manifests (called by ci/k8s-check.sh).

1. Renders every kustomization under k8s/ with `kubectl kustomize` (or `kustomize
   build`) when one is installed, and always with the small renderer below, which covers
   the subset the manifests use (resources, namespace, configMap/secretGenerator, images,
   inline JSON 6902 patches). With both, their outputs must agree.
2. Validates every rendered object offline: core kinds against the Kubernetes JSON
   schemas shipped by kubernetes-validate (strict: unknown fields are errors), KEDA's
   ScaledObject and TriggerAuthentication and the Prometheus Operator's PodMonitor and
   PrometheusRule against the minimal schemas below; every labelgen_* metric an alert
   names must be one shared/src/metrics.rs registers.
3. Cross-checks what schemas cannot see: the ScaledObject reads a metric labelgen
   exports from a Service defined here, run specs copied into k8s/ equal their configs/ originals and load, the
   Indexed Job's completions equal the spec's shard count (or LABELGEN_TASKS), it replaces only failed
   pods (podReplacementPolicy: Failed) and has a deadline (activeDeadlineSeconds), terminationGracePeriodSeconds leaves room after
   the worker's --grace-seconds, every pod is under an egress NetworkPolicy and no egress
   rule reaches the cloud metadata address.

Writes the rendered manifests to OUT_DIR/<name>.yaml for checkov. Exit 1 on any error.
"""

import base64
import copy
import ipaddress
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib

import yaml

# The minimum Kubernetes version labelgen supports (podFailurePolicy and
# backoffLimitPerIndex are on by default from 1.29): every object must validate against
# its schemas, so a field newer than 1.29 fails the check.
K8S_VERSION = "1.29.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUSTOMIZATIONS = [
    "k8s/base",
    "k8s/overlays/minio-local",
    "k8s/overlays/gpu-cluster",
    "k8s/static",
    "k8s/static/finalize",
    "k8s/overlays/static-model-cache",
    "k8s/monitoring",
]
# a kustomization applied after another whose NetworkPolicies cover its pods
POLICIES_FROM = {"k8s/static/finalize": "k8s/static"}
# kinds kustomize leaves without a namespace
CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
METADATA_ADDRESSES = ["169.254.169.254", "169.254.170.2", "fd00:ec2::254"]
# run specs copied into k8s/ (kustomize reads no file outside its directory)
SPEC_COPIES = {
    "k8s/overlays/minio-local/run.toml": "configs/minio.toml",
    "k8s/overlays/gpu-cluster/run.toml": "configs/aerial-512.toml",
    "k8s/static/run.toml": "configs/aerial-512.toml",
}
CONFIGS = ["configs/local.toml", "configs/minio.toml", "configs/aerial-512.toml"]

errors = []


def error(msg):
    errors.append(msg)
    print(f"  ERROR {msg}")


# ---------------------------------------------------------------------------- rendering

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def json6902(doc, ops):
    def walk(path):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        return parent, parts[-1]

    for op in ops:
        parent, key = walk(op["path"])
        if isinstance(parent, list):
            idx = len(parent) if key == "-" else int(key)
            if op["op"] == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del parent[idx]
            else:
                raise ValueError(f"unsupported op {op['op']}")
        else:
            if op["op"] in ("add", "replace"):
                if op["op"] == "replace" and key not in parent:
                    raise KeyError(f"replace of missing path {op['path']}")
                parent[key] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del parent[key]
            else:
                raise ValueError(f"unsupported op {op['op']}")


def generated(kind, spec, base_dir, options):
    data = {}
    for lit in spec.get("literals", []):
        k, v = lit.split("=", 1)
        data[k] = v
    for f in spec.get("files", []):
        k, _, p = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
        with open(os.path.join(base_dir, p or f)) as fh:
            data[k] = fh.read()
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "Secret":
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    if not options.get("disableNameSuffixHash"):
        raise ValueError("the fallback renderer needs generatorOptions.disableNameSuffixHash: true")
    return obj


def render_py(kdir):
    """Renders the kustomization subset labelgen uses; returns a list of objects."""
    kdir = os.path.join(ROOT, kdir)
    k = load_docs(os.path.join(kdir, "kustomization.yaml"))[0]
    known = {"apiVersion", "kind", "namespace", "resources", "generatorOptions",
             "configMapGenerator", "secretGenerator", "images", "patches"}
    unknown = set(k) - known
    if unknown:
        raise ValueError(f"{kdir}: the fallback renderer does not support {sorted(unknown)}")
    objs = []
    for r in k.get("resources", []):
        p = os.path.join(kdir, r)
        objs += render_py(os.path.relpath(p, ROOT)) if os.path.isdir(p) else load_docs(p)
    options = k.get("generatorOptions", {})
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for spec in k.get(key, []):
            new = generated(kind, spec, kdir, options)
            behavior = spec.get("behavior", "create")
            old = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == spec["name"]]
            if behavior == "create":
                if old:
                    raise ValueError(f"{kdir}: {kind} {spec['name']} exists; use behavior merge/replace")
                objs.append(new)
            elif not old:
                raise ValueError(f"{kdir}: {kind} {spec['name']} to {behavior} does not exist")
            elif behavior == "merge":
                old[0].setdefault("data", {}).update(new["data"])
            else:
                old[0]["data"] = new["data"]
    ns = k.get("namespace")
    if ns:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = ns
    for p in k.get("patches", []):
        t = p["target"]
        hits = [o for o in objs if o["kind"] == t["kind"] and o["metadata"]["name"] == t["name"]
                and ("group" not in t or o["apiVersion"].split("/")[0] == t["group"])]
        if len(hits) != 1:
            raise ValueError(f"{kdir}: patch target {t} matched {len(hits)} objects")
        json6902(hits[0], yaml.safe_load(p["patch"]))
    for img in k.get("images", []):
        for o in objs:
            pod = o.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                ref = c["image"]
                name, tag = (ref.rsplit(":", 1) + [None])[:2] if ":" in ref.split("/")[-1] else (ref, None)
                if name != img["name"]:
                    continue
                c["image"] = img.get("newName", name)
                if img.get("digest"):
                    c["image"] += "@" + img["digest"]
                elif img.get("newTag") or tag:
                    c["image"] += ":" + (img.get("newTag") or tag)
    return objs


def render_tool(kdir):
    path = os.path.join(ROOT, kdir)
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", path]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", path]
    else:
        return None
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def key(o):
    return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


# --------------------------------------------------------------------------- validation

# Minimal schemas for KEDA's CRDs (keda.sh/v1alpha1): the fields labelgen uses, with
# their types; unknown fields are errors, as in the strict Kubernetes schemas.
_META = {"type": "object", "required": ["name"],
         "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
CRD_SCHEMAS = {
    "ScaledObject": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"}, "metadata": _META,
            "spec": {
                "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                       "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                                      "apiVersion": {"type": "string"},
                                                      "envSourceContainerName": {"type": "string"}}},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {"type": "object"},
                    "advanced": {"type": "object", "additionalProperties": False, "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False,
                                                          "properties": {"name": {"type": "string"},
                                                                         "behavior": {"type": "object"}}}}},
                    "triggers": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                        "properties": {"type": {"enum": ["redis", "metrics-api", "prometheus", "cpu", "memory", "cron"]},
                                       "name": {"type": "string"}, "metadata": _STRMAP,
                                       "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                       "useCachedMetrics": {"type": "boolean"},
                                       "authenticationRef": {"type": "object", "required": ["name"],
                                                             "properties": {"name": {"type": "string"},
                                                                            "kind": {"type": "string"}}}}}}}}}},
    "TriggerAuthentication": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False, "properties": {
                "secretTargetRef": {"type": "array", "items": {
                    "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": False,
                    "properties": {"parameter": {"type": "string"}, "name": {"type": "string"},
                                   "key": {"type": "string"}}}},
                "env": {"type": "array"}, "podIdentity": {"type": "object"}}}}},
}
# Minimal schemas for the Prometheus Operator's CRDs (monitoring.coreos.com/v1).
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
CRD_SCHEMAS["PodMonitor"] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"}, "metadata": _META,
        "spec": {"type": "object", "required": ["selector", "podMetricsEndpoints"], "additionalProperties": False,
                 "properties": {
                     "selector": {"type": "object", "additionalProperties": False,
                                  "properties": {"matchLabels": _LABELS, "matchExpressions": {"type": "array"}}},
                     "namespaceSelector": {"type": "object"},
                     "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["port"], "additionalProperties": False,
                         "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                        "scrapeTimeout": {"type": "string"}}}}}}}}
CRD_SCHEMAS["PrometheusRule"] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"}, "metadata": _META,
        "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "interval": {"type": "string"}, "rules": {
                    "type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["alert", "expr"], "additionalProperties": False,
                        "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                       "expr": {"type": "string"},
                                       "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                       "labels": _LABELS, "annotations": _LABELS}}}}}}}}}}


def exported_metrics():
    """The labelgen_* series shared/src/metrics.rs registers, each with the suffixes its
    type gets in the exposition: counters `_total`, histograms `_bucket`/`_sum`/`_count`,
    gauges none."""
    import re

    src = open(os.path.join(ROOT, "shared/src/metrics.rs"), encoding="utf-8").read()
    struct = src[src.index("pub struct Metrics {"):]
    struct = struct[:struct.index("\n}\n")]
    field_type = dict(re.findall(r"pub (\w+): ([^\n]+),", struct))
    registered = re.findall(r'reg\.register\("([a-z_]+)", "[^"]*", (?:m\.)?(\w+)', src)
    registered += re.findall(r'\("([a-z_]+)", "[^"]*", &m\.(\w+)\)', src)  # the run counters
    names = set()
    for name, field in registered:
        kind = field_type.get(field, "Gauge")  # `info`, a local gauge family
        base = f"labelgen_{name}"
        if "Histogram" in kind:
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        elif "Counter" in kind:
            names.add(f"{base}_total")
        else:
            names.add(base)
    return names


def check_rule_metrics(where, o):
    import re

    exported = exported_metrics()
    for g in o["spec"]["groups"]:
        for r in g["rules"]:
            for name in set(re.findall(r"\blabelgen_[a-z_]+", r["expr"])):
                if name not in exported:
                    error(f"{where}: alert {r['alert']} reads {name}, which labelgen does not export")


# Required trigger metadata (KEDA refuses the ScaledObject without them).
TRIGGER_REQUIRED = {"redis": ["listName", "listLength"], "metrics-api": ["url", "valueLocation", "targetValue"]}


def validate(name, objs):
    import jsonschema
    import kubernetes_validate

    for o in objs:
        where = f"{name}: {o['kind']}/{o['metadata']['name']}"
        if o["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")):
            schema = CRD_SCHEMAS.get(o["kind"])
            if not schema:
                error(f"{where}: no schema for custom kind {o['apiVersion']} {o['kind']}")
                continue
            for e in jsonschema.Draft202012Validator(schema).iter_errors(o):
                error(f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
            if o["kind"] == "PrometheusRule":
                check_rule_metrics(where, o)
            for t in o.get("spec", {}).get("triggers", []):
                for req in TRIGGER_REQUIRED.get(t["type"], []):
                    if req not in t["metadata"]:
                        error(f"{where}: trigger {t['type']} needs metadata.{req}")
            continue
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            error(f"{where}: {'/'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            error(f"{where}: no Kubernetes {K8S_VERSION} schema for {o['apiVersion']} {o['kind']}")


# ------------------------------------------------------------------------ cross-checks

def find(objs, kind, name):
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return hits[0] if hits else None


def spec_shards(path):
    with open(path, "rb") as f:
        run = tomllib.load(f)["run"]
    return math.ceil(run["count"] / run["shard_size"])


def check_specs():
    for copy_path, orig in SPEC_COPIES.items():
        with open(os.path.join(ROOT, copy_path)) as a, open(os.path.join(ROOT, orig)) as b:
            if a.read() != b.read():
                error(f"{copy_path} differs from {orig} (cp {orig} {copy_path})")
    worker = os.path.join(ROOT, "target/debug/worker")
    for path in CONFIGS + list(SPEC_COPIES):
        full = os.path.join(ROOT, path)
        if os.access(worker, os.X_OK):
            # run-shard parses and validates the spec, then refuses the shard number:
            # that refusal is the proof the spec loaded.
            out = subprocess.run([worker, "run-shard", full, "--shard", "999999999"],
                                 capture_output=True, text=True)
            msg = (out.stdout + out.stderr).strip()
            if "the run has" in msg and "shards" in msg:
                print(f"  ok   {path}: {msg.splitlines()[-1].split(': ', 1)[-1]}")
            else:
                error(f"{path}: the worker did not load it: {msg}")
        else:
            with open(full, "rb") as f:
                tomllib.load(f)
            print(f"  ok   {path}: TOML parses (target/debug/worker absent: spec validation skipped)")


def check_cross(name, objs):
    so = find(objs, "ScaledObject", "labelgen-worker")
    if so:
        # Every trigger reads a metric labelgen exports, from a Service these manifests define.
        exported = exported_metrics()
        services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
        for t in so["spec"]["triggers"]:
            if t["type"] != "metrics-api":
                error(f"{name}: ScaledObject trigger {t['type']}: expected metrics-api on labelgen_queue_work (one metric over every run)")
                continue
            metric = t["metadata"]["valueLocation"].split("{")[0]
            host = t["metadata"]["url"].split("//", 1)[-1].split(".", 1)[0].split(":", 1)[0]
            if metric not in exported:
                error(f"{name}: ScaledObject reads {metric}, which labelgen does not export")
            elif host not in services:
                error(f"{name}: ScaledObject reads {t['metadata']['url']}, but no Service {host} is defined")
            else:
                print(f"  ok   {name}: ScaledObject reads {metric} from Service {host}")
    dep = find(objs, "Deployment", "labelgen-worker")
    if dep:
        pod = dep["spec"]["template"]["spec"]
        grace = 25.0
        for a in pod["containers"][0].get("args", []):
            if a.startswith("--grace-seconds="):
                grace = float(a.split("=", 1)[1])
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if tgps < grace + 10:
            error(f"{name}: terminationGracePeriodSeconds {tgps} leaves under 10 s after --grace-seconds {grace}")
    job = find(objs, "Job", "labelgen-shards")
    if job:
        spec_path = os.path.join(ROOT, "k8s/static/run.toml")
        want = spec_shards(spec_path)
        completions = job["spec"]["completions"]
        env = {e["name"]: e.get("value") for c in job["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
        tasks = env.get("LABELGEN_TASKS")
        if tasks is not None:
            # Fewer completions than shards: each pod runs every TASKS-th shard.
            if str(completions) != str(tasks) or int(tasks) > want:
                error(f"{name}: LABELGEN_TASKS {tasks} must equal completions {completions} and be at most {want} shards")
            else:
                print(f"  ok   {name}: Indexed Job of {completions} tasks covers {want} shards (LABELGEN_TASKS)")
        elif completions != want:
            error(f"{name}: Indexed Job completions {completions} != {want} shards in run.toml (or set LABELGEN_TASKS = completions)")
        else:
            print(f"  ok   {name}: Indexed Job completions = {want} shards")
        # Static shards have no leases: only the Job's deadline notices a pod that hangs.
        if not job["spec"].get("activeDeadlineSeconds"):
            error(f"{name}: the Indexed Job needs activeDeadlineSeconds (nothing else stops a hung shard)")


def check_egress(name, objs, policies):
    """Every pod is selected by a NetworkPolicy with Egress, and no egress rule of those
    reaches the cloud metadata service."""
    egress = [p for p in policies if "Egress" in p["spec"].get("policyTypes", [])]
    for p in egress:
        for rule in p["spec"].get("egress", []):
            for peer in rule.get("to", []) or [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]:
                block = peer.get("ipBlock")
                if not block:
                    continue
                net = ipaddress.ip_network(block["cidr"])
                excepts = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for addr in map(ipaddress.ip_address, METADATA_ADDRESSES):
                    if addr.version == net.version and addr in net and not any(addr.version == e.version and addr in e for e in excepts):
                        error(f"{name}: NetworkPolicy {p['metadata']['name']} lets pods reach the metadata address {addr}")
    pods = 0
    for o in objs:
        if o["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        labels = o["spec"]["template"]["metadata"].get("labels", {})
        selected = [p for p in egress if all(labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())]
        if not selected:
            error(f"{name}: {o['kind']} {o['metadata']['name']}: no NetworkPolicy limits its egress")
        # A pod that may connect anywhere must resolve names (Services, the object store).
        rules = [r for p in selected for r in p["spec"].get("egress", [])]
        dns = any(port.get("port") == 53 and port.get("protocol", "TCP") == "UDP" for r in rules for port in r.get("ports", []))
        if rules and not dns:
            error(f"{name}: {o['kind']} {o['metadata']['name']}: its egress policies allow connections but not DNS (UDP 53), so no Service name resolves")
        pods += 1
        if o["kind"] == "Job" and o["spec"].get("completionMode") == "Indexed" and o["spec"].get("podReplacementPolicy") != "Failed":
            error(f"{name}: Indexed Job {o['metadata']['name']}: podReplacementPolicy must be Failed (a replacement must not run beside a terminating pod)")
    if pods:
        print(f"  ok   {name}: egress limited for {pods} workload(s); metadata address blocked")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tool = "kubectl kustomize" if shutil.which("kubectl") else ("kustomize build" if shutil.which("kustomize") else None)
    print(f"== render + validate (Kubernetes {K8S_VERSION} schemas; renderer: {tool or 'built-in only'})")
    rendered = {}
    for kdir in KUSTOMIZATIONS:
        name = kdir.replace("k8s/", "").replace("/", "-")
        before = len(errors)
        try:
            objs = render_py(kdir)
            ref = render_tool(kdir)
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            error(f"{kdir}: render failed: {e}")
            continue
        if ref is not None:
            mine = {key(o): o for o in objs}
            theirs = {key(o): o for o in ref}
            if set(mine) != set(theirs):
                error(f"{kdir}: built-in renderer and {tool} disagree on objects: "
                      f"{sorted(set(mine) ^ set(theirs))}")
            for k in set(mine) & set(theirs):
                if mine[k] != theirs[k]:
                    error(f"{kdir}: built-in renderer and {tool} disagree on {k}")
            objs = ref
        validate(kdir, objs)
        check_cross(kdir, objs)
        rendered[kdir] = objs
        policies = [o for o in objs + rendered.get(POLICIES_FROM.get(kdir), []) if o["kind"] == "NetworkPolicy"]
        check_egress(kdir, objs, policies)
        with open(os.path.join(out_dir, f"{name}.yaml"), "w") as f:
            yaml.safe_dump_all(objs, f, sort_keys=False)
        kinds = sorted({o["kind"] for o in objs})
        if len(errors) == before:
            print(f"  ok   {kdir}: {len(objs)} objects valid ({', '.join(kinds)})")
    print("== run specs")
    check_specs()
    if errors:
        print(f"{len(errors)} error(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
