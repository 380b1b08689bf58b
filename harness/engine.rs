//! The container engine, through bollard. Every container the harness
//! creates carries the label `crashlab.run=<run id>`, so that a run's
//! leftovers can be found and removed (`crashlab cleanup`, or the warning a
//! new run gives). Calls block on the shared I/O runtime: the rest of the
//! harness is threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EventMessage, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::proxy::runtime;

/// The label every container of a run carries.
pub const RUN_LABEL: &str = "crashlab.run";

#[derive(Debug, thiserror::Error)]
#[error("container engine: {what}: {source}")]
pub struct EngineError {
    pub what: String,
    pub source: bollard::errors::Error,
}

impl EngineError {
    /// The engine does not know the container (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self.source, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
    }
}

/// How long a pause keeps trying to freeze a container whose processes are
/// in uninterruptible sleep (see `Engine::pause`).
const FREEZE_PATIENCE: Duration = Duration::from_secs(2);

/// The runtime could not freeze every process at once (one was in
/// uninterruptible sleep); the engine says so only in its message.
fn is_freeze_contention(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 500, message }
        if message.contains("unable to freeze"))
}

/// A container's endpoint at a fixed address of a network.
fn fixed_address(address: IpAddr) -> bollard::models::EndpointSettings {
    let ipam = bollard::models::EndpointIpamConfig { ipv4_address: Some(address.to_string()), ..Default::default() };
    bollard::models::EndpointSettings { ipam_config: Some(ipam), ..Default::default() }
}

/// `172.18.0.0/16` as its first address and prefix length (IPv4 only).
fn parse_subnet(text: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    Some((address.parse().ok()?, prefix.parse().ok().filter(|p| *p <= 30)?))
}

fn err(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError { what, source }
}

/// What a container is made from.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Container ports published at the same number on `address`.
    pub ports: Vec<u16>,
    /// The host address the ports are published on: 127.0.0.1 on this
    /// machine; a remote host's own address, where the control node
    /// reaches it.
    pub address: String,
    /// `(host path, container path)` bind mounts.
    pub binds: Vec<(String, String)>,
    /// Docker's own `restart: always`, instead of the harness's.
    pub engine_restarts: bool,
    pub labels: Vec<(String, String)>,
    /// A network of the run and the container's fixed address on it;
    /// none: the engine's default bridge, at an address it picks.
    pub network: Option<(String, IpAddr)>,
}

/// What inspect says of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    /// Its main process, as the host sees it (0 when not running).
    pub pid: i32,
    pub exit_code: i64,
    /// Whether the OOM killer killed it (when it is not running).
    pub oom_killed: bool,
    /// `(container port, host port)` as published now.
    pub ports: Vec<(u16, u16)>,
    /// When the engine started its latest process and saw it exit, on the
    /// harness's clock: the engine's own dates, taken as it acted (the
    /// exit's by the runtime, ~3 ms after a SIGKILL, where its `die` event
    /// comes ~25 ms after).
    pub started_at: Option<Instant>,
    pub finished_at: Option<Instant>,
}

pub struct Engine {
    docker: Docker,
}

/// The engine's events about one container, as they come.
pub struct ContainerEvents {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<EventMessage, bollard::errors::Error>> + Send>>,
    stop: Arc<tokio::sync::Notify>,
}

/// Each `next` waits for the next event and gives its action (`start`,
/// `die`, `oom`, `kill`, ... as the engine names it); `None` once the
/// engine ended the stream (or failed it) or its stop handle was notified.
impl Iterator for ContainerEvents {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let (stream, stop) = (&mut self.stream, &self.stop);
        let message = runtime().block_on(async {
            tokio::select! {
                message = stream.next() => message.and_then(Result::ok),
                () = stop.notified() => None,
            }
        })?;
        Some(message.action.unwrap_or_default())
    }
}

/// An engine's RFC 3339 date on the harness's clock (`None`: never, which
/// the engine writes as year 1).
fn engine_date(date: &str) -> Option<Instant> {
    let date = humantime::parse_rfc3339_weak(date).ok()?;
    let nanos = date.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some(engine_time(i64::try_from(nanos).ok()?))
}

/// An engine's date (ns since the epoch) on the harness's monotonic clock.
/// A date ahead of ours, or older than the watcher can be late to read it
/// (5 s), is of a clock we do not share: it is dated when read.
fn engine_time(nanos: i64) -> Instant {
    let now = (Instant::now(), std::time::SystemTime::now());
    let then = std::time::UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64);
    match now.1.duration_since(then) {
        Ok(age) if age < Duration::from_secs(5) => now.0.checked_sub(age).unwrap_or(now.0),
        _ => now.0,
    }
}

/// A container's memory and CPU limits as the engine keeps them; 0 (or a
/// negative number): none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes.
    pub memory: i64,
    /// Memory and swap, bytes.
    pub memory_swap: i64,
    /// The CFS period, microseconds.
    pub cpu_period: i64,
    /// The CPU time per period, microseconds.
    pub cpu_quota: i64,
}

/// The largest memory limit the kernel takes, page-aligned: none.
const NO_MEMORY_LIMIT: i64 = i64::MAX & !0xfff;

impl Engine {
    /// Connects to the local engine and agrees on an API version.
    pub fn connect() -> Result<Engine, EngineError> {
        Engine::connect_at(None)
    }

    /// Connects to the engine at unix socket `socket`, or to the local
    /// engine (`DOCKER_HOST`, else the default socket).
    pub fn connect_at(socket: Option<&std::path::Path>) -> Result<Engine, EngineError> {
        let docker = match socket {
            Some(path) => {
                let path = path.to_string_lossy();
                Docker::connect_with_socket(&path, 120, bollard::API_DEFAULT_VERSION)
                    .map_err(err(format!("cannot connect to {path}")))?
            }
            None => Docker::connect_with_local_defaults().map_err(err("cannot connect"))?,
        };
        let docker = runtime().block_on(docker.negotiate_version()).map_err(err("cannot agree on an API version"))?;
        runtime().block_on(docker.ping()).map_err(err("the engine does not answer"))?;
        Ok(Engine { docker })
    }

    pub fn image_exists(&self, image: &str) -> bool {
        runtime().block_on(self.docker.inspect_image(image)).is_ok()
    }

    /// `docker import`: a root file system tarball becomes `repo:tag`.
    pub fn import(&self, rootfs: Vec<u8>, repo: &str, tag: &str, changes: &[&str]) -> Result<(), EngineError> {
        let mut options = CreateImageOptionsBuilder::default().from_src("-").repo(repo).tag(tag);
        options = options.changes(changes.iter().map(|c| c.to_string()).collect());
        let body = bollard::body_full(rootfs.into());
        runtime().block_on(async {
            let mut stream = self.docker.create_image(Some(options.build()), Some(body), None);
            while let Some(item) = stream.next().await {
                item.map_err(err(format!("cannot import {repo}:{tag}")))?;
            }
            Ok(())
        })
    }

    /// Gives `image` another name, `repo:tag`.
    pub fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        let options = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        runtime()
            .block_on(self.docker.tag_image(image, Some(options)))
            .map_err(err(format!("cannot tag {image} as {repo}:{tag}")))
    }

    pub fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let exposed: HashMap<String, HashMap<(), ()>> =
            spec.ports.iter().map(|p| (format!("{p}/tcp"), HashMap::new())).collect();
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .ports
            .iter()
            .map(|p| {
                let binding = PortBinding { host_ip: Some(spec.address.clone()), host_port: Some(p.to_string()) };
                (format!("{p}/tcp"), Some(vec![binding]))
            })
            .collect();
        let host_config = HostConfig {
            binds: Some(spec.binds.iter().map(|(h, c)| format!("{h}:{c}")).collect()),
            port_bindings: Some(bindings),
            restart_policy: spec
                .engine_restarts
                .then_some(RestartPolicy { name: Some(RestartPolicyNameEnum::ALWAYS), maximum_retry_count: None }),
            network_mode: spec.network.as_ref().map(|(name, _)| name.clone()),
            ..Default::default()
        };
        let networking_config = spec.network.as_ref().map(|(name, address)| bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(name.clone(), fixed_address(*address))])),
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.command.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: Some(exposed.into_keys().collect()),
            labels: Some(spec.labels.iter().cloned().collect()),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = runtime()
            .block_on(self.docker.create_container(Some(options), body))
            .map_err(err(format!("cannot create container {}", spec.name)))?;
        Ok(created.id)
    }

    /// The memory and CPU limits the engine keeps for the container.
    pub fn limits(&self, id: &str) -> Result<Limits, EngineError> {
        let info =
            runtime().block_on(self.docker.inspect_container(id, None)).map_err(err(format!("cannot inspect {id}")))?;
        let host = info.host_config.unwrap_or_default();
        Ok(Limits {
            memory: host.memory.unwrap_or(0),
            memory_swap: host.memory_swap.unwrap_or(0),
            cpu_period: host.cpu_period.unwrap_or(0),
            cpu_quota: host.cpu_quota.unwrap_or(0),
        })
    }

    /// Sets the container's limits; they hold across its restarts.
    pub fn set_limits(&self, id: &str, limits: Limits) -> Result<(), EngineError> {
        // The engine reads 0 as "unchanged": no limit is the largest one
        // the kernel takes (memory), or -1 (CPU quota).
        let no_memory_limit = |n: i64| if n > 0 { n } else { NO_MEMORY_LIMIT };
        let body = bollard::models::ContainerUpdateBody {
            memory: Some(no_memory_limit(limits.memory)),
            memory_swap: Some(if limits.memory > 0 { limits.memory_swap } else { NO_MEMORY_LIMIT }),
            cpu_period: (limits.cpu_period > 0).then_some(limits.cpu_period),
            cpu_quota: Some(if limits.cpu_quota > 0 { limits.cpu_quota } else { -1 }),
            ..Default::default()
        };
        runtime().block_on(self.docker.update_container(id, body)).map_err(err(format!("cannot update {id}'s limits")))
    }

    pub fn start(&self, id: &str) -> Result<(), EngineError> {
        runtime().block_on(self.docker.start_container(id, None)).map_err(err(format!("cannot start {id}")))
    }

    pub fn kill(&self, id: &str, signal: &str) -> Result<(), EngineError> {
        let options = KillContainerOptionsBuilder::default().signal(signal).build();
        runtime().block_on(self.docker.kill_container(id, Some(options))).map_err(err(format!("cannot signal {id}")))
    }

    /// Freezes every process of the container. The runtime gives up on a
    /// freeze (cgroup v1, "unable to freeze") when a process stays in
    /// uninterruptible sleep through its own ~200 ms of tries: a write
    /// waiting on a slow fsync, or on a storage layer that delays it. The
    /// kernel freezes such a process as soon as its I/O returns, as it would
    /// deliver a SIGSTOP, so the freeze is tried again until
    /// `FREEZE_PATIENCE`, and is in effect when this returns. A failed try
    /// leaves the container running: the runtime thaws what it froze.
    pub fn pause(&self, id: &str) -> Result<(), EngineError> {
        let deadline = std::time::Instant::now() + FREEZE_PATIENCE;
        loop {
            let result = runtime().block_on(self.docker.pause_container(id));
            match result {
                Err(e) if is_freeze_contention(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => return other.map_err(err(format!("cannot pause {id}"))),
            }
        }
    }

    pub fn unpause(&self, id: &str) -> Result<(), EngineError> {
        runtime().block_on(self.docker.unpause_container(id)).map_err(err(format!("cannot unpause {id}")))
    }

    /// SIGTERM, then SIGKILL after `timeout`.
    pub fn stop(&self, id: &str, timeout: Duration) -> Result<(), EngineError> {
        let options = StopContainerOptionsBuilder::default().t(timeout.as_secs().max(1) as i32).build();
        runtime().block_on(self.docker.stop_container(id, Some(options))).map_err(err(format!("cannot stop {id}")))
    }

    pub fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        runtime().block_on(self.docker.remove_container(id, Some(options))).map_err(err(format!("cannot remove {id}")))
    }

    /// Takes the container off a network (a partition from everything on it,
    /// its published ports included).
    pub fn disconnect(&self, id: &str, network: &str) -> Result<(), EngineError> {
        let request = bollard::models::NetworkDisconnectRequest { container: id.to_string(), force: Some(true) };
        runtime()
            .block_on(self.docker.disconnect_network(network, request))
            .map_err(err(format!("cannot disconnect {id} from {network}")))
    }

    /// Puts the container back on a network, at `address` when it has a
    /// fixed one there.
    pub fn connect_network(&self, id: &str, network: &str, address: Option<IpAddr>) -> Result<(), EngineError> {
        let request = bollard::models::NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: address.map(fixed_address),
        };
        runtime()
            .block_on(self.docker.connect_network(network, request))
            .map_err(err(format!("cannot connect {id} to {network}")))
    }

    pub fn inspect(&self, id: &str) -> Result<ContainerState, EngineError> {
        let info =
            runtime().block_on(self.docker.inspect_container(id, None)).map_err(err(format!("cannot inspect {id}")))?;
        let state = info.state.unwrap_or_default();
        let ports = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let inside = k.split('/').next()?.parse().ok()?;
                let outside = v?.first()?.host_port.as_ref()?.parse().ok()?;
                Some((inside, outside))
            })
            .collect();
        Ok(ContainerState {
            running: state.running.unwrap_or(false),

            pid: state.pid.unwrap_or(0) as i32,
            exit_code: state.exit_code.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
            ports,
            started_at: state.started_at.as_deref().and_then(engine_date),
            finished_at: state.finished_at.as_deref().and_then(engine_date),
        })
    }

    /// The engine's events about container `id` from now on (none is lost
    /// between this call and the first wait for one: the
    /// engine replays them from the time asked), and a handle that ends
    /// the stream.
    pub fn container_events(&self, id: &str) -> (ContainerEvents, Arc<tokio::sync::Notify>) {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
        let filters = HashMap::from([("type", vec!["container"]), ("container", vec![id])]);
        let options =
            bollard::query_parameters::EventsOptionsBuilder::default().since(&since).filters(&filters).build();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stream = Box::pin(self.docker.events(Some(options)));
        (ContainerEvents { stream, stop: Arc::clone(&stop) }, stop)
    }

    /// Creates a bridge network labelled with the run, on a subnet the
    /// engine picks as free; returns its subnet's first address and prefix
    /// length. Only a subnet named at creation lets containers keep a fixed
    /// address across restarts, so the network is made twice: once to let
    /// the engine choose, then with that subnet as its own.
    /// The host's side of it is the bridge interface `bridge`.
    pub fn create_network(
        &self,
        name: &str,
        bridge: &str,
        run_label: &str,
    ) -> Result<(std::net::Ipv4Addr, u8), EngineError> {
        let what = || format!("cannot create network {name}");
        let labels = HashMap::from([(RUN_LABEL.to_string(), run_label.to_string())]);
        let options = HashMap::from([("com.docker.network.bridge.name".to_string(), bridge.to_string())]);
        let request = |ipam| bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            options: Some(options.clone()),
            ipam,
            ..Default::default()
        };
        runtime().block_on(self.docker.create_network(request(None))).map_err(err(what()))?;
        let info = runtime().block_on(self.docker.inspect_network(name, None)).map_err(err(what()));
        let _ = runtime().block_on(self.docker.remove_network(name));
        let subnet = info?
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| parse_subnet(c.subnet.as_deref()?))
            .ok_or_else(|| EngineError {
                what: what(),
                source: std::io::Error::other("the engine gave it no IPv4 subnet").into(),
            })?;
        let config =
            bollard::models::IpamConfig { subnet: Some(format!("{}/{}", subnet.0, subnet.1)), ..Default::default() };
        let ipam = bollard::models::Ipam { config: Some(vec![config]), ..Default::default() };
        if crate::crash_point::due("network-create") {
            // Killed while the engine creates it: it goes on without us.
            let (docker, request) = (self.docker.clone(), request(Some(ipam)));
            runtime().spawn(async move { docker.create_network(request).await });
            std::thread::sleep(std::time::Duration::from_millis(20));
            crate::crash_point::die();
        }
        runtime().block_on(self.docker.create_network(request(Some(ipam)))).map_err(err(what()))?;
        Ok(subnet)
    }

    pub fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        runtime().block_on(self.docker.remove_network(name)).map_err(err(format!("cannot remove network {name}")))
    }

    /// The names of the networks that carry `label` (`key=value`).
    pub fn labelled_networks(&self, label: &str) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let options = bollard::query_parameters::ListNetworksOptionsBuilder::default().filters(&filters).build();
        let list = runtime().block_on(self.docker.list_networks(Some(options))).map_err(err("cannot list networks"))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }

    /// The container's own address on the engine's network (none while it
    /// is not running).
    pub fn address(&self, id: &str) -> Result<Option<IpAddr>, EngineError> {
        let info =
            runtime().block_on(self.docker.inspect_container(id, None)).map_err(err(format!("cannot inspect {id}")))?;
        let networks = info.network_settings.and_then(|n| n.networks).unwrap_or_default();
        Ok(networks.into_values().find_map(|n| n.ip_address.and_then(|a| a.parse().ok())))
    }

    /// The last `n` lines the container printed (stdout and stderr).
    pub fn logs(&self, id: &str, n: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&n.to_string()).build();
        runtime().block_on(async {
            let mut stream = self.docker.logs(id, Some(options));
            let mut frames = Vec::new();
            while let Some(Ok(frame)) = stream.next().await {
                frames.push(frame.to_string());
            }
            lines_of(&frames)
        })
    }

    /// Containers (running or not) carrying `label`, or `label=value`:
    /// `(id, name, value of RUN_LABEL)`.
    pub fn labelled(&self, label: &str) -> Result<Vec<(String, String, String)>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list =
            runtime().block_on(self.docker.list_containers(Some(options))).map_err(err("cannot list containers"))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let run = c.labels.as_ref().and_then(|l| l.get(RUN_LABEL)).cloned().unwrap_or_default();
                let name = c.names.unwrap_or_default().first().cloned().unwrap_or_default();
                (c.id.unwrap_or_default(), name.trim_start_matches('/').to_string(), run)
            })
            .collect())
    }
}

/// The lines of a log that came in frames. A frame is not a line: a line
/// can come cut in two (bollard#285; seen here in a clock test's log as a
/// line that was only `skew `), so the frames are joined before the lines
/// are cut.
fn lines_of(frames: &[String]) -> Vec<String> {
    frames.concat().lines().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_across_two_frames_is_one_line() {
        let frames = ["skew 0.000\nskew ", "3600.000\n", "skew 3600.000\n"].map(String::from);
        assert_eq!(lines_of(&frames), ["skew 0.000", "skew 3600.000", "skew 3600.000"]);
    }

    fn nanos_ago(ago: Duration) -> i64 {
        let then = std::time::SystemTime::now() - ago;
        then.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
    }

    #[test]
    fn an_engine_date_is_placed_on_the_harness_clock_unless_the_clocks_differ() {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (before, at) = (Instant::now(), engine_time(nanos_ago(Duration::from_millis(40))));
        assert!((ms(before - at) - 40.0).abs() < 5.0, "40 ms ago: {:.1} ms before", ms(before - at));
        // Ahead of our clock, or older than a look can be late: another clock's.
        for date in [nanos_ago(Duration::ZERO) + 3_000_000_000, nanos_ago(Duration::from_secs(3600))] {
            let (before, at) = (Instant::now(), engine_time(date));
            assert!(at >= before && at - before < Duration::from_millis(5));
        }
    }

    #[test]
    fn an_engine_date_as_inspect_writes_it_is_read_to_the_nanosecond_and_year_one_is_never() {
        let now = std::time::SystemTime::now() - Duration::from_millis(30);
        let nanos = now.duration_since(std::time::UNIX_EPOCH).unwrap();
        let secs = humantime::format_rfc3339_seconds(now).to_string();
        // As the engine writes it: nanoseconds, trailing zeros trimmed.
        let date = format!("{}.{:09}", secs.trim_end_matches('Z'), nanos.subsec_nanos());
        let date = format!("{}Z", date.trim_end_matches('0'));
        let at = engine_date(&date).expect(&date);
        let ago = at.elapsed().as_secs_f64() * 1000.0;
        assert!((ago - 30.0).abs() < 5.0, "{date}: {ago:.1} ms ago");
        assert_eq!(engine_date("0001-01-01T00:00:00Z"), None);
    }
}
