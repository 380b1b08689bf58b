//! The names of the kinds a scenario writes, each an enum: the compiler,
//! the schema, `--help`, the journal, the history and the checkers all
//! spell them from here, and serialize them to the same strings.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray, VariantNames};

/// A fault's `kind`, in the order the schema and diagnostics list them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    VariantArray,
    VariantNames,
    Serialize,
    Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum FaultName {
    Kill,
    Pause,
    Restart,
    Corrupt,
    StaleLock,
    LoseUnsynced,
    Blackhole,
    Refuse,
    Reset,
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    Slice,
    LimitData,
    Partition,
    Disconnect,
    Command,
    Io,
    Packet,
    Clock,
    Memory,
    Cpu,
    Hog,
    DeletePod,
    EvictPod,
    IsolatePod,
    Scale,
    ChaosMesh,
}

impl FaultName {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the fault acts on a proxy's links (it names a `proxy`).
    pub fn is_link(self) -> bool {
        use FaultName::*;
        matches!(self, Blackhole | Refuse | Reset | Latency | Bandwidth | SlowClose | Timeout | Slice | LimitData)
    }

    /// The link faults' names.
    pub fn link_names() -> Vec<&'static str> {
        <Self as VariantArray>::VARIANTS.iter().filter(|k| k.is_link()).map(|k| k.as_str()).collect()
    }
}

/// A recovery step's `action`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    VariantArray,
    VariantNames,
    Serialize,
    Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    Run,
    Check,
    Restore,
    Remove,
    Stop,
    Start,
    Wait,
    Fault,
    Manual,
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the step acts on the service: `wait` and `check` only look,
    /// so they do not move the floor of the recovery window.
    pub fn acts(self) -> bool {
        !matches!(self, StepName::Wait | StepName::Check)
    }
}

/// A workload that owns pods: `deployment/NAME` or `statefulset/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub kind: OwnerKind,
    pub name: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, strum::EnumString, strum::Display,
)]
#[strum(serialize_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    Deployment,
    StatefulSet,
}

/// The kind of an object a fault creates in a cluster, as the API names
/// it (and the journal writes it): an `isolate-pod`'s NetworkPolicy, or a
/// `chaos-mesh` fault's custom resource.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
pub enum ClusterObjectKind {
    NetworkPolicy,
    NetworkChaos,
    IOChaos,
    TimeChaos,
    StressChaos,
}

impl ClusterObjectKind {
    /// The Chaos Mesh kinds a `chaos-mesh` fault creates.
    pub const CHAOS: [ClusterObjectKind; 4] = [Self::NetworkChaos, Self::IOChaos, Self::TimeChaos, Self::StressChaos];

    /// Its API group and resource (plural), as RBAC names them.
    pub fn resource(self) -> (&'static str, &'static str) {
        match self {
            Self::NetworkPolicy => ("networking.k8s.io", "networkpolicies"),
            Self::NetworkChaos => ("chaos-mesh.org", "networkchaos"),
            Self::IOChaos => ("chaos-mesh.org", "iochaos"),
            Self::TimeChaos => ("chaos-mesh.org", "timechaos"),
            Self::StressChaos => ("chaos-mesh.org", "stresschaos"),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// The path `{host}:{port}`, the probes and the workload take to a
/// container target.
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
pub enum Reach {
    /// Its own address on a network of the run: what it answers is what
    /// the service does, nothing in between.
    Address,
    /// Its port as the engine publishes it on 127.0.0.1 (or a host's
    /// address): through the engine's forwarding, as a client outside the
    /// engine's networks would come.
    Published,
}

impl Reach {
    pub const NAMES: &'static [&'static str] = <Reach as strum::VariantNames>::VARIANTS;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn names_serialize_as_scenarios_write_them() {
        for kind in <FaultName as VariantArray>::VARIANTS {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(FaultName::from_str(kind.as_str()).unwrap(), *kind);
        }
        assert_eq!(FaultName::StaleLock.as_str(), "stale-lock");
        assert_eq!(FaultName::LimitData.as_str(), "limit-data");
        assert_eq!(<FaultName as VariantNames>::VARIANTS.len(), <FaultName as VariantArray>::VARIANTS.len());
        assert_eq!(FaultName::link_names().len(), 9);
        assert_eq!(serde_json::to_string(&StepName::Wait).unwrap(), "\"wait\"");
        assert!(!StepName::Check.acts() && StepName::Restore.acts());
        assert_eq!(serde_json::to_string(&ClusterObjectKind::NetworkPolicy).unwrap(), "\"NetworkPolicy\"");
        assert_eq!(ClusterObjectKind::NetworkPolicy.to_string(), "NetworkPolicy");
        for kind in ClusterObjectKind::CHAOS {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
            assert_eq!(kind.to_string().parse::<ClusterObjectKind>().unwrap(), kind);
            assert_eq!(kind.resource(), ("chaos-mesh.org", kind.to_string().to_lowercase().as_str()));
        }
    }
}
