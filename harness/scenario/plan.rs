//! The validated, immutable plan of a scenario. Only [`super::compile`] makes one.

use std::path::PathBuf;
use std::time::Duration;

use crate::duration::TimeSpec;
pub use crate::kinds::{FaultName, Owner, OwnerKind, Reach, StepName};
use crate::scenario::expect::Expectation;

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// Where the scenario came from (for messages and for `analyze`).
    pub source_path: PathBuf,
    pub targets: Vec<TargetPlan>,
    /// Remote hosts (`[host.NAME]`) that targets run on.
    pub hosts: Vec<HostPlan>,
    /// Fault proxies in front of targets' ports.
    pub proxies: Vec<ProxyPlan>,
    /// Whether process targets get network namespaces of their own.
    pub network: NetworkPlan,
    pub workload: Option<WorkloadPlan>,
    pub faults: Vec<FaultPlan>,
    /// Backups taken on the timeline, before the faults, for `restore` steps.
    pub backups: Vec<BackupPlan>,
    /// The runbook: what recovery takes when the service cannot heal itself.
    pub recover: Vec<RecoverStep>,
    pub expectations: Vec<Expectation>,
    pub trials: TrialsPlan,
    /// When the run stops itself, healing every fault at once.
    pub abort: Option<AbortPlan>,
}

/// `[abort]`: conditions that stop the run, for a run against anything
/// shared. Any one fires.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortPlan {
    /// A target whose every probe sample failed for longer than this.
    pub unhealthy_for: Option<Duration>,
    /// More acknowledged writes lost than this, over the trials so far.
    pub lost_acked: Option<u64>,
    /// A command (an SLO check) that must keep exiting 0, run every
    /// `interval` while a trial runs.
    pub command: Option<Vec<String>>,
    pub interval: Duration,
}

impl Plan {
    pub fn target(&self, name: &str) -> Option<&TargetPlan> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// A container target's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePlan {
    /// An image the engine has (`crashlab/demo-kv` is built here).
    Named(String),
    /// A Debian image with these packages, built on demand with
    /// mmdebstrap (`image = { debian = ["redis-server"] }`).
    Debian(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub name: String,
    pub kind: TargetKind,
    /// The image of a container target.
    pub image: Option<ImagePlan>,
    /// A compose target's file (resolved against the scenario's directory)
    /// and service.
    pub compose: Option<(PathBuf, String)>,
    /// Program and arguments; `{port}`, `{data_dir}`, `{run_dir}` and
    /// `{trial}` are filled in per trial. A program named `crashlab` is this
    /// very binary.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub restart: RestartPolicy,
    /// How long a graceful stop waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// What a graceful stop sends a process target first (PostgreSQL's
    /// fast shutdown is SIGINT; its SIGTERM waits for every client).
    pub stop_signal: nix::sys::signal::Signal,
    pub probe: ProbePlan,
    /// Commands run once per trial before the first start / after the last stop.
    pub before_start: Vec<Vec<String>>,
    pub after_stop: Vec<Vec<String>>,
    /// A data dir of the scenario's choosing (templated); by default the
    /// harness makes a fresh one per trial under the run directory.
    pub data_dir: Option<String>,
    /// Whether storage faults may damage the data dir. Always true for the
    /// harness's own per-trial data dirs; a `data_dir` of the scenario's
    /// choosing must say so.
    pub disposable: bool,
    /// A container target's extra bind mounts: `(host path, path inside)`,
    /// the host path resolved against the scenario's directory; the inside
    /// path ends in `:ro` for a read-only one.
    pub mounts: Vec<(PathBuf, String)>,
    /// The `[host.NAME]` a process target runs on, through its agent;
    /// none: this machine.
    pub host: Option<String>,
    /// A pod target's namespace, selector, service and cluster.
    pub pod: Option<PodPlan>,
    /// How the harness reaches a container target it creates on this
    /// machine; every other target: where it listens.
    pub reach: Reach,
}

/// What selects a pod target's pods, and how the cluster is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    /// Named by the scenario, never guessed: no default namespace, and
    /// `kube-system` only when written here.
    pub namespace: String,
    /// `key = value` labels, all of which a pod must carry.
    pub selector: Vec<(String, String)>,
    /// The container of the pod the service runs in; none: its first.
    pub container: Option<String>,
    /// How the probe and the workload reach the pods from here.
    pub reach: PodReach,
    /// The kubeconfig, relative to the scenario; none: `KUBECONFIG`, else
    /// ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// Its context; none: the file's current one.
    pub context: Option<String>,
    /// The workload that owns the pods, for `scale` faults.
    pub owner: Option<Owner>,
}

/// A `chaos-mesh` fault: the custom resource's kind and its `spec` as the
/// scenario wrote it; crashlab adds the selector (the target's pods, and
/// only those), the mode (`all`, unless written) and the duration.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosPlan {
    pub kind: crate::kinds::ClusterObjectKind,
    pub spec: serde_json::Value,
    pub duration: Duration,
    /// The scenario line of its `[[fault]]`: an error found when the
    /// cluster is asked (no Chaos Mesh there) names it.
    pub line: usize,
}

/// How the probe and the workload reach a pod target's pods from here
/// (`{host}`, `{port}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodReach {
    /// A NodePort Service: a node's address and the node port.
    Service(String),
    /// A port of the pods, forwarded through the API: each connection to a
    /// local port goes to a ready pod, for clusters whose nodes this
    /// machine cannot reach.
    PortForward(u16),
}

impl PodPlan {
    /// The selector as the API takes it: `app=kv,tier=db`.
    pub fn selector_text(&self) -> String {
        self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }
}

/// A remote host, reached over SSH (the user's ssh config and known_hosts
/// honoured, unless `known_hosts` names another file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostPlan {
    pub name: String,
    /// A name or an IP address.
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// The private key (`ssh -i`), relative to the scenario.
    pub identity: Option<PathBuf>,
    /// The known_hosts file to check the host's key against.
    pub known_hosts: Option<PathBuf>,
    /// The unix socket of the host's Docker engine, for its container
    /// targets; none: the host's default (`DOCKER_HOST`, else
    /// /var/run/docker.sock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<PathBuf>,
}

impl HostPlan {
    /// The destination as ssh takes it: `[user@]address`.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.address),
            None => self.address.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// The harness's supervisor starts the target again after it exits.
    Always { delay: Duration },
    /// An exit is final (only a `restart` fault starts it again).
    Never,
    /// The container engine's own `restart: always` (containers), or the
    /// cluster's (pods).
    Engine,
}

/// A target's `kind`: which backend runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum TargetKind {
    Process,
    Container,
    Compose,
    /// Pods of a Kubernetes cluster, through its API.
    Pod,
}

#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make a sustained healthy window.
    pub healthy_after: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ProbeKindName),
    derive(strum::EnumString, strum::IntoStaticStr, strum::VariantNames),
    strum(serialize_all = "kebab-case")
)]
pub enum ProbeKind {
    /// A TCP connect succeeds; with `send`, the answer must contain `expect`
    /// (a connect alone proves little behind a forwarder such as Docker's
    /// userland proxy, which accepts while the container is down).
    Tcp { port: PortRef, send: Option<String>, expect: Option<String> },
    /// An HTTP GET answers with `status` (and a body containing a text).
    Http { port: PortRef, path: String, status: u16, body_contains: Option<String> },
    /// A command exits 0.
    Command { argv: Vec<String> },
    /// demo-kv answers PING with PONG.
    DemoKv { port: PortRef },
}

impl ProbeKind {
    /// The port the probe reaches, if it reaches one.
    pub fn port(&self) -> Option<&PortRef> {
        match self {
            ProbeKind::Tcp { port, .. } | ProbeKind::Http { port, .. } | ProbeKind::DemoKv { port } => Some(port),
            ProbeKind::Command { .. } => None,
        }
    }
}

/// A port: the target's allocated `{port}`, a proxy's (`{proxy.NAME}`) or a
/// fixed number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Allocated,
    Proxy(String),
    Fixed(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkPlan {
    /// Targets share the host's network; `{host}` is 127.0.0.1.
    #[default]
    Host,
    /// Each target in a namespace of its own on a private bridge; `{host}`
    /// is its address there.
    Namespaces,
    /// Every target on a remote host (`host = "..."`, and no [network]):
    /// each reached at its host's address; a partition is iptables rules
    /// on the hosts, set by their agents.
    RemoteHosts,
}

impl NetworkPlan {
    /// Whether targets have addresses of their own that a partition can
    /// separate.
    pub fn partitionable(self) -> bool {
        matches!(self, NetworkPlan::Namespaces | NetworkPlan::RemoteHosts)
    }
}

/// One of the plan's targets, as a scenario names it, resolved when the
/// scenario is compiled: its place in [`Plan::targets`] (the runner's
/// targets are in the same order) and its name, for events and messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetRef {
    pub index: usize,
    pub name: String,
}

impl std::ops::Deref for TargetRef {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl PartialEq<String> for TargetRef {
    fn eq(&self, other: &String) -> bool {
        self.name == *other
    }
}

impl PartialEq<TargetRef> for String {
    fn eq(&self, other: &TargetRef) -> bool {
        *self == other.name
    }
}

impl PartialEq<&str> for TargetRef {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// A fault proxy: listens on a port of its own (`{proxy.NAME}`) and forwards
/// to the target's `{port}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPlan {
    pub name: String,
    pub target: TargetRef,
}

#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    pub client: WorkloadClient,
    pub target: TargetRef,
    /// A proxy the workload's clients go through, instead of straight to
    /// the target's port.
    pub via: Option<String>,
    /// Operations per second, open loop: issued on schedule whether or not
    /// earlier ones have finished (up to `connections` in flight).
    pub rate: u32,
    pub duration: Duration,
    pub connections: u32,
    /// An op that has no answer by then has an unknown outcome.
    pub timeout: Duration,
    /// After the workload stops, a period without writes in which faults
    /// may still fall (a power loss once the writes have quiesced).
    pub quiet: Duration,
}

impl WorkloadPlan {
    pub fn kind(&self) -> WorkloadKind {
        WorkloadKind::from(&self.client)
    }
}

/// Which client writes (the workload's `kind`), with what it needs.
#[derive(Debug, Clone, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(WorkloadKind),
    derive(strum::EnumString, strum::IntoStaticStr, strum::VariantNames),
    strum(serialize_all = "kebab-case")
)]
pub enum WorkloadClient {
    /// crashlab's own protocol (demo-kv, and services that speak it).
    DemoKv,
    /// `SET` through a Redis client.
    Redis,
    /// Sequenced events in PostgreSQL, one transaction each.
    Postgres,
    /// A request per write, built from templates; any HTTP service.
    Http(Box<HttpWorkload>),
    /// The user's own client program: one run per write, or one long-lived
    /// process per connection speaking a line protocol.
    Command(CommandWorkload),
    /// Statements from templates, through PostgreSQL's or MySQL's driver.
    Sql(Box<SqlWorkload>),
}

#[derive(Debug, Clone)]
pub struct SqlWorkload {
    pub engine: SqlEngine,
    /// `postgres://` or `mysql://` with `{host}`, `{port}` and the target's
    /// placeholders, filled in per trial.
    pub url: String,
    /// Statements run once per trial, before the first write.
    pub setup: Vec<String>,
    /// The write, with each placeholder replaced by a bind parameter.
    pub insert: SqlStatement,
    /// The read-back: rows of (key, value).
    pub select: String,
    /// Whether each write is BEGIN, insert, COMMIT (else autocommit).
    pub transaction: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum SqlEngine {
    Postgres,
    Mysql,
}

/// A statement with bind parameters (`$1` or `?`) where its template named
/// the write's key, value or sequence number, in order.
#[derive(Debug, Clone)]
pub struct SqlStatement {
    pub text: String,
    pub params: Vec<SqlParam>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlParam {
    Key,
    Value,
    Seq,
}

#[derive(Debug, Clone)]
pub struct HttpWorkload {
    pub write: HttpRequest,
    /// Statuses that acknowledge a write; empty: every 2xx.
    pub ack: Vec<u16>,
    /// Statuses that the outcome table would call unknown (408, 429, 5xx)
    /// but that this service answers only when it did not apply the write.
    pub refused: Vec<u16>,
    pub read: HttpRead,
}

/// A request template; its path is appended to `http://{host}:{port}`.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpRead {
    pub request: HttpRequest,
    pub shape: ReadShape,
    /// Keys and values come base64-encoded (etcd's JSON gateway).
    pub base64: bool,
}

/// How a read-back finds what the store holds.
#[derive(Debug, Clone)]
pub enum ReadShape {
    /// One request per written key; 404 means absent.
    PerKey(ValueAt),
    /// Requests that list every key, page after page.
    List(ListRead),
}

/// Where a per-key answer holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueAt {
    /// The whole body (trimmed).
    Body,
    /// What a JSON pointer (RFC 6901) finds in the body.
    Pointer(String),
    /// The written value, if the body contains it anywhere.
    Contains,
}

#[derive(Debug, Clone)]
pub struct ListRead {
    pub format: ListFormat,
    /// JSON pointer to the array (or key → value object) in a `json` body.
    pub items: String,
    /// JSON pointers to an item's key and value (`json`, `ndjson`).
    pub key: String,
    pub value: String,
    /// JSON pointer to the next page's cursor in a `json` body; `{cursor}`
    /// in the request is filled with it (empty on the first page).
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum ListFormat {
    /// One JSON document: an array of items, or an object of key → value.
    Json,
    /// One JSON item per line.
    Ndjson,
    /// `key<TAB>value` per line.
    Lines,
}

#[derive(Debug, Clone)]
pub struct CommandWorkload {
    pub mode: CommandMode,
    /// Prints `key<TAB>value` for every key the store holds.
    pub read_back: Vec<String>,
    /// Where relative programs are found and where the commands run: the
    /// scenario's directory.
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum CommandMode {
    /// `write = [...]`, run once per write: exit 0 acknowledges, an exit
    /// code in `refused_exit` refuses, anything else is unknown.
    PerWrite { argv: Vec<String>, refused_exit: Vec<i32> },
    /// `client = [...]`, one process per connection reading `PUT <key>
    /// <value>` lines and answering `OK`, `FAIL <reason>` or `UNKNOWN`.
    Lines { argv: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub kind: FaultKind,
    /// The target; for a fault whose target is chosen at run time
    /// (`chosen_by`), the plan's first target until then, which stands for
    /// every target in the compiler's checks.
    pub target: TargetRef,
    /// A command run when the fault is due that prints the name of its
    /// target (`target = { command = [...] }`, or `isolate = { ... }` for a
    /// partition): the etcd member that is leader now, say.
    pub chosen_by: Option<Vec<String>>,
    /// When, on the trial's timeline; unused for a procedure's fault step.
    pub at: TimeSpec,
    /// Injected by a `fault` step of the recovery procedure, not on a timer.
    pub in_procedure: bool,
    /// Only sets up a condition for the faults that follow: opens no
    /// recovery window, so the trial's RTO is that of the others.
    pub setup: bool,
    /// A fault drawn for each trial, with its seed, from a menu of kinds
    /// and targets (`kind` and `target` are then the menu's first, standing
    /// for all of it in the compiler's checks).
    pub menu: Option<FaultMenu>,
}

/// `kind = ["kill", "pause"]`, `target = ["a", "b"]`: what a menu fault is
/// drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultMenu {
    pub kinds: Vec<FaultKind>,
    pub targets: Vec<TargetRef>,
}

impl FaultPlan {
    /// Whether it may be a hog on target `name` (itself, or drawn from
    /// its menu): a hog runs stress-ng where that target runs.
    pub fn may_hog(&self, name: &str) -> bool {
        self.may_be(name, |k| matches!(k, FaultKind::Hog(_)))
    }

    /// Whether it may be of a kind `is` picks, on target `name` (itself,
    /// or drawn from its menu).
    pub fn may_be(&self, name: &str, is: impl Fn(&FaultKind) -> bool) -> bool {
        let mut targets = std::iter::once(&self.target).chain(self.menu.iter().flat_map(|m| &m.targets));
        self.kinds().any(is) && targets.any(|t| t.name == name)
    }

    /// Every kind it may be: its own, and those its menu draws from.
    pub fn kinds(&self) -> impl Iterator<Item = &FaultKind> {
        std::iter::once(&self.kind).chain(self.menu.iter().flat_map(|m| &m.kinds))
    }

    /// The targets it may act on: its menu's, when it has one.
    pub fn target_names(&self) -> Vec<&str> {
        match &self.menu {
            Some(menu) => menu.targets.iter().map(|t| t.name.as_str()).collect(),
            None => vec![&self.target.name],
        }
    }

    /// The menu's fault of kind `kind` on target `target` (indices into
    /// the menu), as a trial's seed drew it.
    pub fn drawn(&self, kind: usize, target: usize, targets: &[TargetPlan]) -> FaultPlan {
        let menu = self.menu.as_ref().expect("a menu fault");
        let plan = FaultPlan { kind: menu.kinds[kind].clone(), menu: None, ..self.clone() };
        plan.aimed_at(menu.targets[target].clone(), targets)
    }

    /// The fault aimed at `target`, chosen at run time; an isolating
    /// partition cuts that target off from all of `targets`.
    pub fn aimed_at(&self, target: TargetRef, targets: &[TargetPlan]) -> FaultPlan {
        let mut kind = self.kind.clone();
        if let FaultKind::Partition(p) = &mut kind {
            if p.isolate {
                let others = targets.iter().map(|t| t.name.clone()).filter(|n| *n != target.name).collect();
                p.groups = [others, vec![target.name.clone()]];
            }
        }
        FaultPlan { kind, target, chosen_by: None, ..self.clone() }
    }

    /// The target as messages name it before the fault is injected.
    pub fn target_name(&self) -> String {
        match &self.chosen_by {
            Some(_) => "(chosen at run time)".to_string(),
            None => self.target.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Send a signal to the target's processes; `scope: None` is the
    /// target kind's default ([`crate::targets::Target::default_scope`]).
    Kill { signal: nix::sys::signal::Signal, scope: Option<SignalScope> },
    /// SIGSTOP, then SIGCONT after `duration`.
    Pause { duration: Duration },
    /// A command run against the target (templated like its own): the
    /// disaster of a runbook that is a mistake, e.g. a `DELETE` without
    /// `WHERE`. It must exit 0; the service is left as the command left it.
    Command { argv: Vec<String> },
    /// Graceful stop, then start (whatever the restart policy).
    Restart,
    /// Damage files of the target's data dir.
    Corrupt(CorruptPlan),
    /// A lock or pid file that outlives its owner.
    StaleLock(StaleLockPlan),
    /// Power loss: kill the target and discard every byte it wrote but did
    /// not fsync (needs the FUSE layer, mounted for the whole trial).
    LoseUnsynced { torn: bool },
    /// A fault of a proxy's links, healed after `duration` (a reset is a
    /// single blow).
    Link { proxy: String, direction: Direction, toxic: Toxic, duration: Option<Duration> },
    /// Kernel-level partition between targets' namespaces.
    Partition(PartitionPlan),
    /// A container taken off its network for `duration`.
    Disconnect { duration: Duration },
    /// Errors, delays or a full disk on the operations the target makes in
    /// its data dir, through the storage layer (FUSE).
    Io(IoPlan),
    /// Packets of a target's namespace lost (iptables `statistic`), or
    /// delayed, duplicated, corrupted, reordered (netem), for `duration`.
    Packet(PacketPlan),
    /// The target's wall clock jumped or drifting (libfaketime).
    Clock(ClockPlan),
    /// A memory limit on the target's processes (a cgroup), which the OOM
    /// killer enforces.
    Memory { limit: SizeLimit, duration: Option<Duration> },
    /// A CFS quota on the target's processes (a cgroup): `cpus` CPUs' worth
    /// of time per period, the rest of it throttled.
    Cpu { cpus: f64, duration: Option<Duration> },
    /// A noisy neighbour (stress-ng) on the target's machine.
    Hog(HogPlan),
    /// A pod target's current pod deleted through the API (its workload
    /// makes another); `grace: None` is the pod's own grace period.
    DeletePod { grace: Option<Duration> },
    /// A pod target's current pod evicted (the Eviction API, which a
    /// PodDisruptionBudget may refuse).
    EvictPod,
    /// A pod target's pods cut off, ingress and egress, by a NetworkPolicy
    /// created through the API and deleted after `duration`.
    IsolatePod { duration: Duration },
    /// A pod target's workload (`owner`) scaled to `replicas`, and back
    /// to what it was after `duration` (or at the end of the trial).
    Scale { replicas: u32, duration: Option<Duration> },
    /// A Chaos Mesh custom resource (what only a node agent can do: a
    /// NetworkChaos, IOChaos, TimeChaos or StressChaos) on a pod target's
    /// pods, created through the API and deleted after its duration.
    ChaosMesh(ChaosPlan),
}

/// A `hog` fault: stress-ng's workers, none of a kind where 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HogPlan {
    /// Workers spinning on the CPU.
    pub cpu: u32,
    /// Bytes kept allocated and touched.
    pub memory: u64,
    /// Workers writing and syncing files.
    pub io: u32,
    pub duration: Option<Duration>,
}

/// A `clock` fault: what the target's clock reads while it lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockPlan {
    /// Milliseconds ahead (negative: behind) of the real time.
    pub offset_ms: i64,
    /// How fast it runs from the fault on (1.0: as fast as the real one).
    pub rate: Option<f64>,
    /// Back to the real time after this; by default at the end of the trial.
    pub duration: Option<Duration>,
}

/// Which of a target's processes a signal reaches.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum SignalScope {
    /// The main process only (the one the target's command started).
    Main,
    /// The main process's process group: not what it started in a session
    /// of its own (PostgreSQL's backends call `setsid()`).
    Group,
    /// Every process the target started: for a process target the main
    /// process's whole tree (descendants, and any reparented to the harness
    /// after its parent died); for a container every process in it.
    All,
}

impl SignalScope {
    /// In the order `--help`, the schema and diagnostics list them.
    pub const NAMES: &'static [&'static str] = <SignalScope as strum::VariantNames>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn from_name(name: &str) -> Option<SignalScope> {
        name.parse().ok()
    }

    /// How a fault's detail names what was signalled.
    pub fn describe(self) -> &'static str {
        match self {
            SignalScope::Main => "only",
            SignalScope::Group => "and its process group",
            SignalScope::All => "and every process the target started",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    /// Traffic between `groups[0]` and `groups[1]` is dropped; with
    /// `one_way`, only what the first sends to the second. An isolated
    /// target is cut from everyone, the harness included.
    pub groups: [Vec<String>; 2],
    pub isolate: bool,
    pub one_way: bool,
    pub duration: Duration,
}

/// A `packet` fault on one target's namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketPlan {
    /// The targets whose packets to and from it are hit; empty: every
    /// address of the network (the harness's probes and workload too).
    pub peers: Vec<String>,
    pub direction: PacketDirection,
    /// iptables `statistic --mode random`: each packet dropped with this
    /// probability.
    pub loss: Option<f64>,
    /// What only the kernel's netem can do, on what the target sends.
    pub netem: Option<Netem>,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub enum PacketDirection {
    /// What the target receives and sends.
    Both,
    /// What it receives.
    In,
    /// What it sends.
    Out,
}

/// netem's parameters: a delay (with jitter, which reorders), and the
/// probabilities of duplication, corruption and reordering.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Netem {
    pub delay: Duration,
    pub jitter: Duration,
    pub duplicate: f64,
    pub corrupt: f64,
    pub reorder: f64,
}

/// What a link fault does to the connections through a proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Toxic {
    Blackhole,
    Refuse,
    Reset,
    Latency { delay: Duration, jitter: Duration },
    Bandwidth { bytes_per_second: u64 },
    SlowClose { delay: Duration },
    Timeout { delay: Duration },
    Slice { size: u64, delay: Duration },
    LimitData { bytes: u64 },
}

impl Toxic {
    pub fn name(&self) -> FaultName {
        match self {
            Toxic::Blackhole => FaultName::Blackhole,
            Toxic::Refuse => FaultName::Refuse,
            Toxic::Reset => FaultName::Reset,
            Toxic::Latency { .. } => FaultName::Latency,
            Toxic::Bandwidth { .. } => FaultName::Bandwidth,
            Toxic::SlowClose { .. } => FaultName::SlowClose,
            Toxic::Timeout { .. } => FaultName::Timeout,
            Toxic::Slice { .. } => FaultName::Slice,
            Toxic::LimitData { .. } => FaultName::LimitData,
        }
    }
}

/// Where a fault on a target on a remote host acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAHost {
    /// Through the target's own calls, forwarded to its agent (signals,
    /// restarts, commands).
    TargetCalls,
    /// The fault's own code, run by the agent there.
    Agent,
    /// Here, on the control node (a proxy in front of the host's port).
    ControlNode,
    /// Rules on each host involved, set by its agent (a partition).
    EachHost,
}

impl FaultKind {
    /// How this fault reaches a target on a remote host; none: it cannot
    /// yet (it needs namespaces or a preload set up with the target, which
    /// the agent does not do).
    pub fn on_a_host(&self) -> Option<OnAHost> {
        match self {
            FaultKind::Kill { .. } | FaultKind::Pause { .. } | FaultKind::Restart | FaultKind::Command { .. } => {
                Some(OnAHost::TargetCalls)
            }
            FaultKind::Corrupt(_)
            | FaultKind::StaleLock(_)
            | FaultKind::LoseUnsynced { .. }
            | FaultKind::Io(_)
            | FaultKind::Memory { .. }
            | FaultKind::Cpu { .. }
            | FaultKind::Hog(_) => Some(OnAHost::Agent),
            FaultKind::Link { .. } => Some(OnAHost::ControlNode),
            FaultKind::Partition(p) if !p.isolate => Some(OnAHost::EachHost),
            FaultKind::Partition(_)
            | FaultKind::Packet(_)
            | FaultKind::Disconnect { .. }
            | FaultKind::Clock(_)
            | FaultKind::DeletePod { .. }
            | FaultKind::EvictPod
            | FaultKind::IsolatePod { .. }
            | FaultKind::Scale { .. }
            | FaultKind::ChaosMesh(_) => None,
        }
    }

    pub fn name(&self) -> FaultName {
        match self {
            FaultKind::Kill { .. } => FaultName::Kill,
            FaultKind::Pause { .. } => FaultName::Pause,
            FaultKind::Restart => FaultName::Restart,
            FaultKind::Corrupt(_) => FaultName::Corrupt,
            FaultKind::StaleLock(_) => FaultName::StaleLock,
            FaultKind::LoseUnsynced { .. } => FaultName::LoseUnsynced,
            FaultKind::Link { toxic, .. } => toxic.name(),
            FaultKind::Partition(_) => FaultName::Partition,
            FaultKind::Disconnect { .. } => FaultName::Disconnect,
            FaultKind::Command { .. } => FaultName::Command,
            FaultKind::Io(_) => FaultName::Io,
            FaultKind::Packet(_) => FaultName::Packet,
            FaultKind::Clock(_) => FaultName::Clock,
            FaultKind::Memory { .. } => FaultName::Memory,
            FaultKind::Cpu { .. } => FaultName::Cpu,
            FaultKind::Hog(_) => FaultName::Hog,
            FaultKind::DeletePod { .. } => FaultName::DeletePod,
            FaultKind::EvictPod => FaultName::EvictPod,
            FaultKind::Scale { .. } => FaultName::Scale,
            FaultKind::IsolatePod { .. } => FaultName::IsolatePod,
            FaultKind::ChaosMesh(_) => FaultName::ChaosMesh,
        }
    }

    /// How long the fault stays in effect before it is healed; `None`: until
    /// the end of the trial.
    pub fn heal_after(&self) -> Option<Duration> {
        match self {
            FaultKind::Pause { duration } => Some(*duration),
            FaultKind::StaleLock(plan) => plan.duration,
            FaultKind::Link { duration, .. } => *duration,
            FaultKind::Partition(p) => Some(p.duration),
            FaultKind::Disconnect { duration } | FaultKind::IsolatePod { duration } => Some(*duration),
            FaultKind::Io(plan) => plan.duration,
            FaultKind::Packet(plan) => Some(plan.duration),
            FaultKind::Clock(plan) => plan.duration,
            FaultKind::Memory { duration, .. } | FaultKind::Cpu { duration, .. } => *duration,
            FaultKind::Hog(plan) => plan.duration,
            FaultKind::Scale { duration, .. } => *duration,
            FaultKind::ChaosMesh(plan) => Some(plan.duration),
            _ => None,
        }
    }

    /// Whether the fault touches the target's data dir (an `io` fault
    /// changes no byte itself, but a service whose writes fail may leave
    /// its files damaged).
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            FaultKind::Corrupt(_) | FaultKind::StaleLock(_) | FaultKind::LoseUnsynced { .. } | FaultKind::Io(_)
        )
    }

    /// Whether the fault acts through the storage layer, which must then be
    /// mounted over the target's data dir for the whole trial.
    pub fn needs_layer(&self) -> bool {
        matches!(self, FaultKind::LoseUnsynced { .. } | FaultKind::Io(_))
    }
}

/// An `io` fault: what happens to the operations that match it.
#[derive(Debug, Clone, PartialEq)]
pub struct IoPlan {
    /// A glob relative to the data dir (`*` stays within a directory, `**`
    /// crosses them); an operation on two paths (rename) matches by either.
    pub path: String,
    /// The operations it acts on; empty: every operation.
    pub ops: Vec<IoOp>,
    pub action: IoAction,
    /// Which of the matching operations it acts on.
    pub trigger: IoTrigger,
    /// Healed after this long; by default at the end of the trial.
    pub duration: Option<Duration>,
}

/// The operations of a data dir that an `io` fault can act on, as the
/// storage layer sees them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[strum(serialize_all = "kebab-case")]
pub enum IoOp {
    /// Opening an existing file.
    Open,
    /// Creating a file (`open` with `O_CREAT` of a new name).
    Create,
    Read,
    Write,
    /// `fsync`, `fdatasync`, and the sync of an `O_SYNC`/`O_DSYNC` write.
    Fsync,
    /// Changing a file's length (`truncate`, `ftruncate`).
    Truncate,
    Rename,
    Unlink,
    Mkdir,
    Rmdir,
    Readdir,
    /// Looking a name up and reading its attributes (`stat`).
    Stat,
}

impl IoOp {
    pub const NAMES: &'static [&'static str] = <IoOp as strum::VariantNames>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IoAction {
    /// The operation fails with this error (the raw errno) and does nothing.
    Errno(i32),
    /// The operation waits `delay` plus a seeded share of `jitter`, then runs.
    Delay { delay: Duration, jitter: Duration },
    /// ENOSPC for what would grow the data dir past a size.
    DiskFull(SizeLimit),
}

/// A size limit: of a data dir (the sum of its files' lengths) for a
/// `disk-full` fault, of a target's memory for a `memory` fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// `"64MiB"`: this much in all.
    Total(u64),
    /// `"+1MiB"`: this much more than when the fault is injected (`"+0"`:
    /// no more at all).
    Headroom(u64),
}

/// Which matching operations an `io` fault acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IoTrigger {
    Always,
    /// The Nth, 2Nth, ... (`every = N`).
    Every(u64),
    /// Each with this probability, drawn from the trial's seed.
    Probability(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorruptPlan {
    /// A glob relative to the data dir; every file it matches is damaged.
    pub path: String,
    pub mode: CorruptMode,
    pub when: When,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Stop the target (gracefully), damage, start it again.
    Offline,
    /// Damage the files under the running target.
    Online,
}

/// Where a damaged range starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Offset {
    /// Uniform over the file, from the trial's seed.
    Seeded,
    Bytes(u64),
    /// A fraction of the file's length (`"50%"`).
    Fraction(f64),
}

/// A length: bytes or a fraction of the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Bytes(u64),
    Fraction(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(CorruptModeName),
    derive(strum::EnumString, strum::IntoStaticStr, strum::VariantNames),
    strum(serialize_all = "kebab-case")
)]
pub enum CorruptMode {
    Bitflip {
        bits: u32,
        offset: Offset,
    },
    Zero {
        offset: Offset,
        length: u64,
    },
    Random {
        offset: Offset,
        length: u64,
    },
    /// Cut the file to a length.
    Truncate {
        to: Size,
    },
    /// Cut the last bytes, as a write interrupted by power loss; by default
    /// a seeded count between 1 and 512 bytes.
    TornTail {
        bytes: Option<u64>,
    },
    Delete,
    /// Exchange two non-overlapping blocks at seeded offsets.
    Swap {
        length: u64,
    },
}

impl CorruptMode {
    pub fn name(&self) -> &'static str {
        CorruptModeName::from(self).into()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaleLockPlan {
    pub variant: StaleLockVariant,
    /// The lock or pid file, relative to the data dir.
    pub path: String,
    /// The user the holder (or the unrelated live process) runs as; by
    /// default the harness's own.
    pub user: Option<String>,
    /// Heal (kill the holder) after this long; by default at the end of the trial.
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(StaleLockVariantName),
    derive(strum::EnumString, strum::IntoStaticStr, strum::VariantNames),
    strum(serialize_all = "kebab-case")
)]
pub enum StaleLockVariant {
    /// The target crashes; the file is left naming a dead pid.
    Leftover,
    /// The target crashes; a forked child that kept the lock descriptor
    /// survives it. flock locks live on in such a child, fcntl locks do not.
    Held { lock: LockKind },
    /// The target crashes; the pid file names a live, unrelated process.
    PidReused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Flock,
    Fcntl,
}

#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub name: String,
    pub target: TargetRef,
    pub at: TimeSpec,
    /// A `.tar.gz` of the data dir (as backup scripts make), not a copy.
    pub tarball: bool,
}

/// One step of a recovery procedure, run in order after the faults, with
/// the time the runbook allows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoverStep {
    pub action: StepAction,
    pub budget: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// A command (templated with the target's placeholders); must exit 0.
    Run { target: TargetRef, argv: Vec<String>, timeout: Duration },
    /// A validation command: a failure fails the trial, but the procedure
    /// goes on (the drill reports every check that did not hold).
    Check { target: TargetRef, argv: Vec<String>, timeout: Duration },
    /// Replace the target's data dir with a backup: a `[[backup]]` name, or
    /// a directory or .tar / .tar.gz file.
    Restore { target: TargetRef, from: RestoreSource },
    /// Remove a file or directory of the target's data dir.
    Remove { target: TargetRef, path: String },
    /// Take the target down (gracefully) and keep it down.
    Stop { target: TargetRef },
    /// Start it again.
    Start { target: TargetRef },
    /// Wait for a sustained healthy window of the target.
    WaitHealthy { target: TargetRef, timeout: Duration },
    /// Wait a fixed time (an operator's reaction time).
    Sleep { duration: Duration },
    /// Inject `Plan::faults[fault]` now (a fault with a duration holds the
    /// procedure until it heals).
    Fault { fault: usize },
    /// Something a person does, confirmed at a prompt (or by `--yes`).
    Manual { instruction: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum RestoreSource {
    Backup(String),
    Path(PathBuf),
}

impl StepAction {
    pub fn name(&self) -> StepName {
        match self {
            StepAction::Run { .. } => StepName::Run,
            StepAction::Check { .. } => StepName::Check,
            StepAction::Restore { .. } => StepName::Restore,
            StepAction::Remove { .. } => StepName::Remove,
            StepAction::Stop { .. } => StepName::Stop,
            StepAction::Start { .. } => StepName::Start,
            StepAction::WaitHealthy { .. } | StepAction::Sleep { .. } => StepName::Wait,
            StepAction::Fault { .. } => StepName::Fault,
            StepAction::Manual { .. } => StepName::Manual,
        }
    }

    /// The target the step acts on, if it names one.
    pub fn target(&self) -> Option<&str> {
        match self {
            StepAction::Run { target, .. }
            | StepAction::Check { target, .. }
            | StepAction::Restore { target, .. }
            | StepAction::Remove { target, .. }
            | StepAction::Stop { target }
            | StepAction::Start { target }
            | StepAction::WaitHealthy { target, .. } => Some(target),
            StepAction::Sleep { .. } | StepAction::Fault { .. } | StepAction::Manual { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrialsPlan {
    pub count: u32,
    pub seed: Option<u64>,
    /// How long a target may take to become healthy at the start of a trial.
    pub startup_timeout: Duration,
    /// How long after the last fault (or the end of the workload) the harness
    /// waits for sustained health before it declares "never recovered".
    pub recovery_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::SignalScope;

    #[test]
    fn signal_scope_names_are_its_variants() {
        assert_eq!(SignalScope::NAMES, ["main", "group", "all"]);
        for name in SignalScope::NAMES {
            assert_eq!(SignalScope::from_name(name).map(SignalScope::name), Some(*name));
        }
    }
}

/// Which way data flows: `Up` from the client to the target, `Down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Both,
}

impl Direction {
    pub fn includes(self, other: Direction) -> bool {
        self == Direction::Both || self == other
    }
}
