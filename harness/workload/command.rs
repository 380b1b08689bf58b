//! The `command` workload: the user's own client program writes, so any
//! service with a client library can be measured.
//!
//! - `write = [...]` runs once per write: exit 0 acknowledges, an exit code
//!   in `refused_exit` refuses, anything else (another code, a signal, no
//!   exit within the timeout) is unknown.
//! - `client = [...]` runs once per connection and speaks a line protocol:
//!   it reads `PUT <key> <value>` lines on stdin and answers each, in order,
//!   with `OK`, `FAIL <reason>` or `UNKNOWN <reason>` on stdout. A client
//!   that does not answer in time is killed (its late answer would be taken
//!   for the next write's) and started again. Clients are started before
//!   the workload's first write, and a new client's first answer may take
//!   [`STARTUP_GRACE`] longer: the time an interpreter takes to start is
//!   not the service's.
//!
//! `read_back = [...]` prints `key<TAB>value` for every key the store holds.
//! Every command runs in the scenario's directory, carries the run's token
//! (so `cleanup` finds one left behind), in a process group of its own.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{is_workload_key, Client, Workload, WriteResult};
use crate::scenario::{template, CommandMode};
use crate::targets::reaper::{self, Exit};

/// How much longer a new line client may take to give its first answer.
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);

/// How long `read_back` may take: it lists a whole store.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(120);

pub struct CommandWorkload {
    /// The commands with the target's placeholders filled in.
    pub mode: CommandMode,
    pub read_back: Vec<String>,
    pub dir: PathBuf,
    pub timeout: Duration,
}

/// A command of the scenario's (a client, a fault's chooser): a program
/// with a `/` is relative to the scenario's directory `dir`, where it runs.
pub fn scenario_command(argv: &[String], dir: &Path) -> Command {
    let program = if argv[0].contains('/') { dir.join(&argv[0]) } else { PathBuf::from(&argv[0]) };
    let mut command = Command::new(program);
    command.args(&argv[1..]).current_dir(dir);
    command
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

impl Workload for CommandWorkload {
    fn client(&self) -> Box<dyn Client> {
        match &self.mode {
            CommandMode::PerWrite { argv, refused_exit } => Box::new(PerWrite {
                argv: argv.clone(),
                refused_exit: refused_exit.clone(),
                dir: self.dir.clone(),
                timeout: self.timeout,
            }),
            CommandMode::Lines { argv } => {
                let mut client =
                    LineClient { argv: argv.clone(), dir: self.dir.clone(), timeout: self.timeout, process: None };
                // Started now, so that it starts while the others do; a
                // failure to start is reported by the first write.
                client.process = Process::spawn(&client.argv, &client.dir).ok();
                Box::new(client)
            }
        }
    }

    fn read_back(&self, _written: u64) -> io::Result<Vec<(String, String)>> {
        let shown = self.read_back.join(" ");
        let output = reaper::run(&mut scenario_command(&self.read_back, &self.dir), READ_BACK_TIMEOUT)
            .map_err(|e| io::Error::new(e.kind(), format!("read_back `{shown}`: {e}")))?;
        if !output.exit.is_some_and(Exit::success) {
            let how = if output.timed_out {
                format!("did not finish within {READ_BACK_TIMEOUT:?}")
            } else {
                output.exit.map_or("did not finish".into(), |e| e.to_string())
            };
            return Err(io::Error::other(format!("read_back `{shown}`: {how}: {}", first_line(&output.stderr))));
        }
        parse_items(&output.stdout)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("read_back `{shown}`: {e}")))
    }
}

/// `key<TAB>value` lines; blank lines are skipped, keys the workload did
/// not write are left out.
pub fn parse_items(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) =
            line.split_once('\t').ok_or_else(|| format!("printed line {} not as `key<TAB>value`: `{line}`", n + 1))?;
        if is_workload_key(key) {
            items.push((key.to_string(), value.to_string()));
        }
    }
    Ok(items)
}

struct PerWrite {
    argv: Vec<String>,
    refused_exit: Vec<i32>,
    dir: PathBuf,
    timeout: Duration,
}

impl Client for PerWrite {
    fn write(&mut self, seq: u64, key: &str, value: &str) -> WriteResult {
        let vars = super::vars(key, Some((value, seq)));
        let argv: Vec<String> = self.argv.iter().map(|a| template::render(a, &vars)).collect();
        let output = match reaper::run(&mut scenario_command(&argv, &self.dir), self.timeout) {
            Ok(output) => output,
            // It never ran: nothing was sent.
            Err(e) => return WriteResult::Fail(format!("cannot start `{}`: {e}", argv[0])),
        };
        let said = first_line(&output.stderr);
        match output.exit {
            _ if output.timed_out => WriteResult::Unknown(format!("no exit within {:?}", self.timeout)),
            Some(Exit::Code(0)) => WriteResult::Ok,
            Some(Exit::Code(c)) if self.refused_exit.contains(&c) => {
                WriteResult::Fail(format!("exit code {c}: {said}"))
            }
            Some(exit) => WriteResult::Unknown(format!("{exit}: {said}")),
            None => WriteResult::Unknown("did not finish".into()),
        }
    }
}

/// A long-lived client process and the lines it answers.
struct Process {
    child: Child,
    /// Yields its exit once the reaper collected it: until then its pid,
    /// and so its process group's id, cannot belong to another process.
    exited: Receiver<Exit>,
    stdin: ChildStdin,
    answers: Receiver<String>,
    /// Whether it has answered yet (it may still be starting).
    answered: bool,
    /// Its last lines on stderr, for messages when it dies.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    fn spawn(argv: &[String], dir: &Path) -> io::Result<Process> {
        let mut command = scenario_command(argv, dir);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let (mut child, exited) = reaper::spawn(&mut command)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr_pipe = child.stderr.take().expect("piped");
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let kept = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut text = String::new();
            let mut pipe = BufReader::new(stderr_pipe);
            while pipe.read_line(&mut text).is_ok_and(|n| n > 0) {
                let mut kept = kept.lock().unwrap();
                kept.push_back(text.trim_end().to_string());
                if kept.len() > 3 {
                    kept.pop_front();
                }
                text.clear();
            }
            let _ = pipe.read_to_end(&mut Vec::new());
        });
        Ok(Process { child, exited, stdin, answers, answered: false, stderr })
    }

    fn last_stderr(&self) -> String {
        let kept = self.stderr.lock().unwrap();
        if kept.is_empty() {
            String::new()
        } else {
            format!(": {}", kept.iter().cloned().collect::<Vec<_>>().join(" / "))
        }
    }
}

impl Drop for Process {
    /// Kills the client and whatever it started, if it has not exited: once
    /// reaped, its pid may be another process's, whose group must not be
    /// signalled (what it left running carries the run's token, and the
    /// end of the trial stops it).
    fn drop(&mut self) {
        if matches!(self.exited.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        }
    }
}

struct LineClient {
    argv: Vec<String>,
    dir: PathBuf,
    timeout: Duration,
    process: Option<Process>,
}

/// What an answer line means.
pub fn answer_outcome(line: &str) -> WriteResult {
    let line = line.trim_end();
    let (word, reason) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "OK" => WriteResult::Ok,
        "FAIL" => WriteResult::Fail(reason.to_string()),
        "UNKNOWN" => WriteResult::Unknown(reason.to_string()),
        _ => WriteResult::Unknown(format!("the client answered `{line}`, not OK, FAIL or UNKNOWN")),
    }
}

impl Client for LineClient {
    fn write(&mut self, _seq: u64, key: &str, value: &str) -> WriteResult {
        if self.process.is_none() {
            match Process::spawn(&self.argv, &self.dir) {
                Ok(p) => self.process = Some(p),
                Err(e) => return WriteResult::Fail(format!("cannot start `{}`: {e}", self.argv[0])),
            }
        }
        let process = self.process.as_mut().expect("started above");
        if let Err(e) = writeln!(process.stdin, "PUT {key} {value}").and_then(|()| process.stdin.flush()) {
            // The client is gone; it never read this write.
            let message = format!("the client exited ({e}){}", process.last_stderr());
            self.process = None;
            return WriteResult::Fail(message);
        }
        let timeout = if process.answered { self.timeout } else { self.timeout + STARTUP_GRACE };
        match process.answers.recv_timeout(timeout) {
            Ok(line) => {
                process.answered = true;
                answer_outcome(&line)
            }
            Err(RecvTimeoutError::Timeout) => {
                self.process = None;
                WriteResult::Unknown(format!("no answer within {timeout:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let message = format!("the client exited without answering{}", process.last_stderr());
                self.process = None;
                WriteResult::Unknown(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_listings_parse_as_documented() {
        assert_eq!(answer_outcome("OK"), WriteResult::Ok);
        assert_eq!(answer_outcome("FAIL disk full"), WriteResult::Fail("disk full".into()));
        assert_eq!(answer_outcome("UNKNOWN timeout\r"), WriteResult::Unknown("timeout".into()));
        assert!(matches!(answer_outcome("okay"), WriteResult::Unknown(m) if m.contains("`okay`")));
        let items = parse_items("k00000001\tv1\n\nother\tx\nk00000002\tv 2\r\n").unwrap();
        assert_eq!(items, [("k00000001".to_string(), "v1".to_string()), ("k00000002".into(), "v 2".into())]);
        let err = parse_items("k00000001 v1\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    /// Both modes against a shell "client" that acknowledges even keys,
    /// refuses odd ones, and hangs on one.
    #[test]
    fn both_modes_map_exits_and_answers_to_outcomes() {
        let dir = std::env::temp_dir();
        let mut per_write = PerWrite {
            argv: vec!["sh".into(), "-c".into(), "exit $(( {seq} % 2 * 3 + ({seq} == 5) ))".into()],
            refused_exit: vec![3],
            dir: dir.clone(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(per_write.write(2, "k2", "v"), WriteResult::Ok);
        assert!(matches!(per_write.write(3, "k3", "v"), WriteResult::Fail(_)));
        assert!(matches!(per_write.write(5, "k5", "v"), WriteResult::Unknown(m) if m.contains("exit code 4")));
        let script =
            "while read op k v; do case $k in k1) echo OK;; k2) echo FAIL no;; k3) sleep 15;; *) exit 1;; esac; done";
        let mut lines = LineClient {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            dir,
            timeout: Duration::from_millis(300),
            process: None,
        };
        assert_eq!(lines.write(1, "k1", "v"), WriteResult::Ok);
        assert_eq!(lines.write(2, "k2", "v"), WriteResult::Fail("no".into()));
        assert!(matches!(lines.write(3, "k3", "v"), WriteResult::Unknown(m) if m.contains("no answer within 300ms")));
        assert_eq!(lines.write(1, "k1", "v"), WriteResult::Ok, "a new client after the hung one");
        assert!(matches!(lines.write(4, "k4", "v"), WriteResult::Unknown(m) if m.contains("exited")));
    }
}
