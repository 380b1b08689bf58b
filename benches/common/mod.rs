//! What the benches share: a demo-kv server of this build, ready.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crashlab::workload::demo_kv::DemoKv;

/// demo-kv (`--fsync never`: the disk must not hide the harness's cost) in
/// a data dir of its own, and the workload that writes to it.
pub struct DemoKvServer {
    child: Child,
    pub workload: DemoKv,
    _data: tempfile::TempDir,
}

impl DemoKvServer {
    pub fn start() -> DemoKvServer {
        let port = crashlab::targets::free_port().unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_crashlab"))
            .args(["demo-kv", "--fsync", "never", "--port", &port.to_string(), "--data-dir"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.any(|l| l.unwrap().starts_with("ready")));
        let workload = DemoKv { addr: SocketAddr::from(([127, 0, 0, 1], port)), timeout: Duration::from_secs(2) };
        DemoKvServer { child, workload, _data: data }
    }
}

impl Drop for DemoKvServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
