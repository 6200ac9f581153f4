#!/usr/bin/env python3
"""deploy/kubernetes/ and deploy/haproxy/, checked without a cluster or a load balancer running:

- every manifest against the Kubernetes object model of the official Python client
  (python3-kubernetes): its models know each field's name and type, but its deserializer is lax
  (it drops unknown fields, turns "5" or true into 5, knows no enum), so the walk here is strict:
  an unknown or misspelled field, a string where an integer belongs, a number where a string
  belongs (annotations, labels), a value outside the enums of the fields these files use, a
  malformed quantity or name; then the client's own deserializer, which enforces required fields;
- what no schema knows, across the files: selectors that select the pods, probe ports and the
  Service's targetPort resolving to the container port that server.listen in the ConfigMap's
  connector.yaml names, every ${VAR} of that configuration set in the container's environment,
  every secretKeyRef naming a key the Secret has, the config file mounted where --config reads
  it, state.path on a writable emptyDir, a shared state store when there is more than one
  replica, the image's uid, Prometheus' annotations, the probes' paths, the drain against
  terminationGracePeriodSeconds, the security context and the resources;
- the ConfigMap's connector.yaml through `interactor-connector check-config --no-connect` with
  the build's drivers and dummy values for the variables, and the Secret's placeholders refused;
- `kubectl kustomize` when a kubectl is installed (it renders offline; `kubectl apply
  --dry-run=client` needs an API server even with --validate=false, so it is not used), the
  rendered objects checked again;
- deploy/haproxy/haproxy.cfg through `haproxy -c` (a throwaway certificate in place of the
  example's), and what it must do: /readyz health checks, timeouts above the platform's 30 s,
  only /v1/ published;
- and that all of the above fails on broken copies of the files: a table of mutations (a probe
  path typo, a misspelled field, a Secret key the Deployment needs but the Secret lacks, a
  configuration check-config refuses, ...) each of which must be reported.
"""

import argparse
import copy
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from pkglib import SKIP, Runner, expect, main_guard, run  # noqa: E402

try:
    import yaml
except ImportError:  # python3-yaml (scripts/install-deps.sh --test)
    yaml = None
try:
    import kubernetes.client as k8s
except ImportError:  # python3-kubernetes (scripts/install-deps.sh --test)
    k8s = None

KDIR = "deploy/kubernetes"
HAPROXY = "deploy/haproxy/haproxy.cfg"
CONFIG_KEY = "connector.yaml"
# files of deploy/kubernetes/ that kustomization.yaml may leave out of its resources
OPTIONAL = {"hpa.yaml"}
# what the daemon does on SIGTERM: running callbacks get up to 30 s (DRAIN_MS in src/main.c)
DRAIN_S = 30
# the connector's server.max_connections_per_address default (src/config.c): a proxy's one
# address must not open more connections to a replica than that
PER_ADDRESS_DEFAULT = 32
# what the platform waits for a callback
PLATFORM_TIMEOUT_S = 30
# (apiVersion, kind) these files may use; a removed or beta version is a mistake
KINDS = {("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("apps/v1", "Deployment"),
         ("policy/v1", "PodDisruptionBudget"), ("autoscaling/v2", "HorizontalPodAutoscaler")}
# the enums of the fields these files use (the client's models check none of them)
ENUMS = {
    ("V1HTTPGetAction", "scheme"): {"HTTP", "HTTPS"},
    ("V1ContainerPort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1ServicePort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1Container", "image_pull_policy"): {"Always", "IfNotPresent", "Never"},
    ("V1Container", "termination_message_policy"): {"File", "FallbackToLogsOnError"},
    ("V1SeccompProfile", "type"): {"RuntimeDefault", "Localhost", "Unconfined"},
    ("V1ServiceSpec", "type"): {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
    ("V1ServiceSpec", "external_traffic_policy"): {"Cluster", "Local"},
    ("V1ServiceSpec", "session_affinity"): {"None", "ClientIP"},
    ("V1DeploymentStrategy", "type"): {"RollingUpdate", "Recreate"},
    ("V1PodSpec", "restart_policy"): {"Always"},
    ("V1PodSpec", "dns_policy"): {"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"},
    ("V1TopologySpreadConstraint", "when_unsatisfiable"): {"DoNotSchedule", "ScheduleAnyway"},
    ("V1Secret", "type"): {"Opaque"},
    ("V2beta2MetricSpec", "type"): {"Resource", "Pods", "Object", "External", "ContainerResource"},
    ("V2beta2MetricTarget", "type"): {"Utilization", "Value", "AverageValue"},
    ("V2beta2HPAScalingPolicy", "type"): {"Pods", "Percent"},
    ("V2beta2HPAScalingRules", "select_policy"): {"Max", "Min", "Disabled"},
}
QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "namespace", "namePrefix",
                      "nameSuffix", "labels", "commonLabels", "commonAnnotations",
                      "configMapGenerator", "secretGenerator", "generatorOptions", "patches",
                      "replicas", "components"}


# ---- loading ----

def load_dir(kdir):
    """{file name: [objects]} of every manifest in kdir but kustomization.yaml."""
    out = {}
    for name in sorted(os.listdir(kdir)):
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml":
            with open(os.path.join(kdir, name)) as f:
                out[name] = [d for d in yaml.safe_load_all(f) if d is not None]
    return out


def load_kustomization(kdir):
    with open(os.path.join(kdir, "kustomization.yaml")) as f:
        return yaml.safe_load(f)


def objects_of(files, kust=None):
    """The objects kustomize would render: those of its resources (all files without one)."""
    names = kust.get("resources", []) if kust else list(files)
    return [o for n in names for o in files.get(n, [])]


def one(objs, kind):
    found = [o for o in objs if isinstance(o, dict) and o.get("kind") == kind]
    return found[0] if len(found) == 1 else None


# ---- the object model, strictly ----

def model_class(api_version, kind):
    if (api_version, kind) not in KINDS:
        return None
    version = api_version.split("/")[-1]
    name = version[0].upper() + version[1:] + kind
    if not hasattr(k8s, name) and version == "v2":
        # autoscaling/v2 is v2beta2 made stable, field for field; this client predates it
        name = "V2beta2" + kind
    return name if hasattr(k8s, name) else None


def check_value(value, typ, where, problems, owner=None, attr=None):
    """Check value against the client's type string typ ('int', 'list[V1Container]', ...)."""
    enum = ENUMS.get((owner, attr))
    if typ.startswith("list["):
        if not isinstance(value, list):
            problems.append("%s: must be a list, is %s" % (where, type(value).__name__))
            return
        for i, v in enumerate(value):
            check_value(v, typ[5:-1], "%s[%d]" % (where, i), problems, owner, attr)
        return
    if typ.startswith("dict("):
        if not isinstance(value, dict):
            problems.append("%s: must be a mapping, is %s" % (where, type(value).__name__))
            return
        inner = typ[5:-1].split(", ", 1)[1]
        quantities = owner in ("V1ResourceRequirements",)
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append("%s: key %r must be a string" % (where, k))
            if quantities:
                check_quantity(v, "%s.%s" % (where, k), problems)
            else:
                check_value(v, inner, "%s.%s" % (where, k), problems)
        return
    if typ == "str":
        if not isinstance(value, str):
            problems.append("%s: must be a string, is %s %r (quote it)" % (
                where, type(value).__name__, value))
        elif enum and value not in enum:
            problems.append("%s: %r is not one of %s" % (where, value, sorted(enum)))
        return
    if typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append("%s: must be an integer, is %s %r" % (where, type(value).__name__, value))
        return
    if typ == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append("%s: must be a number, is %r" % (where, value))
        return
    if typ == "bool":
        if not isinstance(value, bool):
            problems.append("%s: must be true or false, is %r" % (where, value))
        return
    if typ == "object":  # IntOrString (ports, maxSurge, maxUnavailable)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            problems.append("%s: must be an integer or a string, is %r" % (where, value))
        elif isinstance(value, str) and not (PORT_NAME.match(value) or re.match(r"^\d+%$", value)):
            problems.append("%s: %r is neither a port name nor a percentage" % (where, value))
        return
    if typ in ("datetime", "date"):
        return
    cls = getattr(k8s, typ, None)
    if cls is None:
        problems.append("%s: the client has no model %s" % (where, typ))
        return
    if not isinstance(value, dict):
        problems.append("%s: must be a mapping (%s), is %s" % (where, typ, type(value).__name__))
        return
    by_key = {v: k for k, v in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_key:
            near = [k for k in by_key if k.lower() == str(key).lower() or
                    (len(k) > 4 and (k.startswith(str(key)) or str(key).startswith(k)))]
            problems.append("%s: unknown field %r in %s%s" % (
                where, key, typ, "; did you mean %r?" % near[0] if near else ""))
            continue
        a = by_key[key]
        check_value(v, cls.openapi_types[a], "%s.%s" % (where, key), problems, typ, a)
    if typ == "V1ObjectMeta" and "name" in value and isinstance(value["name"], str) \
            and not DNS_SUBDOMAIN.match(value["name"]):
        problems.append("%s.name: %r is not a DNS-1123 name" % (where, value["name"]))
    if typ in ("V1Container", "V1Volume", "V1VolumeMount") and isinstance(value.get("name"), str):
        if not DNS_LABEL.match(value["name"]):
            problems.append("%s.name: %r is not a DNS-1123 label" % (where, value["name"]))
    if typ in ("V1ContainerPort", "V1ServicePort") and isinstance(value.get("name"), str):
        if not PORT_NAME.match(value["name"]):
            problems.append("%s.name: %r is not a port name (at most 15 of a-z0-9-)" % (
                where, value["name"]))
    if typ == "V1EnvVar" and isinstance(value.get("name"), str) and not ENV_NAME.match(value["name"]):
        problems.append("%s.name: %r is not an environment variable name" % (where, value["name"]))
    if typ == "V1EmptyDirVolumeSource" and "sizeLimit" in value:
        check_quantity(value["sizeLimit"], where + ".sizeLimit", problems)


def check_quantity(v, where, problems):
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) or not QUANTITY.match(str(v)):
        problems.append("%s: %r is not a quantity (250m, 1, 64Mi, ...)" % (where, v))


class _Response:
    def __init__(self, data):
        import json
        self.data = json.dumps(data)


def model_problems(objs):
    """Each object against the client's model: strictly, then its deserializer (required fields)."""
    problems = []
    api = k8s.ApiClient()
    for o in objs:
        if not isinstance(o, dict):
            problems.append("a document is not a mapping: %r" % (o,))
            continue
        where = "%s/%s" % (o.get("kind"), (o.get("metadata") or {}).get("name"))
        cls = model_class(o.get("apiVersion"), o.get("kind"))
        if cls is None:
            problems.append("%s: apiVersion %r kind %r is not one of %s" % (
                where, o.get("apiVersion"), o.get("kind"), sorted(KINDS)))
            continue
        before = len(problems)
        check_value(o, cls, where, problems)
        if len(problems) == before:
            try:
                api.deserialize(_Response(o), cls)
            except (ValueError, TypeError) as e:
                problems.append("%s: %s" % (where, e))
    return problems


# ---- what no schema knows ----

def quantity_value(q):
    m = re.match(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$", str(q))
    if not m:
        return None
    mult = {None: 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024,
            "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}[m.group(2)]
    return float(m.group(1)) * mult


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def config_of(objs, deploy):
    """(the ConfigMap's connector.yaml text, the path --config reads) or raises."""
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    argv = (c.get("command") or []) + (c.get("args") or [])
    expect("--config" in argv, "the container's args have no --config")
    path = argv[argv.index("--config") + 1]
    mount = [m for m in c.get("volumeMounts", []) if m["mountPath"] == os.path.dirname(path)]
    expect(mount, "no volume is mounted at %s, where --config %s is" % (os.path.dirname(path), path))
    vol = [v for v in pod.get("volumes", []) if v["name"] == mount[0]["name"]]
    expect(vol and "configMap" in vol[0], "the volume at %s is not a ConfigMap" % mount[0]["mountPath"])
    cm_name = vol[0]["configMap"]["name"]
    key = os.path.basename(path)
    for item in vol[0]["configMap"].get("items") or []:
        if item["path"] == key:
            key = item["key"]
            break
    else:
        expect(not vol[0]["configMap"].get("items"),
               "the ConfigMap volume's items do not map a key to %s" % os.path.basename(path))
    cms = [o for o in objs if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == cm_name]
    expect(cms, "the Deployment mounts ConfigMap %s, which is not among the manifests" % cm_name)
    data = cms[0].get("data") or {}
    expect(key in data, "ConfigMap %s has no key %s (--config %s)" % (cm_name, key, path))
    return data[key], path


def listen_port(cfg):
    listen = str((cfg.get("server") or {}).get("listen", "127.0.0.1:8080"))
    m = re.search(r":(\d+)$", listen)
    expect(m, "server.listen %r has no port" % listen)
    return int(m.group(1)), listen


def resolve_port(port, container):
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def cross_problems(objs, dockerfile_uid=None, images=None):
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(what)
        return cond

    deploy = one(objs, "Deployment")
    if not need(deploy, "exactly one Deployment expected"):
        return problems
    spec = deploy["spec"]
    tmpl = spec["template"]
    labels = tmpl.get("metadata", {}).get("labels") or {}
    pod = tmpl["spec"]
    c = pod["containers"][0]
    need(len(pod["containers"]) == 1, "one container expected in the pod")
    need(selects(spec["selector"].get("matchLabels"), labels),
         "the Deployment's selector does not select its own pods")
    replicas = spec.get("replicas", 1)
    need(isinstance(replicas, int) and replicas >= 2, "replicas %r: run at least 2" % replicas)

    try:
        text, _ = config_of(objs, deploy)
        cfg = yaml.safe_load(text)
        port, listen = listen_port(cfg)
    except AssertionError as e:
        problems.append(str(e))
        return problems
    need(not listen.startswith(("127.", "localhost", "[::1]")),
         "server.listen %s is loopback: the probes and the Service cannot reach it" % listen)

    # ports
    cports = {p["containerPort"] for p in c.get("ports") or []}
    need(port in cports, "server.listen's port %d is not a containerPort (%s)" % (port, sorted(cports)))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = c.get(probe)
        if p and p.get("httpGet"):
            got = resolve_port(p["httpGet"].get("port"), c)
            need(got == port, "%s's port %r %s, not server.listen's %d" % (
                probe, p["httpGet"].get("port"),
                "names no containerPort" if got is None else "is %d" % got, port))
    svc = one(objs, "Service")
    if need(svc, "no Service"):
        need(selects(svc["spec"].get("selector"), labels), "the Service selects no pod of the Deployment")
        for sp in svc["spec"].get("ports") or []:
            got = resolve_port(sp.get("targetPort", sp.get("port")), c)
            need(got == port, "the Service's targetPort %r %s, not server.listen's %d" % (
                sp.get("targetPort"), "names no containerPort" if got is None else "is %d" % got,
                port))
    ann = tmpl.get("metadata", {}).get("annotations") or {}
    need(ann.get("prometheus.io/scrape") == "true", "prometheus.io/scrape is not \"true\"")
    need(ann.get("prometheus.io/port") == str(port),
         "prometheus.io/port %r is not server.listen's %d" % (ann.get("prometheus.io/port"), port))
    need(ann.get("prometheus.io/path") == "/metrics",
         "prometheus.io/path %r is not /metrics" % ann.get("prometheus.io/path"))
    metrics = cfg.get("metrics") or {}
    need(metrics.get("enabled", True) is not False, "metrics.enabled is false but Prometheus scrapes")

    # environment and secrets
    env = {e["name"]: e for e in c.get("env") or []}
    for var in sorted(set(VAR.findall(text))):
        need(var in env, "connector.yaml reads ${%s}, which the container's env does not set" % var)
    for name, e in env.items():
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            sec = [o for o in objs if o.get("kind") == "Secret" and o["metadata"]["name"] == ref["name"]]
            if not ref.get("optional") and need(sec, "env %s: Secret %s is not among the manifests"
                                                % (name, ref["name"])):
                keys = set((sec[0].get("data") or {})) | set((sec[0].get("stringData") or {}))
                need(ref["key"] in keys, "env %s: Secret %s has no key %s (it has %s)"
                     % (name, ref["name"], ref["key"], sorted(keys)))
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            cm = [o for o in objs if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == ref["name"]]
            need(cm and ref["key"] in (cm[0].get("data") or {}),
                 "env %s: ConfigMap %s has no key %s" % (name, ref["name"], ref["key"]))
        need(not e.get("value") or not re.search(r"SECRET|PASSWORD|TOKEN", name),
             "env %s holds a literal value: take it from the Secret" % name)

    # state
    state = cfg.get("state") or {}
    backend = state.get("backend", "sqlite")
    need(backend == "postgres",
         "state.backend is %s with %s replicas: the SQLite store is per process, so a retry on "
         "another replica would run the query again; replicas need the shared store" % (backend, replicas))
    if backend == "postgres":
        need(state.get("dsn"), "state.backend postgres without state.dsn")
    spath = state.get("path", "./connector-state.db")
    need(os.path.isabs(spath), "state.path %s is relative (to the read-only config directory)" % spath)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    sdir = os.path.dirname(spath)
    m = mounts.get(sdir)
    if need(m, "state.path's directory %s is not a mounted volume (the root is read-only)" % sdir):
        vol = [v for v in pod.get("volumes") or [] if v["name"] == m["name"]]
        need(vol and "emptyDir" in vol[0] and not m.get("readOnly"),
             "state.path's directory %s is not a writable emptyDir" % sdir)
    vols = {v["name"] for v in pod.get("volumes") or []}
    for mp, mnt in mounts.items():
        need(mnt["name"] in vols, "volumeMount %s names no volume %s" % (mp, mnt["name"]))

    # the image's user
    sc = pod.get("securityContext") or {}
    if dockerfile_uid is not None:
        uid = (c.get("securityContext") or {}).get("runAsUser", sc.get("runAsUser"))
        need(uid == dockerfile_uid, "runAsUser %r is not the image's uid %d (docker/Dockerfile)"
             % (uid, dockerfile_uid))
    if images is not None:
        need(c["image"].split(":")[0] in images,
             "the container's image %s is not one kustomization.yaml's images: sets (%s)"
             % (c["image"], sorted(images)))

    # other objects that point at the Deployment's pods
    pdb = one(objs, "PodDisruptionBudget")
    if need(pdb, "no PodDisruptionBudget"):
        need(selects(pdb["spec"]["selector"].get("matchLabels"), labels),
             "the PodDisruptionBudget selects no pod of the Deployment")
        ps = pdb["spec"]
        if "minAvailable" in ps:
            need(isinstance(ps["minAvailable"], int) and 1 <= ps["minAvailable"] < replicas,
                 "PodDisruptionBudget minAvailable %r with %d replicas allows no disruption"
                 " (drains would hang) or protects nothing" % (ps["minAvailable"], replicas))
        else:
            mu = ps.get("maxUnavailable")
            need(isinstance(mu, int) and 1 <= mu < replicas,
                 "PodDisruptionBudget maxUnavailable %r with %d replicas" % (mu, replicas))
    for ts in pod.get("topologySpreadConstraints") or []:
        need(selects(ts.get("labelSelector", {}).get("matchLabels"), labels),
             "a topologySpreadConstraint selects no pod of the Deployment")
    for hpa in (o for o in objs if o.get("kind") == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        need(ref.get("kind") == "Deployment" and ref.get("name") == deploy["metadata"]["name"],
             "the HorizontalPodAutoscaler scales %s/%s" % (ref.get("kind"), ref.get("name")))
        need(hpa["spec"].get("minReplicas", 1) >= 2, "the HorizontalPodAutoscaler may scale below 2")
    return problems


def policy_problems(objs):
    """What a deployment of this daemon must have: probes, drain, security, resources."""
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(what)
        return cond

    deploy = one(objs, "Deployment")
    if not deploy:
        return ["exactly one Deployment expected"]
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                        ("startupProbe", "/healthz")):
        p = c.get(probe)
        if probe != "startupProbe" or p:
            got = ((p or {}).get("httpGet") or {}).get("path")
            need(got == path, "%s path %r, not %s" % (probe, got, path))
        if p:
            period, timeout = p.get("periodSeconds", 10), p.get("timeoutSeconds", 1)
            need(isinstance(timeout, int) and isinstance(period, int) and 1 <= timeout <= period,
                 "%s: timeoutSeconds %r must be 1..periodSeconds %r" % (probe, timeout, period))
    pre = (c.get("lifecycle") or {}).get("preStop") or {}
    sleep = None
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0].endswith("/sleep") and str(cmd[1]).isdigit():
        sleep = int(cmd[1])
    elif isinstance(pre.get("sleep"), dict):
        sleep = pre["sleep"].get("seconds")
    need(isinstance(sleep, int) and sleep >= 1,
         "no preStop sleep: the endpoint must leave the Service before SIGTERM")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(isinstance(grace, int) and grace > (sleep or 0) + DRAIN_S,
         "terminationGracePeriodSeconds %r is not above the preStop sleep (%s s) plus the "
         "daemon's %d s drain" % (grace, sleep, DRAIN_S))

    psc = pod.get("securityContext") or {}
    csc = c.get("securityContext") or {}

    def eff(key):
        return csc.get(key, psc.get(key))
    need(eff("runAsNonRoot") is True, "runAsNonRoot is not true")
    need(isinstance(eff("runAsUser"), int) and eff("runAsUser") > 0,
         "runAsUser is not a numeric non-root uid (the kubelet cannot check a user name)")
    need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    need(not csc.get("privileged"), "the container is privileged")
    caps = csc.get("capabilities") or {}
    need("ALL" in (caps.get("drop") or []), "capabilities.drop does not hold ALL")
    need(not caps.get("add"), "capabilities are added: %s" % caps.get("add"))
    need((eff("seccompProfile") or {}).get("type") == "RuntimeDefault",
         "seccompProfile is not RuntimeDefault")
    need(pod.get("automountServiceAccountToken") is False,
         "automountServiceAccountToken is not false (the daemon never calls the API)")

    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            need(r in (res.get(kind) or {}), "resources.%s.%s is missing" % (kind, r))
    for r in ("cpu", "memory"):
        req = quantity_value((res.get("requests") or {}).get(r, ""))
        lim = quantity_value((res.get("limits") or {}).get(r, ""))
        if req is not None and lim is not None:
            need(req <= lim, "resources: the %s request is above its limit" % r)
    # measured: RSS 16-19.5 MiB at 16 clients, 53 MiB while a 1,000-table schema is read again
    mem_req = quantity_value((res.get("requests") or {}).get("memory", "")) or 0
    mem_lim = quantity_value((res.get("limits") or {}).get("memory", "")) or 0
    need(mem_req >= 32 * 1024 ** 2, "the memory request is below the 20 MiB measured under load")
    need(mem_lim >= 64 * 1024 ** 2, "the memory limit is below the 53 MiB a large schema refresh takes")
    return problems


# ---- the tests ----

def dockerfile_uid(src):
    text = open(os.path.join(src, "docker/Dockerfile")).read()
    m = re.search(r"useradd [^\n]*--uid (\d+)", re.sub(r"\\\n", " ", text))
    return int(m.group(1)) if m else None


def load_all(src):
    kdir = os.path.join(src, KDIR)
    files = load_dir(kdir)
    kust = load_kustomization(kdir)
    return files, kust


def image_names(kust):
    return {i["name"] for i in kust.get("images") or []}


def test_kustomization(args):
    files, kust = load_all(args.source_dir)
    bad = sorted(set(kust) - KUSTOMIZATION_KEYS)
    expect(not bad, "kustomization.yaml: unknown keys %s" % bad)
    expect(kust.get("kind") == "Kustomization", "kustomization.yaml's kind")
    expect(not kust.get("namespace"), "the base sets a namespace: keep it namespace-agnostic")
    res = kust.get("resources") or []
    missing = [r for r in res if r not in files]
    expect(not missing, "kustomization.yaml names files that do not exist: %s" % missing)
    left = sorted(set(files) - set(res) - OPTIONAL)
    expect(not left, "manifests that kustomization.yaml does not apply: %s" % left)
    for name, objs in files.items():
        for o in objs:
            expect(not (o.get("metadata") or {}).get("namespace"),
                   "%s sets metadata.namespace: keep the base namespace-agnostic" % name)


def test_manifests_against_the_object_model(args):
    files, _ = load_all(args.source_dir)
    problems = model_problems([o for objs in files.values() for o in objs])
    expect(not problems, "\n  ".join(["the object model:"] + problems))
    print("%d objects match the client's models (python3-kubernetes %s)"
          % (sum(len(v) for v in files.values()), k8s_version()))


def test_cross_references(args):
    files, kust = load_all(args.source_dir)
    uid = dockerfile_uid(args.source_dir)
    expect(uid, "docker/Dockerfile creates its user without a fixed --uid")
    for objs in (objects_of(files, kust), [o for v in files.values() for o in v]):
        problems = cross_problems(objs, uid, image_names(kust))
        expect(not problems, "\n  ".join(["across the manifests:"] + problems))


def test_deployment_policy(args):
    files, kust = load_all(args.source_dir)
    problems = policy_problems(objects_of(files, kust))
    expect(not problems, "\n  ".join(["the Deployment:"] + problems))


def kubectl():
    return shutil.which("kubectl")


def test_kubectl_kustomize(args):
    """kubectl kustomize renders offline (kubectl 1.20 from Debian's kubernetes-client or a
    newer one); the rendered objects go through the same checks."""
    if not kubectl():
        print("no kubectl: kustomize rendering not checked (Debian's kubernetes-client has one)")
        return SKIP
    p = run([kubectl(), "kustomize", os.path.join(args.source_dir, KDIR)], check=False)
    expect(p.returncode == 0, "kubectl kustomize failed:\n" + p.stderr[-1500:])
    rendered = [d for d in yaml.safe_load_all(p.stdout) if d]
    files, kust = load_all(args.source_dir)
    want = sorted((o["kind"], o["metadata"]["name"]) for o in objects_of(files, kust))
    got = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    expect(got == want, "kustomize rendered %s, the resources are %s" % (got, want))
    problems = model_problems(rendered) + cross_problems(rendered, dockerfile_uid(args.source_dir)) \
        + policy_problems(rendered)
    expect(not problems, "\n  ".join(["the rendered objects:"] + problems))
    image = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    want_img = ["%s:%s" % (i.get("newName", i["name"]), i["newTag"]) for i in kust.get("images", [])
                if "newTag" in i]
    expect(image in want_img, "rendered image %s, not %s" % (image, want_img))
    print("kubectl kustomize: %d objects, image %s" % (len(rendered), image))


def checkable_config(args, text, work):
    """text with its paths moved under work and the build's drivers: a file check-config reads."""
    text = text.replace("/var/lib/interactor-connector", work)
    expect(not re.search(r"^drivers:", text, re.M), "the config sets drivers: (the image's default)")
    text += '\ndrivers: { dir: "%s" }\n' % args.driver_dir
    path = os.path.join(work, "connector.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def dummy_env(text):
    env = dict(os.environ)
    for var in set(VAR.findall(text)):
        env[var] = "dummy-value-for-the-check-%s-0123456789" % var.lower()
    return env


def check_config(args, text, env=None):
    work = tempfile.mkdtemp(prefix="cn-deploy-")
    try:
        path = checkable_config(args, text, work)
        return run([args.binary, "check-config", "--no-connect", "--config", path],
                   env=env or dummy_env(text), check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


STATE_STORE_KEYS = ("backend", "dsn", "pool")
# a binary without the shared store (built on another branch) refuses state.backend, the first of
# the three keys; any other refusal, state.dsn or state.pool included, is a failure
UNKNOWN_BACKEND = re.compile(r":\d+: state\.backend: unknown key")


def without_state_store(text):
    """The config without state.backend/dsn/pool: what a binary without the shared store reads."""
    out, in_state = [], False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_state = line.startswith("state:")
        elif in_state and re.match(r"^  (%s):" % "|".join(STATE_STORE_KEYS), line):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def configmap_text(args):
    files, kust = load_all(args.source_dir)
    objs = objects_of(files, kust)
    text, _ = config_of(objs, one(objs, "Deployment"))
    return text


def test_configmap_passes_check_config(args):
    text = configmap_text(args)
    p = check_config(args, text)
    if p.returncode != 0 and UNKNOWN_BACKEND.search(p.stdout + p.stderr):
        print("SKIP: this binary does not know state.backend (the shared PostgreSQL state store); "
              "test_configmap_passes_check_config_apart_from_the_state_store checks the rest. "
              "This test runs by itself once the binary knows the key.")
        return SKIP
    expect(p.returncode == 0, "check-config --no-connect refused the ConfigMap's connector.yaml (%d):"
           "\n%s%s" % (p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
    expect(re.search(r"^source shop \(\w+\): driver .* loaded", p.stdout, re.M),
           "no driver line for the shop source:\n" + p.stdout[-1500:])
    expect("dummy-value-for-the-check" not in p.stdout + p.stderr, "a secret was printed")


def test_configmap_passes_check_config_apart_from_the_state_store(args):
    text = without_state_store(configmap_text(args))
    p = check_config(args, text)
    expect(p.returncode == 0, "check-config --no-connect refused the ConfigMap's connector.yaml (%d):"
           "\n%s%s" % (p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
    expect(re.search(r"^source shop \(postgres\): driver .* loaded", p.stdout, re.M),
           "no driver line for the shop source:\n" + p.stdout[-1500:])
    expect("dummy-value-for-the-check" not in p.stdout + p.stderr, "a secret was printed")


def test_secret_placeholders_are_refused(args):
    """secret.yaml as shipped must not make a running connector: its callback secret is refused."""
    files, _ = load_all(args.source_dir)
    sec = one([o for v in files.values() for o in v], "Secret")
    text = without_state_store(configmap_text(args))
    env = dict(os.environ, **{k: str(v) for k, v in (sec.get("stringData") or {}).items()})
    p = check_config(args, text, env)
    expect(p.returncode != 0 and "auth.callback_secrets" in p.stdout + p.stderr,
           "the Secret's placeholder callback secret was accepted:\n%s%s"
           % (p.stdout[-800:], p.stderr[-800:]))


# ---- HAProxy ----

def haproxy_sections(text):
    """{section header: [lines]} with comments dropped."""
    sections, cur = {}, None
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            cur = line.strip()
            sections[cur] = []
        elif cur:
            sections[cur].append(line.strip())
    return sections


def seconds(v):
    m = re.match(r"^(\d+)(ms|s|m|h)?$", v)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[m.group(2)]


def haproxy_problems(text):
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(what)
    s = haproxy_sections(text)
    backends = [k for k in s if k.startswith("backend ")]
    fronts = [k for k in s if k.startswith("frontend ")]
    need(len(backends) == 1 and fronts, "one backend and a frontend expected")
    if not backends or not fronts:
        return problems
    b = s[backends[0]]
    defaults = next((v for k, v in s.items() if k.startswith("defaults")), [])
    need(any(re.match(r"balance (leastconn|roundrobin)$", l) for l in b), "balance leastconn or roundrobin")
    need("option httpchk" in b, "no option httpchk")
    need(any(re.match(r"http-check send .*\buri /readyz\b", l) for l in b),
         "the health check is not GET /readyz")
    need(any(re.match(r"http-check send meth GET\b", l) for l in b), "the health check is not a GET")
    need("http-check expect status 200" in b, "the health check does not expect status 200")
    servers = [l for l in b if l.startswith("server ")]
    need(len(servers) >= 3, "fewer than 3 servers")
    dflt = " ".join(l for l in b if l.startswith("default-server "))
    for sv in servers:
        need(re.search(r"\bcheck\b", sv + " " + dflt), "server without check: " + sv)
        m = re.search(r"\bmaxconn (\d+)", sv) or re.search(r"\bmaxconn (\d+)", dflt)
        need(m and int(m.group(1)) <= PER_ADDRESS_DEFAULT,
             "%s: maxconn above the connector's max_connections_per_address default (%d)"
             % (sv, PER_ADDRESS_DEFAULT))
    timeouts = {}
    for l in defaults + b + s[fronts[0]]:
        m = re.match(r"timeout (\S+) (\S+)$", l)
        if m:
            timeouts[m.group(1)] = seconds(m.group(2))
    for t in ("server", "client"):
        need(timeouts.get(t, 0) > PLATFORM_TIMEOUT_S,
             "timeout %s %s is not above the platform's %d s" % (t, timeouts.get(t), PLATFORM_TIMEOUT_S))
    need("option forwardfor" in defaults + s[fronts[0]] + b, "no option forwardfor (X-Forwarded-For)")
    f = s[fronts[0]]
    need(any(re.match(r"bind \S+ ssl crt \S+", l) for l in f), "the frontend does not terminate TLS")
    need(any(re.search(r"http-request deny\b.*unless \{ path_beg /v1/ \}", l) for l in f),
         "the frontend publishes more than /v1/ (/metrics and /readyz answer private addresses)")
    return problems


def haproxy_check(args, text, work):
    """`haproxy -c` on text with its certificate path replaced by a throwaway certificate."""
    cert = os.path.join(work, "connector.pem")
    if not os.path.exists(cert):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=connector.example.com", "-keyout", cert + ".key", "-out", cert + ".crt"])
        with open(cert, "w") as f:
            f.write(open(cert + ".crt").read() + open(cert + ".key").read())
    crts = re.findall(r"\bcrt (\S+)", text)
    for c in crts:
        text = text.replace(c, cert)
    path = os.path.join(work, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(text)
    return run(["haproxy", "-c", "-f", path], check=False)


def test_haproxy(args):
    text = open(os.path.join(args.source_dir, HAPROXY)).read()
    problems = haproxy_problems(text)
    if shutil.which("haproxy"):
        work = tempfile.mkdtemp(prefix="cn-haproxy-")
        try:
            p = haproxy_check(args, text, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out = p.stdout + p.stderr
        if p.returncode != 0 or "[WARNING]" in out or "[ALERT]" in out:
            problems.append("haproxy -c exited %d:\n%s" % (p.returncode, out[-2000:]))
    expect(not problems, "\n  ".join(["deploy/haproxy/haproxy.cfg:"] + problems))
    if not shutil.which("haproxy"):
        print("no haproxy (Debian package haproxy): haproxy -c not run")
        return SKIP


# ---- the checks above fail on broken files ----

def deployment(objs):
    return one(objs, "Deployment")


def container(objs):
    return deployment(objs)["spec"]["template"]["spec"]["containers"][0]


def configmap(objs):
    return one(objs, "ConfigMap")


def edit_config(objs, old, new):
    cm = configmap(objs)
    expect(old in cm["data"][CONFIG_KEY], "mutation: %r not in connector.yaml" % old)
    cm["data"][CONFIG_KEY] = cm["data"][CONFIG_KEY].replace(old, new, 1)


def _rename(d, old, new):
    d[new] = d.pop(old)


# (what is broken, how, a part of the message that must report it)
MUTATIONS = [
    ("readiness probe path typo", lambda o: container(o)["readinessProbe"]["httpGet"].update(path="/ready"),
     "readinessProbe path '/ready'"),
    ("liveness probe on /readyz", lambda o: container(o)["livenessProbe"]["httpGet"].update(path="/readyz"),
     "livenessProbe path '/readyz'"),
    ("misspelled field", lambda o: _rename(container(o)["readinessProbe"], "periodSeconds", "periodSecond"),
     "unknown field 'periodSecond'"),
    ("misspelled field at the pod level", lambda o: _rename(
        deployment(o)["spec"]["template"]["spec"], "terminationGracePeriodSeconds",
        "terminationGracePeriod"), "unknown field 'terminationGracePeriod'"),
    ("a string where an integer belongs", lambda o: deployment(o)["spec"].update(replicas="3"),
     "replicas: must be an integer"),
    ("an unquoted annotation", lambda o: deployment(o)["spec"]["template"]["metadata"]["annotations"]
     .update({"prometheus.io/port": 8080}), "must be a string"),
    ("an enum typo", lambda o: container(o).update(imagePullPolicy="IfNotPresen"), "is not one of"),
    ("a removed apiVersion", lambda o: one(o, "PodDisruptionBudget").update(apiVersion="policy/v1beta1"),
     "apiVersion 'policy/v1beta1'"),
    ("a required field missing", lambda o: container(o).pop("name"), "must not be `None`"),
    ("a bad quantity", lambda o: container(o)["resources"]["limits"].update(memory="256MB"),
     "is not a quantity"),
    ("a Secret key the Deployment references but the Secret lacks",
     lambda o: one(o, "Secret")["stringData"].pop("STATE_DB_PASSWORD"),
     "Secret interactor-connector has no key STATE_DB_PASSWORD"),
    ("a ${VAR} the container does not set",
     lambda o: edit_config(o, "${SHOP_DB_PASSWORD}", "${SHOP_PASSWORD}"),
     "reads ${SHOP_PASSWORD}"),
    ("the container port differs from server.listen",
     lambda o: container(o)["ports"][0].update(containerPort=8081), "is not a containerPort"),
    ("server.listen moved", lambda o: edit_config(o, "0.0.0.0:8080", "0.0.0.0:9090"),
     "server.listen's port 9090"),
    ("a Service targetPort naming no port", lambda o: one(o, "Service")["spec"]["ports"][0]
     .update(targetPort="htpp"), "targetPort 'htpp' names no containerPort"),
    ("a Service selecting nothing", lambda o: one(o, "Service")["spec"].update(
        selector={"app.kubernetes.io/name": "interactor-conector"}), "the Service selects no pod"),
    ("the scrape port wrong", lambda o: deployment(o)["spec"]["template"]["metadata"]["annotations"]
     .update({"prometheus.io/port": "9090"}), "prometheus.io/port '9090'"),
    ("the SQLite store with 3 replicas", lambda o: edit_config(o, "backend: postgres", "backend: sqlite"),
     "the SQLite store is per process"),
    ("state.path on the read-only root", lambda o: edit_config(
        o, "/var/lib/interactor-connector/connector-state.db", "/srv/connector-state.db"),
     "/srv is not a mounted volume"),
    ("the config mounted elsewhere",
     lambda o: container(o)["volumeMounts"][0].update(mountPath="/etc/connector"),
     "no volume is mounted at /etc/interactor-connector"),
    ("the grace period within the drain", lambda o: deployment(o)["spec"]["template"]["spec"]
     .update(terminationGracePeriodSeconds=30), "terminationGracePeriodSeconds 30"),
    ("no preStop", lambda o: container(o).pop("lifecycle"), "no preStop sleep"),
    ("capabilities kept", lambda o: container(o)["securityContext"].pop("capabilities"),
     "capabilities.drop does not hold ALL"),
    ("a writable root", lambda o: container(o)["securityContext"].update(readOnlyRootFilesystem=False),
     "readOnlyRootFilesystem"),
    ("another uid than the image's", lambda o: deployment(o)["spec"]["template"]["spec"]["securityContext"]
     .update(runAsUser=1000), "not the image's uid"),
    ("no memory limit", lambda o: container(o)["resources"]["limits"].pop("memory"),
     "resources.limits.memory is missing"),
    ("a PDB that blocks every drain", lambda o: one(o, "PodDisruptionBudget")["spec"].update(
        maxUnavailable=0), "maxUnavailable 0"),
    ("a literal password in env", lambda o: container(o)["env"].append(
        {"name": "OTHER_DB_PASSWORD", "value": "hunter2"}), "holds a literal value"),
]
# configurations the connector itself refuses: check-config must report them
CONFIG_MUTATIONS = [
    ("a statement timeout over the platform's", "timeout_ms: 10000", "timeout_ms: 60000", "timeout_ms"),
    ("a misspelled key", "max_connections: 64", "max_conections: 64", "unknown key"),
]
HAPROXY_MUTATIONS = [
    ("a misspelled timeout", "timeout server 35s", "timeout sever 35s", "haproxy -c"),
    ("no health check", "http-check expect status 200\n", "", "expect status 200"),
    ("a health check on another path", "uri /readyz", "uri /healthz", "not GET /readyz"),
    ("a server timeout under the platform's", "timeout server 35s", "timeout server 25s",
     "timeout server 25"),
    ("everything published", "    http-request deny deny_status 404 unless { path_beg /v1/ }\n", "",
     "publishes more than /v1/"),
]


def test_the_checks_catch_broken_files(args):
    files, kust = load_all(args.source_dir)
    uid = dockerfile_uid(args.source_dir)
    missed = []
    for what, mutate, must in MUTATIONS:
        objs = copy.deepcopy(objects_of(files, kust))
        mutate(objs)
        problems = model_problems(objs)
        if not problems:  # the rest assumes the objects have the model's shape
            problems = cross_problems(objs, uid, image_names(kust)) + policy_problems(objs)
        hit = [p for p in problems if must in p]
        if hit:
            print("  caught %s: %s" % (what, hit[0]))
        else:
            missed.append("%s (wanted %r, got %s)" % (what, must, problems))
    base = without_state_store(configmap_text(args))
    for what, old, new, must in CONFIG_MUTATIONS:
        expect(old in base, "mutation %s: %r not in connector.yaml" % (what, old))
        p = check_config(args, base.replace(old, new, 1))
        out = p.stdout + p.stderr
        if p.returncode != 0 and must in out:
            print("  caught %s: %s" % (what, out.strip().splitlines()[-1]))
        else:
            missed.append("%s (check-config exited %d: %s)" % (what, p.returncode, out[-300:]))
    text = open(os.path.join(args.source_dir, HAPROXY)).read()
    work = tempfile.mkdtemp(prefix="cn-haproxy-")
    try:
        for what, old, new, must in HAPROXY_MUTATIONS:
            expect(old in text, "mutation %s: %r not in haproxy.cfg" % (what, old))
            broken = text.replace(old, new, 1)
            problems = haproxy_problems(broken)
            if must == "haproxy -c":
                if not shutil.which("haproxy"):
                    continue
                p = haproxy_check(args, broken, work)
                if p.returncode != 0:
                    problems.append("haproxy -c: " + [l for l in (p.stdout + p.stderr).splitlines()
                                                      if "ALERT" in l][0])
            hit = [p for p in problems if must in p]
            if hit:
                print("  caught %s: %s" % (what, hit[0][:200]))
            else:
                missed.append("%s (wanted %r, got %s)" % (what, must, problems))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    expect(not missed, "broken files that passed:\n  " + "\n  ".join(missed))


def k8s_version():
    try:
        import kubernetes
        return kubernetes.__version__
    except (ImportError, AttributeError):
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--driver-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    for a in ("binary", "driver_dir", "source_dir"):
        setattr(args, a, os.path.abspath(getattr(args, a)))
    if yaml is None or k8s is None:
        print("SKIP: python3-yaml or python3-kubernetes is not installed "
              "(scripts/install-deps.sh --test installs them)")
        return SKIP
    r = Runner()
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            r.run(name, fn, args)
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
