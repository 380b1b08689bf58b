//! Images made here, without a registry: the Debian one with a real
//! service in it, built on demand by the run that needs it, then reused by
//! `crashlab image build`, and run as a container target.

use crate::common;

use common::{crashlab, docker_available, mmdebstrap_available, run, scenario};

#[test]
fn a_debian_image_with_redis_is_built_once_then_reused_and_runs_as_a_target() {
    if !docker_available() || !mmdebstrap_available() {
        return;
    }
    // None yet: the scenario's `image = { debian = ["redis-server"] }`
    // makes the run build it.
    let tags = std::process::Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}", "crashlab/debian-redis-server"])
        .output()
        .unwrap();
    for tag in String::from_utf8_lossy(&tags.stdout).lines() {
        let removed = std::process::Command::new("docker").args(["rmi", "-f", tag]).output().unwrap();
        assert!(removed.status.success(), "docker rmi {tag}: {}", String::from_utf8_lossy(&removed.stderr));
    }
    let r = run(&scenario("container-redis-kill.toml"), &["--seed", "36"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert!(r.stderr().contains("building the image crashlab/debian-redis-server with mmdebstrap"), "{}", r.stderr());
    assert!(r.stderr().contains("built crashlab/debian-redis-server:"), "{}", r.stderr());

    let build = || {
        let out = crashlab().args(["image", "build", "--debian", "redis-server"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let first = build();
    let second = build();
    assert!(first.contains("(cached"), "the run's image is the one `image build` makes: {first}");
    assert!(second.ends_with("s)") && second.contains("(cached"), "the second build reuses the image: {second}");
    assert_eq!(first.split_whitespace().next(), second.split_whitespace().next(), "same inputs, same tag");

    let r = run(&scenario("container-redis-kill.toml"), &["--seed", "36"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert!(!r.stderr().contains("building the image"), "reused: {}", r.stderr());
    for t in r.trials() {
        let f = &t.faults[0];
        assert!(f.detail.as_str().starts_with("SIGKILL to pid"));
        assert!(f.restart_ms.is_some() && t.rto_ms.is_some(), "{t:?}");
    }
}
