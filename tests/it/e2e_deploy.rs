//! The deployment pack: the Kubernetes manifests validate against the Kubernetes schemas
//! (`kubernetes-validate`, offline, strict), the kustomization names files that exist, the
//! PrometheusRule holds exactly the shipped alert rules, the StatefulSet variant runs the same
//! pods as the Deployment, the ConfigMap's configuration passes `herald config check` (and
//! `--ha` says what it does), and the Compose file has two read-only nodes.

use std::path::Path;
use std::process::Command;

const CHECKS: &str = r#"
import json, sys, yaml
root = sys.argv[1]
k = root + "/deploy/kubernetes/"
kust = yaml.safe_load(open(k + "kustomization.yaml"))
out = {"resources": kust["resources"], "images": [i["name"] for i in kust["images"]]}
docs = {}
for r in kust["resources"] + ["durable-spool/statefulset.yaml", "secret.example.yaml"]:
    docs[r] = yaml.safe_load(open(k + r))
dep, sts = docs["deployment.yaml"], docs["durable-spool/statefulset.yaml"]
out["containers"] = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
pod_d = json.loads(json.dumps(dep["spec"]["template"]))
pod_s = json.loads(json.dumps(sts["spec"]["template"]))
pod_d["spec"]["volumes"] = [v for v in pod_d["spec"]["volumes"] if v["name"] != "data"]
out["same_pods"] = pod_d == pod_s
out["claims"] = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
alerts = yaml.safe_load(open(root + "/deploy/prometheus/alerts.yml"))
out["same_rules"] = docs["prometheusrule.yaml"]["spec"]["groups"] == alerts["groups"]
out["pdb_min"] = docs["pdb.yaml"]["spec"]["minAvailable"]
out["config"] = docs["configmap.yaml"]["data"]["herald.toml"]
c = dep["spec"]["template"]["spec"]["containers"][0]
out["probes"] = {p: c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
out["read_only"] = c["securityContext"]["readOnlyRootFilesystem"]
out["non_root"] = dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
out["grace"] = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
out["spread"] = [t["topologyKey"] for t in dep["spec"]["template"]["spec"]["topologySpreadConstraints"]]
compose = yaml.safe_load(open(root + "/deploy/compose/compose.yaml"))
out["compose"] = {n: s.get("read_only", False) for n, s in compose["services"].items()}
print(json.dumps(out))
"#;

#[test]
fn the_kubernetes_manifests_validate_and_agree_with_the_rest() {
    let root = env!("CARGO_MANIFEST_DIR");
    let k = Path::new(root).join("deploy/kubernetes");
    let mut files: Vec<String> = Vec::new();
    for dir in [k.clone(), k.join("durable-spool")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                files.push(p.display().to_string());
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}");
    let out = Command::new(crate::utils::python())
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(&files)
        .output()
        .expect("python runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    for kind in [
        "deployment/herald",
        "statefulset/herald",
        "service/herald",
        "poddisruptionbudget/herald",
        "configmap/herald-config",
        "secret/herald-secrets",
    ] {
        assert!(
            said.contains(&format!("passed for resource {kind}")),
            "{kind}: {said}"
        );
    }
    // Only the Prometheus Operator's kinds have no schema here.
    for line in said.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            line.contains("ServiceMonitor") || line.contains("PrometheusRule"),
            "{line}"
        );
    }

    let out = Command::new(crate::utils::python())
        .args(["-c", CHECKS, root])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in v["resources"].as_array().unwrap() {
        assert!(k.join(r.as_str().unwrap()).exists(), "{r}");
    }
    assert_eq!(v["images"], serde_json::json!(["herald"]));
    assert_eq!(v["containers"], serde_json::json!(["herald"]));
    assert_eq!(
        v["same_pods"], true,
        "the StatefulSet runs the Deployment's pods"
    );
    assert_eq!(v["claims"], serde_json::json!(["data"]));
    assert_eq!(
        v["same_rules"], true,
        "prometheusrule.yaml holds deploy/prometheus/alerts.yml"
    );
    assert_eq!(v["pdb_min"], 2);
    assert_eq!(v["probes"]["livenessProbe"], "/healthz");
    assert_eq!(v["probes"]["readinessProbe"], "/readyz");
    assert_eq!(v["probes"]["startupProbe"], "/healthz");
    assert_eq!(v["read_only"], true);
    assert_eq!(v["non_root"], true);
    assert_eq!(
        v["spread"],
        serde_json::json!(["topology.kubernetes.io/zone", "kubernetes.io/hostname"])
    );
    assert_eq!(
        v["compose"],
        serde_json::json!({"postgres": false, "herald-1": true, "herald-2": true})
    );

    // The ConfigMap's configuration is one Herald accepts, with a grace inside the pod's.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("herald.toml");
    std::fs::write(&cfg, v["config"].as_str().unwrap()).unwrap();
    let env = [
        (
            "HERALD_DATABASE_URL",
            "postgres://herald:x@postgres-rw:5432/herald",
        ),
        ("HERALD_METRICS_KEY", "metrics-key-0123456789abcdef"),
    ];
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
        c.args(args).env_remove("HERALD_CONFIG");
        for (k, val) in env {
            c.env(k, val);
        }
        c.output().unwrap()
    };
    let out = run(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("shutdown_grace = \"20s\""), "{shown}");
    assert!(v["grace"].as_i64().unwrap() > 20);
    // What the HA check says of it: backups are left to you (a volume, or a CronJob).
    let out = run(&[
        "config",
        "check",
        "--ha",
        "--format",
        "json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            "backup.every",
            "backup.encrypt_to",
            "backup.dir",
            "backup.offsite"
        ],
        "{found}"
    );
}
