//! `report.html` opened in headless Chromium: it renders with no console
//! error, and the DOM Chromium built holds one fault band per injected fault
//! in each trial's timeline, and one bar per recovery step.

use crate::common;
use crashlab::reports::RunReport;

use std::path::Path;
use std::time::Duration;

use common::{available, run, which, write_scenario};

const TWO_FAULTS: &str = r#"
name = "html-two-faults"

[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "never"]
restart = { policy = "always", delay = "0ms" }
probe = { kind = "tcp", port = "{port}", interval = "10ms", timeout = "100ms" }

[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "2s"

[[fault]]
kind = "kill"
target = "kv"
at = "300ms"

[[fault]]
kind = "pause"
target = "kv"
at = "900ms"
duration = "300ms"

[[recover]]
action = "wait"
duration = "50ms"

[[recover]]
action = "wait"
target = "kv"

[expect]
rto = "<= 1ms"

[trials]
count = 2
"#;

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|p| which(p));
    available("chromium", found.is_some(), "the HTML report is checked in headless Chromium (Debian package chromium)")
        .then(|| found.unwrap())
}

/// The DOM Chromium built from the page, and the console messages it logged.
fn open_in_chromium(browser: &str, page: &Path) -> (String, Vec<String>) {
    let out = assert_cmd::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .timeout(Duration::from_secs(120))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let console =
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("CONSOLE")).map(String::from).collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Each element `<svg class="{class}" ...>...</svg>` of the DOM dump.
fn svgs<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let open = format!("<svg class=\"{class}\"");
    dom.match_indices(&open).map(|(at, _)| &dom[at..at + dom[at..].find("</svg>").expect("a closed svg")]).collect()
}

fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    let start = element.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
    &element[start..start + element[start..].find('"').unwrap()]
}

#[test]
fn the_html_report_renders_without_errors_with_a_band_per_fault() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();

    // First, that a console error would be seen at all.
    let broken = tmp.path().join("broken.html");
    std::fs::write(&broken, "<!DOCTYPE html><p>x</p><script>console.error('deliberate'); nope();</script>").unwrap();
    let (_, console) = open_in_chromium(browser, &broken);
    assert!(console.iter().any(|l| l.contains("deliberate")), "console errors are not visible: {console:?}");

    let r = run(&write_scenario(tmp.path(), "two-faults.toml", TWO_FAULTS), &["--seed", "4"]);
    assert_eq!(r.code, 1, "the strict rto bound fails the run\n{}", r.stderr());
    let page = r.dir.join("report.html");
    let (dom, console) = open_in_chromium(browser, &page);
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(dom.contains("crashlab: <code>html-two-faults</code>"), "{}", &dom[..dom.len().min(2000)]);

    let report = RunReport::from_json(&std::fs::read_to_string(r.dir.join("report.json")).unwrap()).unwrap();
    let trials = &report.trials;
    let timelines = svgs(&dom, "timeline");
    assert_eq!(timelines.len(), trials.len());
    for (svg, trial) in timelines.iter().zip(trials) {
        let faults = &trial.faults;
        assert_eq!(faults.len(), 2, "both faults were injected");
        assert_eq!(attr(svg, "data-trial"), trial.index.to_string());
        let bands: Vec<&str> = svg.match_indices("class=\"fault-band\"").map(|(at, _)| &svg[at..]).collect();
        assert_eq!(bands.len(), faults.len(), "one band per fault in trial {}", trial.index);
        for (band, fault) in bands.iter().zip(faults) {
            assert_eq!(attr(band, "data-kind"), fault.kind.as_str());
        }
        assert_eq!(svg.matches("class=\"recovered\"").count(), 2, "a recovery mark per fault");
    }
    let steps = svgs(&dom, "steps");
    assert_eq!(steps.len(), trials.len(), "a step chart per trial");
    for svg in steps {
        assert_eq!(svg.matches("<rect class=\"step").count(), 2);
    }
    // The failed expectation is on the page, in words.
    assert!(dom.contains("<code>rto &lt;= 1ms</code>"), "the expectation table");
    assert_eq!(svgs(&dom, "histogram").len(), 1);
}
