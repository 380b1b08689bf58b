//! Who confirms the manual steps of a procedure: a person at the terminal,
//! or `--yes` for unattended drills.

use std::io::{self, BufRead, Write};

use std::time::Duration;

/// Who confirms a procedure's manual steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operator {
    /// A person at the terminal: each manual step waits for Enter.
    #[default]
    Prompt,
    /// `--yes`: manual steps count as done the moment they are reached.
    AssumeYes,
}

impl Operator {
    /// Shows the instruction and waits for the operator's answer: Enter for
    /// done, `fail ...` for could not. Ctrl-C (the cancel flag) ends the wait.
    pub fn confirm(
        self,
        step: usize,
        total: usize,
        instruction: &str,
        budget: Option<Duration>,
        cancel: &crate::cancel::Cancel,
    ) -> Result<String, String> {
        if self == Operator::AssumeYes {
            return Ok("confirmed by --yes".into());
        }
        let budget = budget.map_or(String::new(), |b| format!(", budget {}", crate::duration::format_duration(b)));
        eprint!(
            "\n>>> step {step}/{total} (manual{budget}): {instruction}\n    press Enter when it is done, or type \
             `fail` and a reason: "
        );
        let _ = io::stderr().flush();
        // A thread reads the answer so that Ctrl-C is not stuck behind it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = io::stdin().lock().read_line(&mut line);
            let _ = tx.send(read.map(|n| (n, line)));
        });
        loop {
            if cancel.is_cancelled() {
                return Err("interrupted while waiting for the operator".into());
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok((0, _))) => return Err("no operator: stdin closed before the step was confirmed".into()),
                Ok(Ok((_, line))) => {
                    let answer = line.trim();
                    return match answer.strip_prefix("fail") {
                        Some(reason) => Err(format!("the operator reported a failure: {}", reason.trim())),
                        None => Ok("confirmed by the operator".into()),
                    };
                }
                Ok(Err(e)) => return Err(format!("cannot read the operator's answer: {e}")),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err("no operator".into()),
            }
        }
    }
}
