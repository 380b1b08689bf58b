//! Compose projects: the harness brings a compose file up under a project
//! name of its own (one per trial), finds each service's container by the
//! labels compose puts on it, and takes the project down after. Both the
//! `docker compose` plugin (v2) and Debian's `docker-compose` (v1) work.
//!
//! The file reaches the harness's per-trial values through environment
//! variables, for each compose target `NAME` (upper-cased, `-` as `_`):
//! `CRASHLAB_PORT_NAME` (the port to publish on 127.0.0.1),
//! `CRASHLAB_DATA_DIR_NAME` (a host directory to bind-mount), and
//! `CRASHLAB_DEMO_KV_IMAGE` (the demo-kv image, built here).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::engine::Engine;
use crate::targets::reaper;

#[derive(Debug, thiserror::Error)]
#[error("compose: {0}")]
pub struct ComposeError(pub String);

/// The compose command line this machine has.
fn cli() -> Result<Vec<String>, ComposeError> {
    let works = |argv: &[&str]| {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        reaper::run(&mut c, Duration::from_secs(20)).is_ok_and(|o| o.exit.is_some_and(reaper::Exit::success))
    };
    if works(&["docker", "compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose", "version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        Err(ComposeError("neither `docker compose` nor `docker-compose` is installed".into()))
    }
}

/// The variable a compose file reads a target's value from.
pub fn variable(what: &str, target: &str) -> String {
    format!("CRASHLAB_{what}_{}", target.to_ascii_uppercase().replace('-', "_"))
}

/// A project brought up from a file; taken down by [`Project::down`].
pub struct Project {
    pub name: String,
    pub file: PathBuf,
    cli: Vec<String>,
    env: Vec<(String, String)>,
}

impl Project {
    pub fn up(name: &str, file: &Path, env: Vec<(String, String)>) -> Result<Project, ComposeError> {
        let project = Project { name: name.to_string(), file: file.to_path_buf(), cli: cli()?, env };
        project.run(&["up", "-d"], Duration::from_secs(300))?;
        Ok(project)
    }

    fn run(&self, args: &[&str], timeout: Duration) -> Result<(), ComposeError> {
        let mut command = Command::new(&self.cli[0]);
        command.args(&self.cli[1..]).arg("-p").arg(&self.name).arg("-f").arg(&self.file).args(args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let what = format!("{} -p {} -f {} {}", self.cli.join(" "), self.name, self.file.display(), args.join(" "));
        let out = reaper::run(&mut command, timeout).map_err(|e| ComposeError(format!("`{what}`: {e}")))?;
        match out.exit {
            Some(exit) if exit.success() => Ok(()),
            _ => Err(ComposeError(format!("`{what}` failed: {}", out.stderr.trim()))),
        }
    }

    /// The container of one service.
    pub fn container(&self, engine: &Engine, service: &str) -> Result<String, ComposeError> {
        let label = format!("com.docker.compose.project={}", self.name);
        let found = engine.labelled(&label).map_err(|e| ComposeError(e.to_string()))?;
        let wanted = format!("com.docker.compose.service={service}");
        let with_service = engine.labelled(&wanted).map_err(|e| ComposeError(e.to_string()))?;
        found
            .into_iter()
            .map(|(id, ..)| id)
            .find(|id| with_service.iter().any(|(other, ..)| other == id))
            .ok_or_else(|| ComposeError(format!("project {} has no container for service `{service}`", self.name)))
    }

    /// Stops and removes the project's containers, networks and volumes.
    pub fn down(&self) -> Result<(), ComposeError> {
        self.run(&["down", "-v", "--remove-orphans", "-t", "2"], Duration::from_secs(120))
    }
}

/// For cleanup: takes down a project whose harness died.
pub fn down(name: &str, file: &Path) -> Result<(), ComposeError> {
    Project { name: name.to_string(), file: file.to_path_buf(), cli: cli()?, env: Vec::new() }.down()
}
