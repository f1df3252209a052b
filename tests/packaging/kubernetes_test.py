#!/usr/bin/python3
"""Checks packaging/kubernetes/: every manifest loads, and what the project
promises about them holds (least privilege, every node, resources, only the
scraper let in). Uses Debian's python3-yaml; with kubectl installed, also
renders the kustomization offline (kubectl kustomize) and checks the
rendered objects the same way; the ConfigMap's config.toml must pass the
daemon's --check-config.

    kubernetes_test.py SOURCE_DIR DAEMON

Exit status 0 pass, 1 fail, 77 skipped (python3-yaml missing).
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(77)

KINDS = {"Namespace", "ConfigMap", "DaemonSet", "Service", "PodMonitor", "NetworkPolicy"}
APP = {"app.kubernetes.io/name": "pmu-exporter"}


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def mib(quantity):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / (1024 * 1024)


def millicores(quantity):
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def check_objects(objects, where):
    by_kind = {}
    for obj in objects:
        check(isinstance(obj, dict) and "kind" in obj and "apiVersion" in obj,
              f"{where}: a document without kind/apiVersion: {obj!r}")
        check(obj["kind"] not in by_kind, f"{where}: two {obj['kind']} objects")
        by_kind[obj["kind"]] = obj
        meta = obj.get("metadata", {})
        check(meta.get("name"), f"{where}: {obj['kind']} without a name")
        if obj["kind"] != "Namespace":
            check(meta.get("namespace") == "monitoring",
                  f"{where}: {obj['kind']} not in namespace monitoring")
    check(set(by_kind) == KINDS, f"{where}: kinds {sorted(by_kind)}, expected {sorted(KINDS)}")

    ds = by_kind["DaemonSet"]
    check(ds["apiVersion"] == "apps/v1", "DaemonSet apiVersion")
    spec = ds["spec"]
    template = spec["template"]
    pod = template["spec"]
    check(spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items(),
          "the DaemonSet's selector does not match its pod labels")
    # Every node: one toleration that tolerates every taint.
    check({"operator": "Exists"} in pod.get("tolerations", []),
          f"no toleration for every taint: {pod.get('tolerations')}")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        check(pod.get(key, False) is False, f"{key} must be false")
    check(pod.get("automountServiceAccountToken") is False, "service account token mounted")
    pod_sc = pod.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") is True, "pod does not require a non-root user")
    check(pod_sc.get("runAsUser", 0) != 0, "pod runs as UID 0")
    check(pod_sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"),
          "no seccomp profile")
    containers = pod["containers"]
    check(len(containers) == 1, "expected one container")
    c = containers[0]
    sc = c["securityContext"]
    check(sc.get("privileged", False) is False, "container is privileged")
    check(sc["capabilities"]["drop"] == ["ALL"], "capabilities are not all dropped")
    check(sc["capabilities"]["add"] == ["PERFMON"],
          f"capabilities added: {sc['capabilities']['add']}, expected PERFMON only")
    check(sc.get("readOnlyRootFilesystem") is True, "root filesystem is writable")
    # File capabilities need exec without no_new_privs.
    check(sc.get("allowPrivilegeEscalation") is True,
          "allowPrivilegeEscalation must stay true for the file capability to apply")
    res = c["resources"]
    for kind in ("requests", "limits"):
        check({"cpu", "memory"} <= set(res.get(kind, {})), f"resources.{kind} lacks cpu or memory")
    # From the measurements (docs/packaging.md): 10.7 MiB peak on 2 CPUs,
    # 36 MiB at 1024 CPUs x 16 events; 0.3-1.4 % of one core.
    check(mib(res["requests"]["memory"]) >= 10.7, "memory request below the measured RSS")
    check(mib(res["limits"]["memory"]) >= 36, "memory limit below the RSS at 1024 CPUs x 16 events")
    check(mib(res["limits"]["memory"]) <= 256, "memory limit far above any measurement")
    check(millicores(res["requests"]["cpu"]) >= 3, "CPU request below 0.3 % of a core")
    check(millicores(res["limits"]["cpu"]) >= 10 * millicores(res["requests"]["cpu"]),
          "CPU limit too close to the request: throttling would delay sampling")
    ports = {p["name"]: p for p in c["ports"]}
    check(ports.get("metrics", {}).get("containerPort") == 9842, "no metrics port 9842")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for name, mount in mounts.items():
        check(mount.get("readOnly") is True, f"volume {name} is mounted writable")
    host_paths = [v for v in volumes.values() if "hostPath" in v]
    check([v["hostPath"]["path"] for v in host_paths] == ["/sys/fs/cgroup"],
          f"host paths: {[v['hostPath']['path'] for v in host_paths]}, expected only /sys/fs/cgroup")
    check(volumes["config"]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"],
          "config volume does not name the ConfigMap")
    check(mounts["config"]["mountPath"] == "/etc/pmu-exporter", "config not at /etc/pmu-exporter")
    check(c["args"] == ["--config", "/etc/pmu-exporter/config.toml"], f"args {c['args']}")
    for probe in ("readinessProbe", "livenessProbe"):
        check(c[probe]["httpGet"]["port"] == "metrics", f"{probe} not on the metrics port")

    svc = by_kind["Service"]["spec"]
    check(svc.get("clusterIP") == "None", "Service is not headless")
    check(svc["selector"].items() <= template["metadata"]["labels"].items(),
          "Service selects no DaemonSet pod")
    check(any(p.get("targetPort") == "metrics" for p in svc["ports"]), "Service port")

    pm = by_kind["PodMonitor"]
    check(pm["apiVersion"] == "monitoring.coreos.com/v1", "PodMonitor apiVersion")
    check(pm["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items(),
          "PodMonitor selects no DaemonSet pod")
    endpoints = pm["spec"]["podMetricsEndpoints"]
    check(endpoints and all(e["port"] == "metrics" and e.get("path", "/metrics") == "/metrics"
                            for e in endpoints), "PodMonitor endpoints")

    np = by_kind["NetworkPolicy"]["spec"]
    check(np["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items(),
          "NetworkPolicy selects no DaemonSet pod")
    check(set(np["policyTypes"]) == {"Ingress", "Egress"}, "NetworkPolicy must govern both directions")
    check(np.get("egress") == [], "egress must be denied (the daemon connects nowhere)")
    check(len(np["ingress"]) == 1, "one ingress rule (the scraper) expected")
    rule = np["ingress"][0]
    check(rule.get("from") and all("podSelector" in peer for peer in rule["from"]),
          "ingress must name the scraper's pods, not whole namespaces or IP blocks")
    check([p["port"] for p in rule["ports"]] == ["metrics"], "ingress must be the metrics port only")
    return by_kind


def main():
    src = pathlib.Path(sys.argv[1])
    daemon = sys.argv[2]
    kdir = src / "packaging" / "kubernetes"
    kustomization = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        docs = [d for d in yaml.safe_load_all((kdir / name).read_text()) if d is not None]
        check(docs, f"{name}: no document")
        objects += docs
    listed = {pathlib.Path(r).name for r in kustomization["resources"]}
    on_disk = {p.name for p in kdir.glob("*.yaml")} - {"kustomization.yaml"}
    check(listed == on_disk, f"kustomization lists {sorted(listed)}, directory has {sorted(on_disk)}")
    by_kind = check_objects(objects, "manifests")
    print(f"manifests: {', '.join(sorted(by_kind))} load and pass the structural checks")

    # The ConfigMap's config.toml is a valid daemon configuration.
    with tempfile.TemporaryDirectory() as tmp:
        conf = pathlib.Path(tmp) / "config.toml"
        conf.write_text(by_kind["ConfigMap"]["data"]["config.toml"])
        run = subprocess.run([daemon, "--check-config", "--config", str(conf)],
                             capture_output=True, text=True)
        check(run.returncode == 0 and run.stdout.startswith("config OK"),
              f"--check-config on the ConfigMap: {run.stdout}{run.stderr}")
        print(f"ConfigMap config.toml: {run.stdout.strip()}")

    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("kubectl is not installed: the kustomization was not rendered (YAML checks only)")
        return
    env = dict(os.environ, KUBECONFIG="/dev/null")
    run = subprocess.run([kubectl, "kustomize", str(kdir)], capture_output=True, text=True, env=env)
    check(run.returncode == 0, f"kubectl kustomize: {run.stderr}")
    rendered = [d for d in yaml.safe_load_all(run.stdout) if d is not None]
    check_objects(rendered, "kubectl kustomize")
    print(f"kubectl kustomize ({kubectl}): {len(rendered)} objects rendered offline, same checks pass")


if __name__ == "__main__":
    main()
