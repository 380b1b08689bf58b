//! The fake Kubernetes API server of the tests (no cluster on these
//! machines: tests/fixtures/kubernetes/fake-apiserver.py, pods backed by
//! local Docker containers), checked against the installed kubectl as an
//! independent client: what crashlab's pod targets will be tested against
//! must answer as an API server does.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::{crashlab, docker_available, fixture};

fn kubectl_available() -> bool {
    let answers = Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
    common::available("kubectl", answers, "the fake API server is checked with kubectl (Debian package kubectl)")
}

/// The fake API server, serving `config`; stopped (SIGTERM: it removes its
/// containers) when dropped.
struct FakeApiServer {
    child: Child,
    port: u16,
}

impl FakeApiServer {
    fn start(dir: &Path, config: &serde_json::Value) -> FakeApiServer {
        let path = dir.join("cluster.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new("python3")
            .arg(fixture("kubernetes/fake-apiserver.py"))
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).parse().unwrap();
        FakeApiServer { child, port }
    }

    /// `kubectl --server ... ARGS`: its stdout; it must succeed.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .args(["20", "kubectl", &format!("--server=http://127.0.0.1:{}", self.port)])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(name, uid, ready)` of the pods of `app=kv`.
    fn pods(&self) -> Vec<(String, String, bool)> {
        let list: serde_json::Value =
            serde_json::from_str(&self.kubectl(&["get", "pods", "-n", "shop", "-l", "app=kv", "-o", "json"])).unwrap();
        let items = list["items"].as_array().unwrap();
        let field = |p: &serde_json::Value, f: &str| p["metadata"][f].as_str().unwrap().to_string();
        items
            .iter()
            .map(|p| (field(p, "name"), field(p, "uid"), p["status"]["containerStatuses"][0]["ready"] == true))
            .collect()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn demo_kv_image() -> String {
    let out = crashlab().args(["image", "build", "demo-kv"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// kubectl finds the pod by its label, ready; the Service's node port on
/// the node's address reaches it; a forced delete (grace 0) replaces it
/// with a pod of another name and uid no sooner than the workload's
/// recreate delay, ready again (kubectl's delete returns once it has seen
/// the pod's deletion on a watch); and the server, stopped, leaves no
/// container behind.
#[test]
fn the_fake_api_server_answers_kubectl_as_an_api_server_does() {
    if !docker_available() || !kubectl_available() {
        return;
    }
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let node_port: u16 = common::free_port().parse().unwrap();
    let config = serde_json::json!({
        "namespace": "shop",
        "image": demo_kv_image(),
        "workloads": [{
            "name": "kv", "labels": {"app": "kv"}, "container": "kv",
            "command": ["/crashlab", "demo-kv", "--host", "0.0.0.0", "--port", "{port}", "--data-dir", "/data"],
            "port": 7000, "node_port": node_port, "recreate_delay_ms": 400
        }]
    });
    let server = FakeApiServer::start(dir.path(), &config);
    let ready_pod = |deadline: Instant| loop {
        if let Some(pod) = server.pods().into_iter().find(|(.., ready)| *ready) {
            return pod;
        }
        assert!(Instant::now() < deadline, "no pod became ready: {:?}", server.pods());
        std::thread::sleep(Duration::from_millis(50));
    };
    let (name, uid, _) = ready_pod(Instant::now() + Duration::from_secs(30));

    let service = server.kubectl(&["get", "svc", "kv", "-n", "shop", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    assert_eq!(service, node_port.to_string());
    let node = server.kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].status.addresses[0].address}"]);
    assert!(std::net::TcpStream::connect((node.as_str(), node_port)).is_ok(), "the node port reaches the pod");

    let deleted = Instant::now();
    // kubectl waits for the pod's DELETED on a watch from the version it
    // deleted (the watch replays the deletion if it came first).
    let said = server.kubectl(&["delete", "pod", &name, "-n", "shop", "--grace-period=0", "--force"]);
    assert!(said.contains(&format!("pod \"{name}\" force deleted")), "{said}");
    let gone = server.kubectl(&["get", "pod", &name, "-n", "shop", "--ignore-not-found", "-o", "name"]);
    assert_eq!(gone.trim(), "", "the deleted pod is gone once kubectl returns");
    let (new_name, new_uid, _) = loop {
        let pod = ready_pod(Instant::now() + Duration::from_secs(30));
        if pod.0 != name {
            break pod;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let replaced = deleted.elapsed();
    assert!(new_uid != uid && new_name.starts_with("kv-"), "{new_name} {new_uid}");
    assert!(replaced >= Duration::from_millis(400), "replaced after {replaced:?}, before its 400 ms delay");

    drop(server);
    let left = common::labelled_containers("crashlab.fake-k8s");
    assert!(left.is_empty(), "the stopped server left its containers: {left:?}");
}
