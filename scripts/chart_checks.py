#!/usr/bin/env python3
"""The Python half of scripts/check-chart.sh: checks of rendered Kubernetes manifests.

Run it with the repo's .venv interpreter, which has kubernetes-validate (and with
it PyYAML and jsonschema). Subcommands:

  validate --kube V [--kube V …] FILE…   every document against the Kubernetes
      JSON schemas of each version V (kubernetes-validate, strict: unknown fields
      are errors); the CRDs the chart uses (ScaledObject, ServiceMonitor,
      PodMonitor) against schemas written here from their CRDs, since
      kubernetes-validate has none; plus what the API server checks beyond the
      schemas (names, label syntax) and the wiring between objects (selectors
      that select the pods, references to ConfigMaps, Secrets, containers).
  config FILE OUT        writes the config.yaml of the rendered Warren ConfigMap to OUT.
  env FILE               prints the Warren container's environment as NAME=VALUE
                         lines, secrets resolved from the render or replaced by
                         placeholders, for running `warren config check` with it.
  grace FILE CHECKED     asserts terminationGracePeriodSeconds is above the
                         pool.shutdown_timeout printed by `warren config check`.
  expect CASE FILE       assertions specific to one values file of helm/warren/ci.
  documented VALUES README   every key of values.yaml appears in the chart README.
  alert-tests FILE TESTS OUTDIR   writes the rendered PrometheusRule's groups to
                         OUTDIR/rules.yaml and TESTS, each expected alert completed
                         with the summary and runbook of its rule, to OUTDIR, for
                         `promtool check rules` and `promtool test rules`.

Exit status 1 on any failure, with one line per problem on stderr.
"""

import json
import re
import sys

import jsonschema
import yaml

try:
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError:  # the config/env subcommands work without it
    kubernetes_validate = None

# --- what the API server checks that the JSON schemas do not ------------------

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def label_key_problems(key):
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        problems.append(f"label key prefix '{prefix}' is not a DNS subdomain")
    if len(name) > 63 or not LABEL_NAME.match(name):
        problems.append(f"label key '{key}' is not a valid label name")
    return problems


def label_value_problems(key, value):
    if not isinstance(value, str):
        return [f"label {key} has a non-string value {value!r}"]
    if len(value) > 63 or not LABEL_VALUE.match(value):
        return [f"label {key}={value!r} is not a valid label value"]
    return []


def walk(node, path=""):
    """Yields (path, key, value) for every mapping entry in a document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield from walk(v, f"{path}[{n}]")


def api_server_problems(doc):
    problems = []
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        problems.append(f"metadata.name '{name}' is not a DNS-1123 subdomain")
    if doc.get("kind") == "Service" and (len(name) > 63 or not DNS1035_LABEL.match(name)):
        problems.append(f"Service name '{name}' is not a DNS-1035 label")
    for path, key, value in walk(doc):
        if key in ("labels", "matchLabels") and isinstance(value, dict):
            for k, v in value.items():
                problems += [f"{path}.{key}: {p}" for p in label_key_problems(k) + label_value_problems(k, v)]
        if key == "annotations" and isinstance(value, dict):
            problems += [f"{path}.annotations.{k} is not a string" for k, v in value.items() if not isinstance(v, str)]
        if key in ("containers", "initContainers") and isinstance(value, list):
            for c in value:
                cname = c.get("name", "")
                if len(cname) > 63 or not DNS1123_LABEL.match(cname):
                    problems.append(f"{path}.{key}: container name '{cname}' is not a DNS-1123 label")
                for port in c.get("ports") or []:
                    pname = port.get("name")
                    if pname is not None and (len(pname) > 15 or not PORT_NAME.match(pname)):
                        problems.append(f"{path}.{key}: port name '{pname}' is not an IANA service name (≤15)")
    return problems


# --- schemas of the CRDs the chart renders ---------------------------------------
# Written from the CRDs of KEDA 2.x (keda.sh/v1alpha1 ScaledObject) and
# prometheus-operator (monitoring.coreos.com/v1); fields the chart never sets are
# accepted as objects, fields it sets are typed, unknown fields are errors.

PROM_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
ANY_OBJECT = {"type": "object"}
STRINGS = {"type": "array", "items": {"type": "string"}}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": ANY_OBJECT},
    },
}
NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"any": {"type": "boolean"}, "matchNames": STRINGS},
}
RELABEL_ACTIONS = [
    "replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
    "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
    "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
    "dropequal", "DropEqual",
]
RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer", "minimum": 0},
        "replacement": {"type": "string"},
        "action": {"enum": RELABEL_ACTIONS},
    },
}
ENDPOINT_PROPS = {
    "port": {"type": "string"},
    "targetPort": {"type": ["string", "integer"]},
    "path": {"type": "string"},
    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    "params": ANY_OBJECT,
    "interval": {"type": "string", "pattern": PROM_DURATION},
    "scrapeTimeout": {"type": "string", "pattern": PROM_DURATION},
    "tlsConfig": ANY_OBJECT,
    "bearerTokenSecret": ANY_OBJECT,
    "authorization": ANY_OBJECT,
    "basicAuth": ANY_OBJECT,
    "oauth2": ANY_OBJECT,
    "honorLabels": {"type": "boolean"},
    "honorTimestamps": {"type": "boolean"},
    "trackTimestampsStaleness": {"type": "boolean"},
    "relabelings": {"type": "array", "items": RELABEL},
    "metricRelabelings": {"type": "array", "items": RELABEL},
    "proxyUrl": {"type": "string"},
    "followRedirects": {"type": "boolean"},
    "enableHttp2": {"type": "boolean"},
    "filterRunning": {"type": "boolean"},
}
MONITOR_SPEC_PROPS = {
    "jobLabel": {"type": "string"},
    "podTargetLabels": STRINGS,
    "selector": LABEL_SELECTOR,
    "namespaceSelector": NAMESPACE_SELECTOR,
    "sampleLimit": {"type": "integer", "minimum": 0},
    "targetLimit": {"type": "integer", "minimum": 0},
    "labelLimit": {"type": "integer", "minimum": 0},
    "labelNameLengthLimit": {"type": "integer", "minimum": 0},
    "labelValueLengthLimit": {"type": "integer", "minimum": 0},
    "keepDroppedTargets": {"type": "integer", "minimum": 0},
    "attachMetadata": ANY_OBJECT,
    "scrapeProtocols": STRINGS,
    "scrapeClass": {"type": "string"},
}


def crd(api_version, kind, spec):
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": spec,
        },
    }


SERVICE_MONITOR = crd("monitoring.coreos.com/v1", "ServiceMonitor", {
    "type": "object",
    "additionalProperties": False,
    "required": ["selector", "endpoints"],
    "properties": {
        **MONITOR_SPEC_PROPS,
        "targetLabels": STRINGS,
        "endpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "properties": ENDPOINT_PROPS}},
    },
})
POD_MONITOR = crd("monitoring.coreos.com/v1", "PodMonitor", {
    "type": "object",
    "additionalProperties": False,
    "required": ["selector", "podMetricsEndpoints"],
    "properties": {
        **MONITOR_SPEC_PROPS,
        "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {**ENDPOINT_PROPS, "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535}}}},
    },
})
INT32 = {"type": "integer", "minimum": 0, "maximum": 2147483647}
SCALED_OBJECT = crd("keda.sh/v1alpha1", "ScaledObject", {
    "type": "object",
    "additionalProperties": False,
    "required": ["scaleTargetRef", "triggers"],
    "properties": {
        "scaleTargetRef": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "name": {"type": "string"}, "envSourceContainerName": {"type": "string"}},
        },
        "pollingInterval": INT32,
        "initialCooldownPeriod": INT32,
        "cooldownPeriod": INT32,
        "idleReplicaCount": INT32,
        "minReplicaCount": INT32,
        "maxReplicaCount": INT32,
        "fallback": {"type": "object", "additionalProperties": False, "required": ["failureThreshold", "replicas"],
                     "properties": {"failureThreshold": INT32, "replicas": INT32,
                                    "behavior": {"enum": ["static", "currentReplicas", "currentReplicasIfHigher",
                                                          "currentReplicasIfLower"]}}},
        "advanced": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "restoreToOriginalReplicaCount": {"type": "boolean"},
                "horizontalPodAutoscalerConfig": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "behavior": ANY_OBJECT},
                },
                "scalingModifiers": ANY_OBJECT,
            },
        },
        "triggers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["type", "metadata"],
            "properties": {
                "type": {"type": "string"},
                "name": {"type": "string"},
                "useCachedMetrics": {"type": "boolean"},
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                "authenticationRef": {"type": "object", "required": ["name"]},
            }}},
    },
})
TRIGGER_AUTHENTICATION = crd("keda.sh/v1alpha1", "TriggerAuthentication", {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "secretTargetRef": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["parameter", "name", "key"],
            "properties": {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}},
        "env": {"type": "array"},
        "podIdentity": ANY_OBJECT,
        "hashiCorpVault": ANY_OBJECT,
    },
})
# cilium.io/v2 CiliumNetworkPolicy, the part the chart writes (egress to entities on ports).
CILIUM_ENTITIES = ["all", "world", "cluster", "host", "remote-node", "kube-apiserver", "ingress", "health",
                   "init", "unmanaged", "none"]
CILIUM_NETWORK_POLICY = crd("cilium.io/v2", "CiliumNetworkPolicy", {
    "type": "object",
    "additionalProperties": False,
    "required": ["endpointSelector"],
    "properties": {
        "endpointSelector": LABEL_SELECTOR,
        "egress": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "toEntities": {"type": "array", "minItems": 1, "items": {"enum": CILIUM_ENTITIES}},
                "toPorts": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"ports": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False, "required": ["port"],
                        "properties": {"port": {"type": "string", "pattern": "^[0-9]{1,5}$"},
                                       "protocol": {"enum": ["TCP", "UDP", "SCTP", "ANY"]}}}}}}},
            }}},
    },
})
PROMETHEUS_RULE = crd("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object",
    "additionalProperties": False,
    "properties": {"groups": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "rules"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "interval": {"type": "string", "pattern": PROM_DURATION},
            "rules": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["expr"],
                "properties": {
                    "alert": {"type": "string"}, "record": {"type": "string"},
                    "expr": {"type": ["string", "integer"]},
                    "for": {"type": "string", "pattern": PROM_DURATION},
                    "keep_firing_for": {"type": "string", "pattern": PROM_DURATION},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                }}},
        }}}},
})
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("cilium.io/v2", "CiliumNetworkPolicy"): CILIUM_NETWORK_POLICY,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
}
# The rabbitmq scaler's metadata (keda.sh/docs/latest/scalers/rabbitmq-queue).
RABBITMQ_TRIGGER_KEYS = {
    "host", "hostFromEnv", "protocol", "mode", "value", "activationValue", "queueName",
    "vhostName", "queueLength", "useRegex", "pageSize", "operation", "timeout",
    "excludeUnacknowledged", "unsafeSsl", "usernameFromEnv", "passwordFromEnv",
}
NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def k8s_type_problems(data, type_file, version, where):
    """Validates a fragment against one of kubernetes-validate's per-type schemas."""
    if kubernetes_validate is None:
        return [f"{where}: kubernetes-validate is not installed"]
    schema_dir = f"v{version}-local-strict"
    schema = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/{type_file}.json", version)
    defs = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = kv_utils.Registry()
    registry = kv_utils.Resource.from_contents(defs) @ registry
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(data)]


def crd_problems(doc, version):
    schema = CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])]
    problems = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    spec = doc.get("spec") or {}
    if doc["kind"] == "ScaledObject":
        behavior = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("behavior")
        if behavior is not None:
            problems += k8s_type_problems(behavior, "horizontalpodautoscalerbehavior-autoscaling-v2", version,
                                          "spec.advanced.horizontalPodAutoscalerConfig.behavior")
        for n, trigger in enumerate(spec.get("triggers") or []):
            if trigger.get("type") != "rabbitmq":
                continue
            meta = trigger.get("metadata") or {}
            where = f"spec.triggers[{n}].metadata"
            problems += [f"{where}: unknown rabbitmq parameter {k}" for k in sorted(set(meta) - RABBITMQ_TRIGGER_KEYS)]
            if not meta.get("queueName"):
                problems.append(f"{where}: queueName is required")
            if meta.get("mode") not in ("QueueLength", "MessageRate"):
                problems.append(f"{where}: mode must be QueueLength or MessageRate")
            if meta.get("protocol", "auto") not in ("auto", "amqp", "http"):
                problems.append(f"{where}: protocol must be auto, amqp or http")
            if meta.get("mode") == "MessageRate" and meta.get("protocol") != "http":
                problems.append(f"{where}: mode MessageRate needs protocol http")
            for key in ("value", "activationValue"):
                if key in meta and not NUMBER.match(meta[key]):
                    problems.append(f"{where}: {key} '{meta[key]}' is not a number")
            if not (meta.get("host") or meta.get("hostFromEnv") or trigger.get("authenticationRef")):
                problems.append(f"{where}: needs host, hostFromEnv or an authenticationRef")
    elif doc["kind"] in ("ServiceMonitor", "PodMonitor"):
        for field in ("selector",):
            if field in spec:
                problems += k8s_type_problems(spec[field], "labelselector-meta-v1", version, f"spec.{field}")
    return problems


def schema_problems(doc, version):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        return crd_problems(doc, version)
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]


# --- the wiring between objects ----------------------------------------------------

def pod_templates(docs):
    """(workload name, pod template) of every Deployment."""
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in docs if d.get("kind") == "Deployment"]


def selects(match_labels, labels):
    return all(labels.get(k) == v for k, v in (match_labels or {}).items())


def wiring_problems(docs):
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), {})[d["metadata"]["name"]] = d
    templates = pod_templates(docs)
    services = by_kind.get("Service", {})
    for name, d in by_kind.get("Deployment", {}).items():
        selector = d["spec"]["selector"].get("matchLabels", {})
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        if not selector or not selects(selector, labels):
            problems.append(f"Deployment/{name}: spec.selector does not select its own pod template")
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        containers = pod.get("containers", []) + pod.get("initContainers", [])
        for c in containers:
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"Deployment/{name}: container {c['name']} mounts unknown volume {m['name']}")
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] in by_kind.get("Secret", {}):
                    secret = by_kind["Secret"][ref["name"]]
                    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                    if ref["key"] not in keys and not ref.get("optional"):
                        problems.append(f"Deployment/{name}: env {e['name']} needs key {ref['key']} of Secret {ref['name']}")
        for v in volumes.values():
            cm = (v.get("configMap") or {}).get("name")
            if cm and cm not in by_kind.get("ConfigMap", {}):
                problems.append(f"Deployment/{name}: volume {v['name']} names missing ConfigMap {cm}")
    for name, s in services.items():
        if s["spec"].get("selector") and not any(selects(s["spec"]["selector"], t["metadata"].get("labels", {})) for _, t in templates):
            # a Service of another workload (the dev RabbitMQ) selects that workload's pods
            problems.append(f"Service/{name}: selector matches no pod template")
    for kind in ("PodDisruptionBudget", "NetworkPolicy", "PodMonitor"):
        for name, d in by_kind.get(kind, {}).items():
            sel = (d["spec"].get("selector") or d["spec"].get("podSelector") or {}).get("matchLabels")
            if not any(selects(sel, t["metadata"].get("labels", {})) for _, t in templates):
                problems.append(f"{kind}/{name}: selector matches no pod template")
    for name, d in by_kind.get("ServiceMonitor", {}).items():
        sel = d["spec"]["selector"].get("matchLabels")
        port_names = {p.get("name") for s in services.values() if selects(sel, s["metadata"].get("labels", {})) for p in s["spec"]["ports"]}
        if not port_names:
            problems.append(f"ServiceMonitor/{name}: selector matches no Service")
        for ep in d["spec"]["endpoints"]:
            if ep.get("port") and ep["port"] not in port_names:
                problems.append(f"ServiceMonitor/{name}: no selected Service has a port named {ep['port']}")
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, d in by_kind.get(kind, {}).items():
            target = d["spec"]["scaleTargetRef"]
            deployment = by_kind.get("Deployment", {}).get(target["name"])
            if deployment is None:
                problems.append(f"{kind}/{name}: scaleTargetRef names missing Deployment {target['name']}")
                continue
            if "replicas" in deployment["spec"]:
                problems.append(f"{kind}/{name}: Deployment {target['name']} sets replicas, which the autoscaler owns")
            if kind == "ScaledObject":
                pod = deployment["spec"]["template"]["spec"]
                wanted = target.get("envSourceContainerName")
                container = next((c for c in pod["containers"] if c["name"] == wanted), None) if wanted else pod["containers"][0]
                if container is None:
                    problems.append(f"ScaledObject/{name}: envSourceContainerName {wanted} is not a container")
                    continue
                env = {e["name"] for e in container.get("env", [])}
                for t in d["spec"]["triggers"]:
                    auth = (t.get("authenticationRef") or {}).get("name")
                    if auth and auth not in by_kind.get("TriggerAuthentication", {}):
                        problems.append(f"ScaledObject/{name}: authenticationRef {auth} is not rendered")
                    if "fallback" in d["spec"] and t.get("metricType", "AverageValue") != "AverageValue":
                        problems.append(f"ScaledObject/{name}: fallback needs metricType AverageValue")
                    host_env = t["metadata"].get("hostFromEnv")
                    if host_env and host_env not in env:
                        problems.append(f"ScaledObject/{name}: hostFromEnv {host_env} is not in container {container['name']}'s env")
    for name, d in by_kind.get("TriggerAuthentication", {}).items():
        for ref in d["spec"].get("secretTargetRef", []):
            secret = by_kind.get("Secret", {}).get(ref["name"])
            if secret is not None and ref["key"] not in set(secret.get("stringData", {})) | set(secret.get("data", {})):
                problems.append(f"TriggerAuthentication/{name}: Secret {ref['name']} has no key {ref['key']}")
    for name, d in by_kind.get("ValidatingAdmissionPolicyBinding", {}).items():
        if d["spec"]["policyName"] not in by_kind.get("ValidatingAdmissionPolicy", {}):
            problems.append(f"ValidatingAdmissionPolicyBinding/{name}: policy {d['spec']['policyName']} is not rendered")
    for name, d in by_kind.get("CiliumNetworkPolicy", {}).items():
        sel = d["spec"]["endpointSelector"].get("matchLabels")
        if not any(selects(sel, t["metadata"].get("labels", {})) for _, t in templates):
            problems.append(f"CiliumNetworkPolicy/{name}: endpointSelector matches no pod template")
    for name, d in by_kind.get("RoleBinding", {}).items():
        role = d["roleRef"]["name"]
        if d["roleRef"]["kind"] == "Role" and role not in by_kind.get("Role", {}):
            problems.append(f"RoleBinding/{name}: Role {role} is not rendered")
    return problems


# --- subcommands ---------------------------------------------------------------------

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def cmd_validate(args):
    versions = []
    while args and args[0] == "--kube":
        versions.append(args[1])
        args = args[2:]
    problems = []
    count = 0
    for path in args:
        docs = load_docs(path)
        for doc in docs:
            count += 1
            what = f"{path}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            for p in api_server_problems(doc):
                problems.append(f"{what}: {p}")
            for version in versions:
                for p in schema_problems(doc, version):
                    problems.append(f"{what} (Kubernetes {version}): {p}")
        problems += [f"{path}: {p}" for p in wiring_problems(docs)]
    for p in problems:
        print(p)
    print(f"{count} documents in {len(args)} files, Kubernetes {', '.join(versions)}: {len(problems)} problems")
    return 1 if problems else 0


def warren_config_map(docs):
    maps = [d for d in docs if d.get("kind") == "ConfigMap" and "config.yaml" in (d.get("data") or {})]
    if len(maps) != 1:
        raise SystemExit(f"expected one ConfigMap with config.yaml, found {len(maps)}")
    return maps[0]


def warren_container(docs):
    deployments = [d for d in docs if d.get("kind") == "Deployment"
                   and any(c["name"] == "warren" for c in d["spec"]["template"]["spec"]["containers"])]
    if len(deployments) != 1:
        raise SystemExit(f"expected one Deployment with a container named warren, found {len(deployments)}")
    pod = deployments[0]["spec"]["template"]["spec"]
    return deployments[0], next(c for c in pod["containers"] if c["name"] == "warren")


def cmd_config(args):
    path, out = args
    with open(out, "w") as f:
        f.write(warren_config_map(load_docs(path))["data"]["config.yaml"])
    return 0


PLACEHOLDERS = {
    "WARREN_AMQP_URL": "amqp://user:placeholder@rabbitmq:5672/%2f",
    "WARREN_AMQP_MANAGEMENT_URL": "http://user:placeholder@rabbitmq:15672/",
}


def cmd_env(args):
    docs = load_docs(args[0])
    _, container = warren_container(docs)
    secrets = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Secret"}
    for e in container.get("env", []):
        name = e["name"]
        if "value" in e:
            value = str(e["value"])
        else:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["name"] in secrets:
                value = secrets[ref["name"]].get("stringData", {}).get(ref["key"])
                if value is None:
                    continue
            elif ref:
                value = PLACEHOLDERS.get(name, "placeholder")
            else:
                value = "placeholder"  # downward API
        if "\n" in value:
            raise SystemExit(f"env {name} has a newline")
        print(f"{name}={value}")
    return 0


def seconds(text):
    """Seconds of a duration as `warren config check` prints it (humantime: "1m 30s")."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "days": 86400, "day": 86400}
    total = 0.0
    for n, unit in re.findall(r"([0-9]+)\s*([a-z]+)", text):
        if unit not in units:
            raise SystemExit(f"unknown duration unit in {text!r}")
        total += int(n) * units[unit]
    return total


def cmd_grace(args):
    path, checked = args
    deployment, _ = warren_container(load_docs(path))
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    with open(checked) as f:
        effective = yaml.safe_load(f)
    shutdown = seconds(effective["pool"]["shutdown_timeout"])
    if grace <= shutdown:
        print(f"terminationGracePeriodSeconds {grace} is not above pool.shutdown_timeout {shutdown}s", file=sys.stderr)
        return 1
    print(f"terminationGracePeriodSeconds {grace}s > pool.shutdown_timeout {shutdown:g}s")
    return 0


def kinds(docs):
    return {d["kind"] for d in docs}


def env_names(container):
    return {e["name"] for e in container.get("env", [])}


def check(condition, message, problems):
    if not condition:
        problems.append(message)


def secure_defaults(deployment, container, problems):
    pod = deployment["spec"]["template"]["spec"]
    psc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot is not true", problems)
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile is not RuntimeDefault", problems)
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true", problems)
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false", problems)
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities.drop is not [ALL]", problems)
    check(pod.get("enableServiceLinks") is False, "enableServiceLinks is not false", problems)
    check({"POD_NAME", "POD_NAMESPACE", "WARREN_CONFIG", "WARREN_AMQP_URL"} <= env_names(container),
          "POD_NAME, POD_NAMESPACE, WARREN_CONFIG or WARREN_AMQP_URL missing from env", problems)
    check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/livez", "liveness probe is not /livez", problems)
    check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe is not /readyz", problems)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    check("checksum/config" in annotations, "checksum/config annotation missing", problems)


def cmd_expect(args):
    case, path = args
    docs = load_docs(path)
    deployment, container = warren_container(docs)
    pod = deployment["spec"]["template"]["spec"]
    found = kinds(docs)
    problems = []
    secure_defaults(deployment, container, problems)
    for d in docs:
        labels = d["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"):
            check(key in labels, f"{d['kind']}/{d['metadata']['name']} lacks label {key}", problems)
    autoscaled = case in ("keda", "keda-auth", "hpa", "pod-deletion-cost")
    check(("replicas" in deployment["spec"]) != autoscaled,
          f"replicas {'present' if autoscaled else 'missing'} in the Deployment", problems)
    rbac = {"Role", "RoleBinding"} & found
    expected = {
        "default": ({"Deployment", "ConfigMap", "Secret", "Service", "ServiceAccount"},
                    {"Role", "RoleBinding", "HorizontalPodAutoscaler", "ScaledObject", "NetworkPolicy",
                     "ServiceMonitor", "PodMonitor", "PodDisruptionBudget", "TriggerAuthentication",
                     "CiliumNetworkPolicy", "ValidatingAdmissionPolicy", "PrometheusRule"}),
        "keda": ({"ScaledObject", "PodDisruptionBudget"}, {"HorizontalPodAutoscaler"}),
        "hpa": ({"HorizontalPodAutoscaler"}, {"ScaledObject"}),
        "existing-secret": (set(), {"Secret"}),
        "pod-deletion-cost": ({"Role", "RoleBinding", "ServiceAccount", "NetworkPolicy", "ScaledObject"}, set()),
        "keda-auth": ({"ScaledObject", "TriggerAuthentication"}, {"Secret", "HorizontalPodAutoscaler"}),
        "observability": ({"NetworkPolicy", "ServiceMonitor"}, {"PodMonitor"}),
        "http-sidecar": ({"PodMonitor"}, {"Service", "ServiceMonitor"}),
    }
    present, absent = expected.get(case, (set(), set()))
    check(present <= found, f"missing kinds: {sorted(present - found)}", problems)
    check(not (absent & found), f"unexpected kinds: {sorted(absent & found)}", problems)
    if case == "default":
        spread = pod.get("topologySpreadConstraints", [])
        check(spread and all(c.get("matchLabelKeys") == ["pod-template-hash"] and c.get("labelSelector") for c in spread),
              f"default topologySpreadConstraints lack matchLabelKeys [pod-template-hash]: {spread}", problems)
    tests = [d for d in docs if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    check(len(tests) == 1, f"{len(tests)} helm test Pods, want 1", problems)
    for t in tests:
        c = t["spec"]["containers"][0]
        check(c.get("args") == ["status"] and c["image"] == container["image"], "the test Pod does not run warren status in Warren's image", problems)
        check(not selects(deployment["spec"]["selector"]["matchLabels"], t["metadata"]["labels"]),
              "the test Pod carries the workers' selector labels", problems)
        check(t["spec"]["volumes"] == [v for v in pod["volumes"] if v["name"] == "config"], "the test Pod lacks the config volume", problems)
        url = lambda env: next(e for e in env if e["name"] == "WARREN_AMQP_URL")
        check(url(c["env"]) == url(container["env"]), "the test Pod gets another AMQP URL", problems)
    cost_env = "WARREN_KUBE_POD_DELETION_COST" in env_names(container)
    if case == "pod-deletion-cost":
        role = next(d for d in docs if d["kind"] == "Role")
        check(role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}],
              f"Role rules are {role['rules']}, want pods patch only (Warren never reads the pod)", problems)
        check({"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "CiliumNetworkPolicy"} <= found,
              "admission policy, its binding or the CiliumNetworkPolicy missing", problems)
        vap = next((d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"), None)
        if vap:
            sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
            condition = vap["spec"]["matchConditions"][0]["expression"]
            check(f"system:serviceaccount:workers:{sa}" in condition, f"policy matches {condition}, not the ServiceAccount", problems)
        check(pod.get("automountServiceAccountToken") is True, "API token not mounted", problems)
        check(cost_env, "WARREN_KUBE_POD_DELETION_COST missing", problems)
        np = next(d for d in docs if d["kind"] == "NetworkPolicy")
        ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
        check({443, 6443} <= ports, "NetworkPolicy has no API server egress", problems)
    else:
        check(not rbac, "RBAC rendered without podDeletionCost", problems)
        check(not cost_env, "WARREN_KUBE_POD_DELETION_COST set without podDeletionCost", problems)
        check(pod.get("automountServiceAccountToken") is False, "API token mounted without podDeletionCost", problems)
    if case == "keda":
        so = next(d for d in docs if d["kind"] == "ScaledObject")
        meta = so["spec"]["triggers"][0]["metadata"]
        check(meta.get("mode") == "QueueLength" and meta.get("hostFromEnv") == "WARREN_AMQP_MANAGEMENT_URL",
              f"keda trigger metadata {meta}", problems)
        check("scaleDown" in so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"], "no scale-down behavior", problems)
    if case == "keda-auth":
        so = next(d for d in docs if d["kind"] == "ScaledObject")
        trigger = so["spec"]["triggers"][0]
        check("hostFromEnv" not in trigger["metadata"] and trigger.get("authenticationRef"),
              f"trigger {trigger} does not take its host from the TriggerAuthentication", problems)
        check(so["spec"].get("fallback") and so["spec"].get("initialCooldownPeriod"), "no fallback or initialCooldownPeriod", problems)
        ref = next(e for e in container["env"] if e["name"] == "WARREN_AMQP_MANAGEMENT_URL")["valueFrom"]["secretKeyRef"]
        check(not ref.get("optional"), "the management URL KEDA needs is optional in the existing Secret", problems)
    if case == "alerts":
        rule = next(d for d in docs if d["kind"] == "PrometheusRule")
        names = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
        check(len(names) == 6, f"alerts {names}", problems)
        check(all(r["annotations"].get("runbook") for g in rule["spec"]["groups"] for r in g["rules"]),
              "an alert without runbook text", problems)
    if case == "hpa":
        hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
        types = [m["type"] for m in hpa["spec"]["metrics"]]
        check(types == ["External", "Resource"], f"HPA metrics {types}", problems)
        check(pod["terminationGracePeriodSeconds"] == 120, "explicit terminationGracePeriodSeconds not kept", problems)
    if case == "existing-secret":
        ref = next(e for e in container["env"] if e["name"] == "WARREN_AMQP_URL")["valueFrom"]["secretKeyRef"]
        check(ref == {"name": "rabbitmq-credentials", "key": "uri"}, f"WARREN_AMQP_URL from {ref}", problems)
        check("checksum/secret" not in deployment["spec"]["template"]["metadata"]["annotations"],
              "checksum/secret for a Secret the chart does not render", problems)
    if case == "observability":
        check({"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} <= env_names(container), "OTEL env missing", problems)
        np = next(d for d in docs if d["kind"] == "NetworkPolicy")
        check([p["port"] for p in np["spec"]["ingress"][0]["ports"]] == [9090], "ingress is not the metrics port only", problems)
        ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
        check({53, 5672, 4317, 4318} <= ports and not ({443, 6443} & ports), f"egress ports {sorted(ports)}", problems)
        dashboards = [d for d in docs if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})]
        for d in dashboards:
            for name, text in (d.get("data") or {}).items():
                try:
                    json.loads(text)
                except ValueError as e:
                    problems.append(f"dashboard {name} is not JSON: {e}")
    if case == "http-sidecar":
        init = pod.get("initContainers", [])
        check(len(init) == 1 and init[0].get("restartPolicy") == "Always" and init[0]["name"] == "handler",
              "the sidecar is not a native sidecar named handler", problems)
        check(init and init[0].get("securityContext", {}).get("readOnlyRootFilesystem") is True,
              "the sidecar did not get the secure securityContext", problems)
    for p in problems:
        print(f"{case}: {p}", file=sys.stderr)
    return 1 if problems else 0


def leaf_keys(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaf_keys(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def cmd_documented(args):
    values_path, readme_path = args
    with open(values_path) as f:
        values = yaml.safe_load(f)
    with open(readme_path) as f:
        readme = f.read()
    # Probe and behavior sub-fields are documented with their parent.
    grouped = ("livenessProbe.", "readinessProbe.", "startupProbe.", "autoscaling.behavior.", "keda.behavior.",
               "resources.", "helmTest.resources.", "podSecurityContext.", "securityContext.", "networkPolicy.dns.to")
    missing = [k for k in leaf_keys(values)
               if f"`{k}`" not in readme and not any(k.startswith(g) for g in grouped)]
    missing += [g.rstrip(".") for g in grouped if f"`{g.rstrip('.')}`" not in readme]
    for k in missing:
        print(f"{readme_path}: value `{k}` is not documented", file=sys.stderr)
    return 1 if missing else 0


def cmd_alert_tests(args):
    import os
    path, tests_path, outdir = args
    rules = [d for d in load_docs(path) if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        raise SystemExit(f"{path}: expected one PrometheusRule, found {len(rules)}")
    groups = rules[0]["spec"]["groups"]
    with open(os.path.join(outdir, "rules.yaml"), "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    by_name = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    with open(tests_path) as f:
        tests = yaml.safe_load(f)
    tested = set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            rule = by_name.get(case["alertname"])
            if rule is None:
                raise SystemExit(f"{tests_path}: no rendered alert {case['alertname']}")
            tested.add(case["alertname"])
            for alert in case.get("exp_alerts") or []:
                labels = alert.get("exp_labels", {})
                for key in ("summary", "runbook"):
                    text = rule["annotations"][key]
                    alert.setdefault("exp_annotations", {})[key] = re.sub(
                        r"\{\{ \$labels\.([a-z_]+) \}\}", lambda m: str(labels.get(m.group(1), "")), text)
    untested = sorted(set(by_name) - tested)
    if untested:
        raise SystemExit(f"{tests_path}: no test for {', '.join(untested)}")
    with open(os.path.join(outdir, os.path.basename(tests_path)), "w") as f:
        yaml.safe_dump(tests, f, sort_keys=False)
    print(f"{len(by_name)} alerts, {sum(len(t.get('alert_rule_test', [])) for t in tests['tests'])} evaluations")
    return 0


COMMANDS = {"alert-tests": cmd_alert_tests, "validate": cmd_validate, "config": cmd_config, "env": cmd_env, "grace": cmd_grace,
            "expect": cmd_expect, "documented": cmd_documented}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
