//! The code's shape is checked like its behaviour (issue 14): no import
//! against the data flow (check/ and reports/ never import the runner,
//! targets or faults; the ground floor imports nothing above it), no import
//! cycle, no function over 120 lines but tables of data. `ci/code-shape.py`
//! measures it; `python3 ci/code-shape.py` prints the figures.

use crate::common;

#[test]
fn the_code_keeps_its_shape() {
    if !common::available("python3", common::which("python3"), "ci/code-shape.py measures the code (Debian python3)") {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/ci/code-shape.py"))
        .arg("--check")
        .arg(root)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
