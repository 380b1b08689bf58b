//! What the container targets of a run share: the engine, their images
//! (checked or built once per run), the run's label, and the compose
//! projects a trial brings up.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Trial;
use crate::compose;
use crate::engine::{Engine, RUN_LABEL};
use crate::journal::{Entry, Journal};
use crate::scenario::{Plan, TargetKind, TargetPlan};

/// Brings up each compose file of the plan once, with the per-trial values
/// its services read (see [`compose`]).
pub(super) fn compose_up(trial: &Trial, ports: &[u16], projects: &mut Vec<compose::Project>) -> Result<(), String> {
    let (plan, index, trial_dir, journal) = (trial.plan, trial.index, &trial.dir, trial.run.journal);
    let mut files: Vec<&PathBuf> = plan.targets.iter().filter_map(|t| t.compose.as_ref().map(|c| &c.0)).collect();
    files.dedup();
    let Some(c) = trial.run.containers else { return Ok(()) };
    let mut env = Vec::new();
    for (t, port) in plan.targets.iter().zip(ports) {
        let data_dir = trial_dir.join("data").join(&t.name);
        std::fs::create_dir_all(&data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        env.push((compose::variable("PORT", &t.name), port.to_string()));
        env.push((compose::variable("DATA_DIR", &t.name), data_dir.display().to_string()));
    }
    if let Some(image) = &c.demo_image {
        env.push(("CRASHLAB_DEMO_KV_IMAGE".to_string(), image.clone()));
    }
    for (i, file) in files.into_iter().enumerate() {
        // Compose project names are lower case.
        let name = format!("{}-t{index}-{i}", c.label).to_ascii_lowercase();
        let _ = journal.append(&Entry::ComposeUp { trial: index, project: name.clone(), file: file.clone() });
        match compose::Project::up(&name, file, env.clone()) {
            Ok(project) => projects.push(project),
            Err(e) => {
                // Whatever came up before the failure goes down with it.
                let _ = compose::down(&name, file);
                let _ = journal.append(&Entry::ComposeDown { trial: index, project: name });
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

/// The container engine and images of a run with container targets.
pub(super) struct Containers {
    pub engine: Arc<Engine>,
    /// `(target, image)`.
    pub images: Vec<(String, String)>,
    /// The `crashlab.run` label of this run's containers.
    pub label: String,
    /// The demo-kv image, when a compose file asks for it.
    pub demo_image: Option<String>,
    /// The network the containers the run creates here join.
    pub network: Option<RunNetwork>,
}

/// A bridge network of the run, labelled with it (so that cleanup finds it
/// after a killed harness), on which each container target the run creates
/// here has a fixed address: the same in every trial and after every
/// restart, so that what answers there is that target and nothing else.
/// Removed when the run ends.
pub(super) struct RunNetwork {
    pub name: String,
    /// `(target, address)`.
    pub addresses: Vec<(String, IpAddr)>,
    engine: Arc<Engine>,
}

impl RunNetwork {
    fn create(engine: &Arc<Engine>, label: &str, targets: &[&TargetPlan]) -> Result<RunNetwork, String> {
        // The label ends in 6 random hex digits: the bridge's name is
        // unique as the network's is, within the kernel's 15 bytes.
        let bridge = format!("crashlab{}", &label[label.len().saturating_sub(6)..]);
        let (first, prefix) = engine.create_network(label, &bridge, label).map_err(|e| e.to_string())?;
        // Re-learning a container's link-layer address after it restarted
        // or was taken off the network waits for the kernel's next ARP try,
        // 1 s apart by default: an outage of the host's making, not the
        // service's. On the run's own bridge they are 10 ms apart.
        let retrans = format!("/proc/sys/net/ipv4/neigh/{bridge}/retrans_time_ms");
        if let Err(e) = std::fs::write(&retrans, "10") {
            eprintln!("crashlab: warning: cannot shorten ARP retries on {bridge} ({retrans}: {e})");
        }
        // Removed on return, whatever follows.
        let mut network = RunNetwork { name: label.to_string(), addresses: Vec::new(), engine: Arc::clone(engine) };
        // .1 is the gateway, the harness's side of the bridge.
        let room = (1u64 << (32 - prefix)) - 3;
        if targets.len() as u64 > room {
            return Err(format!("network {label} has room for {room} containers, not {}", targets.len()));
        }
        network.addresses = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), IpAddr::V4(Ipv4Addr::from(u32::from(first) + 2 + i as u32))))
            .collect();
        Ok(network)
    }

    pub fn address(&self, target: &str) -> Option<IpAddr> {
        self.addresses.iter().find(|(t, _)| t == target).map(|(_, a)| *a)
    }
}

impl Drop for RunNetwork {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove_network(&self.name) {
            eprintln!("crashlab: warning: {e}; `crashlab cleanup RUN_DIR` removes it");
        }
    }
}

impl Containers {
    /// `warnings` gets what the run should report but need not stop for.
    pub(super) fn prepare(
        plan: &Plan,
        run_dir: &Path,
        journal: &Journal,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Containers>, String> {
        // A host's own engine runs the containers on that host.
        let wanted: Vec<&TargetPlan> =
            plan.targets.iter().filter(|t| t.kind == TargetKind::Container && t.host.is_none()).collect();
        let compose_files: Vec<&PathBuf> =
            plan.targets.iter().filter_map(|t| t.compose.as_ref().map(|c| &c.0)).collect();
        if wanted.is_empty() && compose_files.is_empty() {
            return Ok(None);
        }
        let engine = Engine::connect().map_err(|e| format!("{e} (container targets need a Docker engine)"))?;
        // The run's directory name as the engine allows it in container
        // names, made unique: two runs may share a directory name.
        let name: String = run_dir
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
                    .collect()
            })
            .unwrap_or_else(|| "crashlab".into());
        let label = format!("{name}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        // Before anything carries it: cleanup removes whatever does.
        journal
            .append(&Entry::ContainerLabel { run_label: label.clone(), engine: None })
            .map_err(|e| format!("cannot journal the containers' label: {e}"))?;
        if let Ok(left) = engine.labelled(RUN_LABEL) {
            let others: Vec<&str> =
                left.iter().filter(|(.., run)| *run != label).map(|(_, name, _)| name.as_str()).collect();
            if !others.is_empty() {
                let warning = format!(
                    "{} container(s) of earlier runs remain ({}); `crashlab cleanup RUN_DIR` removes them",
                    others.len(),
                    others.join(", ")
                );
                eprintln!("crashlab: warning: {warning}");
                warnings.push(warning);
            }
        }
        let mut images = Vec::new();
        for t in &wanted {
            images.push((t.name.clone(), crate::image::for_target(&engine, t)?));
        }
        let wants_demo = compose_files
            .iter()
            .any(|f| std::fs::read_to_string(f).unwrap_or_default().contains("CRASHLAB_DEMO_KV_IMAGE"));
        let demo_image =
            if wants_demo { Some(crate::image::demo_kv(&engine).map_err(|e| e.to_string())?.0) } else { None };
        let engine = Arc::new(engine);
        // The label was journaled above, before the network carries it.
        let network = if wanted.is_empty() { None } else { Some(RunNetwork::create(&engine, &label, &wanted)?) };
        Ok(Some(Containers { engine, images, label, demo_image, network }))
    }
}
