//! Seeded fault menus: each trial's seed draws a kind and a target from the
//! menu; the draw opens the fault's detail, the fault is the one drawn, and
//! the same seed draws the same again.

use crate::common;

use common::{netns_available, run, scenario};

/// `(kind, target)` drawn in each trial, as the detail says it, checked
/// against the fault the report says was injected.
fn draws(r: &common::Run) -> Vec<(String, String)> {
    r.trials()
        .iter()
        .map(|t| {
            let f = &t.faults[0];
            let prefix = "drawn with the trial's seed from [kill, pause, partition] x [a, b, c]: ";
            let rest = f.detail.strip_prefix(prefix).unwrap_or_else(|| panic!("{}", f.detail));
            let drawn = rest.split(';').next().unwrap();
            assert_eq!(drawn, format!("{} {}", f.kind, f.target), "the fault is the one drawn");
            if f.kind == "partition" {
                assert!(rest.contains(&format!("{} cut off from every other address", f.target)), "{rest}");
            }
            (f.kind.clone(), f.target.clone())
        })
        .collect()
}

#[test]
fn a_menu_draws_per_trial_from_the_seed_and_the_same_seed_draws_the_same() {
    let _serial = common::serial();
    if !netns_available() {
        return;
    }
    let first = run(&scenario("fault-menu.toml"), &["--seed", "7", "--trials", "4"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout(), first.stderr());
    let again = run(&scenario("fault-menu.toml"), &["--seed", "7", "--trials", "4"]);
    let (a, b) = (draws(&first), draws(&again));
    assert_eq!(a, b, "the same seed draws the same faults");
    let distinct: std::collections::HashSet<_> = a.iter().collect();
    assert!(distinct.len() >= 2, "four trials drew one fault only: {a:?}");
    let other = run(&scenario("fault-menu.toml"), &["--seed", "8", "--trials", "4"]);
    assert_ne!(draws(&other), a, "another seed draws otherwise");
    for t in first.trials() {
        assert_eq!(t.rpo.lost_acked, Some(0));
    }
}
