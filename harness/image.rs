//! Images without a registry: the demo-kv image is this very binary and
//! the shared libraries it links (as `ldd` lists them) in a root file system
//! of its own, imported into the engine (`docker import`). It is tagged by a
//! hash of those files, so an unchanged binary reuses the image.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::engine::{Engine, EngineError};
use crate::scenario::{ImagePlan, TargetPlan};
use crate::targets::reaper;

pub const DEMO_KV_REPO: &str = "crashlab/demo-kv";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image: {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// The shared libraries `binary` loads, with the dynamic loader.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let mut command = Command::new("ldd");
    command.arg(binary);
    let out = reaper::run(&mut command, Duration::from_secs(30)).map_err(io_err("cannot run ldd"))?;
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").nth(1).unwrap_or(l).split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// The demo-kv image (`crashlab/demo-kv:<hash>`), built if the engine does
/// not have it yet. Returns the image and whether it was built now.
pub fn demo_kv(engine: &Engine) -> Result<(String, bool), ImageError> {
    let binary = std::env::current_exe().map_err(io_err("cannot find this binary"))?;
    let mut files = vec![(binary.clone(), PathBuf::from("/crashlab"))];
    files.extend(shared_libraries(&binary)?.into_iter().map(|p| (p.clone(), p)));
    // Hashed as they stream by: the binary is large (a debug build is
    // ~130 MB), and read whole only when the image must be made.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (from, to) in &files {
        to.hash(&mut hasher);
        let file = std::fs::File::open(from).map_err(io_err(format!("cannot read {}", from.display())))?;
        // Its length first, as a slice's hash has it: where one file ends
        // and the next begins is part of what is hashed.
        let len = file.metadata().map_err(io_err(format!("cannot read {}", from.display())))?.len();
        hasher.write_u64(len);
        let mut reader = io::BufReader::with_capacity(1 << 20, file);
        loop {
            let chunk =
                io::BufRead::fill_buf(&mut reader).map_err(io_err(format!("cannot read {}", from.display())))?;
            if chunk.is_empty() {
                break;
            }
            hasher.write(chunk);
            let n = chunk.len();
            io::BufRead::consume(&mut reader, n);
        }
    }
    let tag = format!("{:016x}", hasher.finish());
    let image = format!("{DEMO_KV_REPO}:{tag}");
    if engine.image_exists(&image) {
        return Ok((image, false));
    }
    let mut contents = Vec::new();
    for (from, to) in &files {
        let bytes = std::fs::read(from).map_err(io_err(format!("cannot read {}", from.display())))?;
        contents.push((to.clone(), bytes));
    }
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["tmp", "data"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o1777);
        header.set_size(0);
        tar.append_data(&mut header, dir, io::empty()).map_err(io_err("cannot pack the image"))?;
    }
    for (to, bytes) in &contents {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(bytes.len() as u64);
        let path = to.strip_prefix("/").unwrap_or(to);
        tar.append_data(&mut header, path, bytes.as_slice()).map_err(io_err("cannot pack the image"))?;
    }
    let rootfs = tar.into_inner().map_err(io_err("cannot pack the image"))?;
    engine.import(rootfs, DEMO_KV_REPO, &tag, &["ENV PATH=/"])?;
    Ok((image, true))
}

/// The Debian suite Debian-based images are made from.
pub const DEBIAN_SUITE: &str = "bookworm";

/// The repository, tag and sorted packages of a Debian image.
fn debian_name(packages: &[String]) -> (String, String, Vec<String>) {
    let mut sorted = packages.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (DEBIAN_SUITE, &sorted).hash(&mut hasher);
    (format!("crashlab/debian-{}", sorted.join("-")), format!("{:016x}", hasher.finish()), sorted)
}

/// Whether the engine has the Debian image of `packages` already.
pub fn debian_exists(engine: &Engine, packages: &[String]) -> bool {
    let (repo, tag, _) = debian_name(packages);
    engine.image_exists(&format!("{repo}:{tag}"))
}

/// A Debian image with `packages` installed (`crashlab/debian-<packages>`),
/// made with mmdebstrap and imported; tagged by a hash of its inputs and
/// also as `:latest`, for scenarios to name. Returns the hash-tagged image
/// and whether it was built now.
pub fn debian(engine: &Engine, packages: &[String]) -> Result<(String, bool), ImageError> {
    let (repo, tag, sorted) = debian_name(packages);
    let image = format!("{repo}:{tag}");
    if engine.image_exists(&image) {
        return Ok((image, false));
    }
    let dir = tempfile::tempdir().map_err(io_err("cannot make a temporary directory"))?;
    let tarball = dir.path().join("rootfs.tar");
    let mut command = Command::new("mmdebstrap");
    command
        .args(["--variant=apt", "--quiet", &format!("--include={}", sorted.join(","))])
        .arg(DEBIAN_SUITE)
        .arg(&tarball);
    let out = reaper::run(&mut command, Duration::from_secs(1800))
        .map_err(io_err("cannot run mmdebstrap (Debian package mmdebstrap)"))?;
    if !out.exit.is_some_and(reaper::Exit::success) {
        return Err(ImageError::Io {
            what: "mmdebstrap failed".into(),
            source: io::Error::other(out.stderr.trim().lines().last().unwrap_or("no output").to_string()),
        });
    }
    let rootfs = std::fs::read(&tarball).map_err(io_err(format!("cannot read {}", tarball.display())))?;
    engine.import(rootfs, &repo, &tag, &[])?;
    engine.tag(&image, &repo, "latest")?;
    Ok((image, true))
}

/// The image of container target `t` in `engine`: its Debian image or
/// demo-kv's, built there if missing; a named one must be there already.
pub fn for_target(engine: &Engine, t: &TargetPlan) -> Result<String, String> {
    let image = match t.image.clone() {
        Some(ImagePlan::Debian(packages)) => debian_on_demand(engine, &t.name, &packages)?,
        Some(ImagePlan::Named(image)) => image,
        None => String::new(),
    };
    if image == DEMO_KV_REPO {
        Ok(demo_kv(engine).map_err(|e| e.to_string())?.0)
    } else if engine.image_exists(&image) {
        Ok(image)
    } else {
        Err(format!(
            "target `{}`: image `{image}` is not in the engine, and none can be pulled here; {}",
            t.name,
            how_to_build(&image)
        ))
    }
}

/// A target's Debian image, built now if the engine lacks it (a few
/// minutes, once: later runs reuse it), saying so.
fn debian_on_demand(engine: &Engine, target: &str, packages: &[String]) -> Result<String, String> {
    let name = format!("crashlab/debian-{}", packages.join("-"));
    if !debian_exists(engine, packages) {
        eprintln!("crashlab: target `{target}`: building the image {name} with mmdebstrap (minutes, once; later runs reuse it)");
    }
    let started = std::time::Instant::now();
    let (image, built) =
        debian(engine, packages).map_err(|e| format!("target `{target}`: cannot build {name}: {e}"))?;
    if built {
        eprintln!("crashlab: target `{target}`: built {image} in {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(image)
}

/// The command that makes a missing image, as the user would type it.
fn how_to_build(image: &str) -> String {
    let repo = image.split(':').next().unwrap_or(image);
    match repo.strip_prefix("crashlab/debian-") {
        Some(packages) => format!("build it with `crashlab image build --debian {packages}`"),
        None if repo == DEMO_KV_REPO => "build it with `crashlab image build demo-kv`".into(),
        None => format!("build it in that engine (`docker build -t {image} ...`); `crashlab image build` makes crashlab/demo-kv and Debian images"),
    }
}
