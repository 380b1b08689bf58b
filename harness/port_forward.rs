//! A local port that reaches a pod target's pods through the Kubernetes
//! API's port-forward, for clusters whose nodes this machine cannot reach
//! (kind, k3d, a private cluster): the probe and the workload connect to
//! 127.0.0.1 and each connection is forwarded to one of the target's pods
//! that is not being deleted (a ready one if there is one). The pods are
//! the ones the target's watch keeps current, so a replacement is reached
//! as soon as it exists, not when the cluster calls it ready: the probe
//! measures the service itself, and the cluster's readiness stays a signal
//! of its own beside it. With no such pod a connection is reset at once
//! (as kube-proxy rejects it), never held.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

use crate::cluster::{Cluster, PodInfo};

/// The local end; forwarding stops when it is dropped.
pub struct PortForward {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl PortForward {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards each
    /// connection to `port` of a pod of `pods` not being deleted, a ready
    /// one first.
    pub fn open(
        cluster: Arc<Cluster>,
        namespace: String,
        pods: Arc<Mutex<Vec<PodInfo>>>,
        port: u16,
    ) -> std::io::Result<PortForward> {
        let runtime = crate::proxy::runtime();
        let listener = runtime.block_on(TcpListener::bind(("127.0.0.1", 0)))?;
        let local = listener.local_addr()?.port();
        let task = runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let live = pods.lock().unwrap().iter().filter(|p| !p.terminating).max_by_key(|p| p.ready).cloned();
                let ready = live.map(|p| p.name);
                let (cluster, namespace) = (Arc::clone(&cluster), namespace.clone());
                tokio::spawn(async move {
                    match ready {
                        Some(pod) => relay(client, &cluster, &namespace, &pod, port).await,
                        None => reset(client),
                    }
                });
            }
        });
        Ok(PortForward { port: local, task })
    }
}

/// Copies both ways until either side ends; a forward the API refuses
/// resets the client.
async fn relay(mut client: TcpStream, cluster: &Cluster, namespace: &str, pod: &str, port: u16) {
    match cluster.forward(namespace, pod, port).await {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(_) => reset(client),
    }
}

/// Closes with a RST: the client sees a refusal, not a connection that
/// hangs or ends cleanly.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
