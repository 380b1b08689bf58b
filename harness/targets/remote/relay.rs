//! `crashlab host-link`: the SSH end of a link to a host, in a process of
//! its own. It connects through OpenSSH's own client (the `openssh` crate,
//! multiplexed: the user's ssh config, keys and known_hosts apply; a host
//! key that does not match is refused), copies this binary into the
//! agent's directory there (checked by its SHA-256), runs the agent, and
//! then passes lines between its own stdin/stdout and the agent's.
//!
//! Why a process of its own: the harness reaps every child of its own
//! (`waitpid(-1)`, as a child subreaper), which would steal the exits of
//! the `ssh` processes the crate waits for.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::protocol::Message;
use crate::scenario::HostPlan;

/// `--check`: only connects (the host is reachable, its key known, the
/// user let in), says so, and exits 0; or 3 with the reason on stderr.
/// Otherwise links the agent in `dir` (exit 3 and a `failed` message when
/// it cannot) until either side closes.
pub fn relay_main(host: &str, dir: &str, check: bool) -> i32 {
    let host: HostPlan = match serde_json::from_str(host) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("crashlab host-link: not a host: {e}");
            return 2;
        }
    };
    // The ssh processes must not inherit our stdin (ssh reads what it
    // inherits): we keep it as another descriptor, and they get /dev/null.
    let requests = match keep_stdin() {
        Ok(file) => file,
        Err(e) => {
            eprintln!("crashlab host-link: cannot set stdin aside: {e}");
            return 3;
        }
    };
    if !check && !super::protocol::is_agent_dir(dir) {
        eprintln!("crashlab host-link: `{dir}` is not an agent's directory");
        return 2;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    match runtime.block_on(relay(&host, dir, check, requests)) {
        Ok(()) => 0,
        Err(what) if check => {
            eprintln!("{what}");
            3
        }
        Err(what) => {
            println!("{}", serde_json::to_string(&Message::Failed { what }).expect("serializes"));
            3
        }
    }
}

/// Our stdin as a file of its own; /dev/null in its place.
fn keep_stdin() -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsFd, OwnedFd};
    let kept: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd()).map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(kept))
}

async fn relay(host: &HostPlan, dir: &str, check: bool, requests: std::fs::File) -> Result<(), String> {
    let session = connect(host).await.map_err(|e| ssh_error(&e))?;
    if check {
        return session.close().await.map_err(|e| ssh_error(&e));
    }
    copy_binary(&session, dir).await?;
    let mut agent = session
        .command(format!("{dir}/crashlab"))
        .arg("agent")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .await
        .map_err(|e| format!("cannot start the agent: {}", ssh_error(&e)))?;
    let mut to_agent = agent.stdin().take().expect("piped");
    let from_agent = agent.stdout().take().expect("piped");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(requests).lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let up = async {
        while let Some(line) = rx.recv().await {
            if to_agent.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                break;
            }
        }
        // The control node is gone: the agent sees its stdin close.
        drop(to_agent);
    };
    let down = async {
        let mut lines = BufReader::new(from_agent).lines();
        let mut out = tokio::io::stdout();
        while let Ok(Some(line)) = lines.next_line().await {
            if out.write_all(format!("{line}\n").as_bytes()).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    };
    // The agent ending ends the link at once (the control node sees it
    // gone); the control node ending lets the agent stop its targets first.
    tokio::pin!(down);
    tokio::select! {
        () = &mut down => {}
        () = up => down.await,
    }
    // An agent that ended well stopped its targets: its copy of crashlab
    // can go. Otherwise it stays, for `crashlab cleanup` to run there.
    if agent.wait().await.is_ok_and(|status| status.success()) {
        let _ = session.shell(format!("rm -f {dir}/crashlab")).status().await;
    }
    let _ = session.close().await;
    Ok(())
}

async fn connect(host: &HostPlan) -> Result<Session, openssh::Error> {
    let mut builder = SessionBuilder::default();
    builder.known_hosts_check(KnownHosts::Strict).connect_timeout(Duration::from_secs(10));
    builder.control_directory(std::env::temp_dir());
    if let Some(port) = host.port {
        builder.port(port);
    }
    if let Some(key) = &host.identity {
        builder.keyfile(key);
    }
    if let Some(file) = &host.known_hosts {
        builder.user_known_hosts_file(file);
    }
    builder.connect(host.destination()).await
}

/// What ssh said, with the reason it gave.
fn ssh_error(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {}", s.to_string().trim());
        source = s.source();
    }
    text
}

/// Where a host keeps the last copy of crashlab a run sent it, named by
/// its SHA-256 (under [`super::protocol::AGENTS_DIR`], the SSH user's
/// own): the next run of the same binary copies it there instead of
/// sending ~190 MB again.
const CACHE_DIR: &str = "cache";

/// Copies this binary to `dir/crashlab`, checked by its SHA-256 before it
/// is made executable: from the host's cache when it holds this very
/// binary, else over the session (and then kept in the cache, alone).
async fn copy_binary(session: &Session, dir: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let sum = sha256_of(&exe).map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
    let part = Path::new(dir).join("crashlab.part").display().to_string();
    let cache = format!("{}/{CACHE_DIR}", super::protocol::AGENTS_DIR);
    let reuse = format!("umask 077 && mkdir -p {dir} && cp {cache}/{sum} {part} 2>/dev/null && sha256sum {part}");
    let reused =
        session.shell(reuse).output().await.map_err(|e| format!("cannot copy the agent: {}", ssh_error(&e)))?;
    if !reused.status.success() || first_word(&reused.stdout) != sum {
        send_binary(session, &exe, dir, &part, &sum).await?;
        let keep = format!("umask 077 && mkdir -p {cache} && rm -f {cache}/* && cp {part} {cache}/{sum}");
        let _ = session.shell(keep).status().await;
    }
    let made = session
        .shell(format!("chmod 700 {part} && mv {part} {dir}/crashlab"))
        .status()
        .await
        .map_err(|e| format!("cannot install the agent: {}", ssh_error(&e)))?;
    if !made.success() {
        return Err(format!("cannot install the agent at {dir}/crashlab"));
    }
    Ok(())
}

/// Streams `exe` to `part` on the host, which must hash to `sum` there.
async fn send_binary(session: &Session, exe: &Path, dir: &str, part: &str, sum: &str) -> Result<(), String> {
    let script = format!("umask 077 && mkdir -p {dir} && cat > {part} && sha256sum {part}");
    let mut child = session
        .shell(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .map_err(|e| format!("cannot copy the agent: {}", ssh_error(&e)))?;
    let mut stdin = child.stdin().take().expect("piped");
    // Streamed: a debug build is ~130 MB.
    let mut file = std::fs::File::open(exe).map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n =
            std::io::Read::read(&mut file, &mut chunk).map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
        if n == 0 {
            break;
        }
        stdin.write_all(&chunk[..n]).await.map_err(|e| format!("cannot copy the agent: {e}"))?;
    }
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| format!("cannot copy the agent: {}", ssh_error(&e)))?;
    let theirs = first_word(&out.stdout);
    if !out.status.success() || theirs != sum {
        return Err(format!(
            "the agent's copy at {part} does not check: sha256 `{theirs}` there, {sum} here {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The SHA-256 of a file, in hex, read in chunks.
fn sha256_of(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let (mut hasher, mut chunk) = (sha2::Sha256::new(), vec![0u8; 1 << 20]);
    loop {
        let n = std::io::Read::read(&mut file, &mut chunk)?;
        if n == 0 {
            return Ok(format!("{:x}", hasher.finalize()));
        }
        hasher.update(&chunk[..n]);
    }
}

/// `sha256sum`'s sum, from its output.
fn first_word(out: &[u8]) -> String {
    String::from_utf8_lossy(out).split_whitespace().next().unwrap_or_default().to_string()
}

/// Runs `crashlab cleanup` on the agent's run at `host` (the copy there,
/// in `dir`), for `crashlab cleanup` on the control node; what it printed.
pub async fn cleanup_on(host: &HostPlan, dir: &str) -> Result<String, String> {
    // From a journal, which anybody may have edited: only the shape the
    // run gives goes into a command there.
    if !super::protocol::is_agent_dir(dir) {
        return Err(format!("`{dir}` is not an agent's directory: left alone"));
    }
    let session = connect(host).await.map_err(|e| ssh_error(&e))?;
    // Once its run is healed (or it never began one), the copy of
    // crashlab there goes too: nothing of the run's stays but its journal.
    let out = session
        .shell(format!(
            "if [ -x {dir}/crashlab ] && [ -d {dir}/{run} ]; then {dir}/crashlab cleanup {dir}/{run} && rm -f \
             {dir}/crashlab; elif [ -e {dir}/crashlab ] || [ -e {dir}/crashlab.part ]; then rm -f {dir}/crashlab \
             {dir}/crashlab.part; echo 'its agent never began: removed the copy of crashlab'; else echo 'its agent \
             ended well (it stops its targets when the control node goes): nothing to heal'; fi",
            run = super::protocol::RUN_SUBDIR
        ))
        .output()
        .await
        .map_err(|e| ssh_error(&e))?;
    let _ = session.close().await;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text.trim().to_string())
    } else {
        Err(text.trim().to_string())
    }
}
