//! Known answers for link faults through the fault proxy, measured by the
//! real binary on demo-kv.

use crate::common;
use crashlab::reports::FaultReport;

use std::collections::HashMap;

use common::{run, scenario, Run};

/// (invoke time, latency, outcome) of every op of trial 0.
fn ops(r: &Run) -> Vec<(f64, f64, String)> {
    let events = r.history(0);
    let invoked: HashMap<u64, f64> = events
        .iter()
        .filter(|e| e["event"] == "invoke")
        .map(|e| (e["op"].as_u64().unwrap(), e["t_ms"].as_f64().unwrap()))
        .collect();
    events
        .iter()
        .filter(|e| e["event"] == "complete")
        .map(|e| {
            let at = invoked[&e["op"].as_u64().unwrap()];
            (at, e["t_ms"].as_f64().unwrap() - at, e["outcome"].as_str().unwrap().to_string())
        })
        .collect()
}

fn p50(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fault(r: &Run) -> &FaultReport {
    &r.trials()[0].faults[0]
}

#[test]
fn latency_on_the_client_link_adds_100ms_while_it_lasts() {
    let _serial = common::serial();
    let r = run(&scenario("proxy-latency.toml"), &["--seed", "21"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let (from, to) = (fault(&r).injected_at_ms, fault(&r).healed_at_ms.unwrap());
    let ops = ops(&r);
    let latency = |lo: f64, hi: f64| p50(ops.iter().filter(|(at, ..)| *at > lo && *at < hi).map(|o| o.1).collect());
    let before = latency(0.0, from);
    // Ops begun just before the fault, or just before the heal, straddle it.
    let during = latency(from + 150.0, to - 150.0);
    let after = latency(to + 150.0, f64::MAX);
    assert!((during - before - 100.0).abs() <= 10.0, "p50 before {before:.2} ms, during {during:.2} ms");
    assert!((after - before).abs() <= 5.0, "p50 before {before:.2} ms, after {after:.2} ms");
    assert!(ops.iter().all(|o| o.2 == "ok"), "latency alone fails no op");
}

#[test]
fn a_2s_blackhole_fails_the_ops_inside_it_and_recovers_at_the_heal_losing_nothing() {
    let _serial = common::serial();
    let r = run(&scenario("proxy-blackhole.toml"), &["--seed", "22"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    let (from, to) = (fault(&r).injected_at_ms, fault(&r).healed_at_ms.unwrap());
    assert!((to - from - 2000.0).abs() < 50.0);
    // An op sent inside the blackhole has no answer within its 500 ms
    // timeout, unless it was sent in the last 500 ms and the heal came first.
    let inside: Vec<_> = ops(&r).into_iter().filter(|(at, ..)| *at > from + 1.0 && *at < to - 500.0).collect();
    assert!(inside.len() > 100, "only {} ops inside the blackhole", inside.len());
    assert!(inside.iter().all(|o| o.2 != "ok"), "an op inside the blackhole succeeded");
    // Three 5 ms samples after the heal, on a quiet machine ~20 ms; a probe
    // blinded by the blackhole would wait for the 2 s fault or the end of
    // the workload. 500 ms (the workload's timeout) leaves room for a
    // loaded CI machine (244 ms seen) and still tells the two apart.
    let from_heal = fault(&r).rto_from_heal_ms.unwrap();
    assert!(from_heal <= 500.0, "healthy {from_heal} ms after the heal");
    let rto = t.rto_ms.unwrap();
    assert!(rto >= 2000.0, "recovered ({rto} ms) before the blackhole was healed");
    assert_eq!(t.rpo.lost_acked, Some(0));
    assert!(fault(&r).ttd_ms.unwrap() <= 120.0, "the probe saw the outage within its timeout");
}

mod partition {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use crashlab::reports::RunReport;

    use super::common;

    const SCENARIO: &str = r#"
name = "partition-test"
[network]
kind = "namespaces"
[target.a]
command = ["crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "10ms", timeout = "100ms" }
[target.b]
command = ["crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "10ms", timeout = "100ms" }
[target.c]
command = ["crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "10ms", timeout = "100ms" }
[workload]
kind = "demo-kv"
target = "a"
rate = 50
duration = "7s"
[[fault]]
kind = "partition"
isolate = "b"
duration = "3s"
at = "2s"
"#;

    fn wait_for(dir: &std::path::Path, what: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while common::journal(dir).iter().filter(|e| e["op"] == what).count() < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} `{what}` in the journal");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn text(args: &[&str]) -> String {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn address(ns: &str) -> String {
        let out = text(&["ip", "-n", ns, "-4", "-o", "addr", "show", "scope", "global"]);
        let inet = out.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("an address");
        inet.split('/').next().unwrap().to_string()
    }

    /// Whether `ns` gets an answer (even a refusal) from `ip` within 1 s.
    fn reaches(ns: &str, ip: &str) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "1", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/1")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(124) => false,
            _ => stderr.contains("refused") || out.status.success(),
        }
    }

    fn names(dir: &std::path::Path) -> (Vec<String>, String) {
        let created = common::journal(dir).into_iter().find(|e| e["op"] == "network_created").unwrap();
        let ns = created["namespaces"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        (ns, created["host_link"].as_str().unwrap().to_string())
    }

    fn gone(namespaces: &[String], link: &str) -> bool {
        let list = text(&["ip", "netns", "list"]);
        let links = text(&["ip", "-o", "link", "show"]);
        namespaces.iter().all(|n| !list.lines().any(|l| l.split_whitespace().next() == Some(n)))
            && !links.contains(&format!(" {link}@"))
    }

    fn ruleset() -> String {
        text(&["iptables-save"]).lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn isolating_one_of_three_nodes_cuts_exactly_its_links_and_leaves_nothing_behind() {
        let _serial = crate::common::serial();
        if !common::netns_available() {
            return;
        }
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let before = ruleset();
        let tmp = tempfile::tempdir().unwrap();
        let scenario = common::write_scenario(tmp.path(), "partition.toml", SCENARIO);
        let dir = tmp.path().join("run");
        let mut harness = common::spawn_run(&scenario, &dir);
        wait_for(&dir, "target_started", 3);
        let (namespaces, link) = names(&dir);
        let ns = |t: &str| namespaces.iter().find(|n| n.ends_with(&format!("-{t}"))).unwrap().clone();
        let (a, b, c) = (ns("a"), ns("b"), ns("c"));
        let (ip_b, ip_c) = (address(&b), address(&c));
        assert!(reaches(&a, &ip_b) && reaches(&a, &ip_c), "before the partition every node reaches the others");

        wait_for(&dir, "partition_rule", 2);
        // Each rule is journaled just before it is added.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!reaches(&a, &ip_b), "a reaches the isolated b");
        assert!(!reaches(&c, &ip_b), "c reaches the isolated b");
        assert!(!reaches(&b, &ip_c), "the isolated b reaches c");
        assert!(reaches(&a, &ip_c), "a and c, on the same side, still reach each other");

        wait_for(&dir, "healed", 1);
        assert!(reaches(&a, &ip_b) && reaches(&b, &ip_c), "after the heal every node reaches the others again");

        let status = harness.wait().unwrap();
        assert_eq!(status.code(), Some(0));
        let report = RunReport::from_json(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        let fault = &report.trials[0].faults[0];
        let rto = fault.rto_ms.unwrap();
        assert!((3000.0..3500.0).contains(&rto), "b recovered {rto} ms after being isolated for 3 s");
        assert!(gone(&namespaces, &link), "the run's namespaces and link are gone");
        assert_eq!(ruleset(), before, "the host's ruleset is as before");

        // Killed mid-partition, the harness leaves its namespaces; cleanup removes them.
        let dir = tmp.path().join("killed");
        let mut harness = common::spawn_run(&scenario, &dir);
        wait_for(&dir, "partition_rule", 2);
        harness.kill().unwrap();
        harness.wait().unwrap();
        let (namespaces, link) = names(&dir);
        assert!(!gone(&namespaces, &link), "a killed harness leaves its namespaces");
        let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("removed 5 network namespace(s) and link(s)"), "{stdout}");
        assert!(gone(&namespaces, &link), "cleanup removed the namespaces and the link");
        assert_eq!(ruleset(), before);
    }

    /// Half of what b receives is dropped by the `packet` fault's rule:
    /// counted by the kernel, the rule's drops are half of all that came.
    #[test]
    fn a_packet_loss_drops_the_share_it_says_of_what_the_target_receives() {
        let _serial = crate::common::serial();
        if !common::netns_available() {
            return;
        }
        let before = ruleset();
        let tmp = tempfile::tempdir().unwrap();
        let lossy = SCENARIO.replace("target = \"a\"\nrate = 50", "target = \"b\"\nrate = 200").replace(
            "kind = \"partition\"\nisolate = \"b\"",
            "kind = \"packet\"\ntarget = \"b\"\nloss = 0.5\ndirection = \"in\"",
        );
        assert!(lossy.contains("loss = 0.5") && lossy.contains("rate = 200"));
        let scenario = common::write_scenario(tmp.path(), "loss.toml", &lossy);
        let dir = tmp.path().join("run");
        let mut harness = common::spawn_run(&scenario, &dir);
        wait_for(&dir, "partition_rule", 1);
        std::thread::sleep(Duration::from_millis(200));
        let (namespaces, link) = names(&dir);
        let b = namespaces.iter().find(|n| n.ends_with("-b")).unwrap().clone();
        // What reached b's link (the interface counts before iptables), and
        // what the rule dropped of it, over 1.5 s of the fault.
        let counts = || {
            let stats = text(&["ip", "-n", &b, "-s", "-o", "link", "show"]);
            let line = stats.lines().find(|l| l.contains("RX:") && !l.contains("LOOPBACK")).expect(&stats);
            // `RX: bytes packets errors dropped missed mcast \ <bytes> <packets> ...`
            let rx: u64 = line.split("RX:").nth(1).unwrap().split_whitespace().nth(8).unwrap().parse().unwrap();
            let listing = text(&["ip", "netns", "exec", &b, "iptables", "-w", "-nvxL", "INPUT"]);
            let rule = listing.lines().find(|l| l.contains("statistic mode random probability 0.5")).expect(&listing);
            (rx, rule.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        };
        let (rx0, dropped0) = counts();
        std::thread::sleep(Duration::from_millis(1500));
        let (rx1, dropped1) = counts();
        let (came, dropped) = (rx1 - rx0, dropped1 - dropped0);
        let share = dropped as f64 / came as f64;
        eprintln!("packet loss 0.5: {dropped} of {came} packets dropped ({share:.3})");
        assert!(dropped > 200, "only {dropped} packets dropped of {came}");
        assert!((0.4..=0.6).contains(&share), "{dropped} dropped of {came}: {share:.3}");
        let status = harness.wait().unwrap();
        assert_eq!(status.code(), Some(0), "TCP retransmits what was lost: nothing lost");
        let report = RunReport::from_json(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        let detail = &report.trials[0].faults[0].detail;
        assert!(detail.starts_with("50.0% of b's packets from every address"), "{detail}");
        assert!(gone(&namespaces, &link), "the run's namespaces and link are gone");
        assert_eq!(ruleset(), before, "the host's ruleset is as before");
    }

    /// netem is used where the kernel has it, and refused before any trial
    /// where it does not (this machine's kernel has no sch_netem).
    #[test]
    fn a_netem_fault_runs_where_the_kernel_has_netem_and_is_refused_before_any_trial_where_not() {
        if !common::netns_available() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let delayed = SCENARIO.replace(
            "kind = \"partition\"\nisolate = \"b\"",
            "kind = \"packet\"\ntarget = \"b\"\ndelay = \"50ms\"\nreorder = 0.25",
        );
        let scenario = common::write_scenario(tmp.path(), "netem.toml", &delayed);
        let out =
            common::crashlab().args(["run", "--out"]).arg(tmp.path().join("run")).arg(&scenario).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let has_netem = Command::new("modinfo").arg("sch_netem").output().is_ok_and(|o| o.status.success());
        if out.status.code() == Some(3) {
            assert!(stderr.contains("sch_netem"), "the refusal names what is missing: {stderr}");
            assert!(!has_netem, "refused although modinfo finds sch_netem: {stderr}");
            assert!(!tmp.path().join("run/trial-000").exists() || !stderr.contains("trial 1/"), "no trial ran");
        } else {
            assert_eq!(out.status.code(), Some(0), "{stderr}");
        }
    }

    /// Loss on packets from a peer that never sends any dropped nothing: the
    /// trial says the fault changed nothing, and is unknown.
    #[test]
    fn a_packet_loss_that_dropped_nothing_makes_the_trial_unknown() {
        let _serial = crate::common::serial();
        if !common::netns_available() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let idle = SCENARIO.replace(
            "kind = \"partition\"\nisolate = \"b\"",
            "kind = \"packet\"\ntarget = \"b\"\nloss = 0.5\npeers = [\"c\"]",
        );
        assert!(idle.contains("peers = [\"c\"]"));
        let r = common::run(&common::write_scenario(tmp.path(), "idle.toml", &idle), &[]);
        let t = &r.trials()[0];
        let check = t.checks.iter().find(|c| c.name == "fault #1 injected").expect("the fault's check");
        assert!(check.observed.contains("changed nothing: its rules dropped no packet"), "{}", check.observed);
        assert_eq!(t.verdict, crashlab::reports::Verdict::Unknown);
        assert!(t.faults[0].detail.ends_with("healed: dropped 0 packets"), "{}", t.faults[0].detail);
    }
}
