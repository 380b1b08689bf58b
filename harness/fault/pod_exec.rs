//! Signals into a pod's container, sent with `exec` through the Kubernetes
//! API: a kill, a pause (SIGSTOP, then SIGCONT at the heal) and a restart
//! (SIGTERM to PID 1, after which the kubelet starts the container again).
//!
//! exec runs inside the container's PID namespace, and there the kernel
//! delivers to PID 1 only the signals it has a handler for: never SIGKILL
//! or SIGSTOP, and SIGTERM only if the service handles it. So each fault
//! reads PID 1 before and after the signal, and a signal that changed
//! nothing makes the trial unknown, saying why, never a pass.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::seq::IndexedRandom;

use super::{FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::cluster::PodInfo;
use crate::history::EventKind;
use crate::journal::Entry;
use crate::scenario::{FaultKind, SignalScope};
use crate::targets::pod::PodTarget;
use crate::targets::TargetError;

/// How long a signal's exec may take.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a signal from exec may not reach PID 1: the sentence every "changed
/// nothing" of this module ends with.
const KERNEL_RULE: &str = "the kernel gives a container's PID 1 only the signals it handles when they come from \
                           inside the container, as exec's do (never SIGKILL or SIGSTOP)";

/// The shell the fault runs in the container (`/bin/sh`: an image without
/// one cannot take a signal this way). It signals PID 1 (`main`), or every
/// process but itself and then PID 1 (`all`), and prints what PID 1 was
/// (`before STATE START`) and is (`after STATE START`, empty once it is
/// gone), and how many processes were and are stopped (`was_stopped N`,
/// `stopped N`). `sent` is printed as soon as the signal is: the moment
/// its line arrives dates the fault (the read-back sleeps after it).
pub fn script(signal: Signal, scope: SignalScope) -> String {
    let name = signal.as_str().trim_start_matches("SIG");
    let pid1 = r#"sed 's/.*) //' /proc/1/stat 2>/dev/null | cut -d' ' -f1,20"#;
    let stopped = r#"cat /proc/[0-9]*/stat 2>/dev/null | sed 's/.*) //' | cut -c1 | grep -c T"#;
    let others = if scope == SignalScope::All { format!("kill -s {name} -1 2>/dev/null; ") } else { String::new() };
    format!(
        "PATH=$PATH:/bin:/usr/bin:/sbin:/usr/sbin; \
         [ \"$(cat /proc/1/comm)\" = pause ] && {{ echo shared; exit 3; }}; \
         echo before $({pid1}); echo was_stopped $({stopped}); {others}kill -s {name} 1; echo sent; sleep 0.1; \
         echo after $({pid1}); echo stopped $({stopped})"
    )
}

/// What the script printed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// PID 1's state and start time, before and after the signal.
    pub before: Option<(char, u64)>,
    pub after: Option<(char, u64)>,
    pub stopped: usize,
    pub was_stopped: usize,
    /// PID 1 is the pod's `pause` (a shared process namespace).
    pub shared: bool,
}

impl Seen {
    pub fn parse(stdout: &str) -> Seen {
        let pid1 = |rest: &str| {
            let mut words = rest.split_whitespace();
            Some((words.next()?.chars().next()?, words.next()?.parse().ok()?))
        };
        let mut seen = Seen::default();
        for line in stdout.lines() {
            match line.split_once(' ').unwrap_or((line, "")) {
                ("before", rest) => seen.before = pid1(rest),
                ("after", rest) => seen.after = pid1(rest),
                ("stopped", n) => seen.stopped = n.trim().parse().unwrap_or(0),
                ("was_stopped", n) => seen.was_stopped = n.trim().parse().unwrap_or(0),
                ("shared", _) => seen.shared = true,
                _ => {}
            }
        }
        seen
    }

    /// PID 1 is the same process as before, and not stopped.
    pub fn pid1_untouched(&self) -> bool {
        matches!((self.before, self.after), (Some((_, b)), Some((state, a))) if a == b && state != 'T')
    }
}

/// A signal sent into a pod, read back: what the script saw, when the
/// signal was sent, and how long after the call began.
struct Sent {
    seen: Seen,
    at: Instant,
    after: Duration,
}

impl Sent {
    fn read(done: &crate::cluster::Execd, asked: Instant) -> Sent {
        // No `sent` line: the shell died with PID 1 (its namespace went),
        // and the stream's end, just after, dates it.
        let at = done.lines.iter().find(|(_, line)| line == "sent").map_or_else(Instant::now, |(at, _)| *at);
        Sent { seen: Seen::parse(&done.stdout()), at, after: at.duration_since(asked) }
    }
}

fn target_error(ctx: &FaultContext, e: crate::cluster::ClusterError) -> FaultError {
    ctx.error(TargetError::Pod { target: ctx.target.name().to_string(), source: Box::new(e) }.into())
}

fn send(
    ctx: &FaultContext,
    target: &PodTarget,
    pod: &PodInfo,
    signal: Signal,
    scope: SignalScope,
) -> Result<Sent, FaultError> {
    let plan = target.pod_plan();
    let argv = ["/bin/sh".to_string(), "-c".into(), script(signal, scope)];
    let asked = Instant::now();
    let done = target
        .cluster()
        .exec(&plan.namespace, &pod.name, plan.container.as_deref(), &argv, EXEC_TIMEOUT)
        .map_err(|e| target_error(ctx, e))?;
    let sent = Sent::read(&done, asked);
    let other = |text: String| ctx.error(FaultErrorKind::Other(text));
    if sent.seen.shared {
        return Err(other(format!(
            "pod `{}` shares its process namespace (PID 1 is the pod's `pause`, not a container's main process): \
             crashlab does not signal it",
            pod.name
        )));
    }
    if sent.seen.before.is_none() {
        // The script did not run: no shell, or exec refused.
        let why = done.failure.unwrap_or_default();
        return Err(other(format!(
            "could not signal pod `{}` with exec (its container needs /bin/sh and kill): {why} {}",
            pod.name,
            done.stderr.trim()
        )));
    }
    Ok(sent)
}

fn pick(ctx: &FaultContext, target: &PodTarget) -> Result<PodInfo, FaultError> {
    target.live_pods().choose(&mut ctx.rng()).cloned().ok_or_else(|| {
        let plan = target.pod_plan();
        ctx.error(FaultErrorKind::Other(format!(
            "no ready pod of namespace `{}` with labels {} to signal",
            plan.namespace,
            plan.selector_text()
        )))
    })
}

/// Kill, pause or restart, on a pod target: one of its ready pods, drawn
/// with the trial's seed.
pub fn inject(kind: &FaultKind, target: &PodTarget, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
    let pod = pick(ctx, target)?;
    match *kind {
        FaultKind::Kill { signal, scope } => kill(ctx, target, &pod, signal, scope.unwrap_or(SignalScope::Main), false),
        FaultKind::Restart => kill(ctx, target, &pod, Signal::SIGTERM, SignalScope::Main, true),
        FaultKind::Pause { .. } => pause(ctx, target, &pod),
        _ => {
            let what = "this fault (a pod takes signals, sent with exec)";
            Err(ctx.error(TargetError::NotForPods { target: ctx.target.name().to_string(), what }.into()))
        }
    }
}

/// A signal that ends processes: in effect once the container restarted,
/// the pod went, or a probe failed. `restart`: only the container's
/// restart counts.
fn kill(
    ctx: &FaultContext,
    target: &PodTarget,
    pod: &PodInfo,
    signal: Signal,
    scope: SignalScope,
    restart: bool,
) -> Result<FaultGuard, FaultError> {
    let sent = send(ctx, target, pod, signal, scope)?;
    let who = if scope == SignalScope::All { "every process" } else { "PID 1 (the main process)" };
    let what = format!("{} to {who} of pod `{}` (uid {})", signal.as_str(), pod.name, pod.uid);
    let certain = matches!(signal, Signal::SIGKILL | Signal::SIGSTOP);
    if certain && scope == SignalScope::Main && sent.seen.pid1_untouched() {
        return Err(ctx.error(FaultErrorKind::Other(format!(
            "the fault changed nothing: {what}, sent with exec, left PID 1 running: {KERNEL_RULE}; use delete-pod, a \
             signal the service handles (e.g. signal = \"SIGTERM\"), or a pod whose PID 1 is an init (e.g. tini) with \
             scope = \"all\""
        ))));
    }
    let took = sent.after.as_secs_f64() * 1000.0;
    ctx.injected_at(sent.at, format!("{what}, sent with exec ({took:.1} ms after the call)"));
    let (recorder, fault, name) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
    let uid = pod.uid.clone();
    Ok(FaultGuard::nothing().looking_first(move || {
        let effect = |k: &EventKind| match k {
            EventKind::ContainerRestarted { uid: u, .. } | EventKind::PodGone { uid: u, .. } => *u == uid,
            EventKind::Probe { target: t, healthy: false, .. } => !restart && *t == name,
            _ => false,
        };
        if recorder.saw_since(sent.at, effect) == Some(false) {
            let then =
                if restart { "the container was not restarted" } else { "no container restarted, no probe failed" };
            let error =
                format!("the fault changed nothing: after {what}, {then} by the end of the trial ({KERNEL_RULE})");
            recorder.record(EventKind::FaultFailed { fault, target: name, error });
        }
    }))
}

/// SIGSTOP to every process of the container, SIGCONT to them at the heal
/// (or by `cleanup`: journaled before). PID 1 is among them, but when it
/// is the namespace's init the kernel keeps it running: only the others
/// stop, and when there are none the pause changed nothing.
fn pause(ctx: &FaultContext, target: &PodTarget, pod: &PodInfo) -> Result<FaultGuard, FaultError> {
    let plan = target.pod_plan().clone();
    ctx.journal(&Entry::PodPaused {
        trial: ctx.trial,
        fault: ctx.index,
        cluster: target.cluster_ref(),
        namespace: plan.namespace.clone(),
        pod: pod.name.clone(),
        uid: pod.uid.clone(),
        container: plan.container.clone(),
    })?;
    let sent = send(ctx, target, pod, Signal::SIGSTOP, SignalScope::All);
    let (cluster, journal, trial, fault) =
        (target.cluster_handle(), std::sync::Arc::clone(&ctx.journal), ctx.trial, ctx.index);
    let name = pod.name.clone();
    let resume = move || {
        let argv = ["/bin/sh".to_string(), "-c".into(), script(Signal::SIGCONT, SignalScope::All)];
        let done = cluster.exec(&plan.namespace, &name, plan.container.as_deref(), &argv, EXEC_TIMEOUT);
        match done.map_err(|e| e.to_string()).and_then(|d| d.failure.map_or(Ok(()), Err)) {
            Ok(()) => {
                let _ = journal.append(&Entry::PodResumed { trial, fault });
                format!("SIGCONT to every process of pod `{name}`")
            }
            Err(e) => format!("SIGCONT to pod `{name}` failed ({e}); `crashlab cleanup` sends it again"),
        }
    };
    // Processes stopped before the fault are not its doing.
    let sent = match sent {
        Ok(sent) if sent.seen.stopped > sent.seen.was_stopped => sent,
        Ok(_) => {
            resume();
            return Err(ctx.error(FaultErrorKind::Other(format!(
                "the fault changed nothing: SIGSTOP, sent with exec to every process of pod `{}`, stopped none: \
                 {KERNEL_RULE}; a pause needs the service to run under an init (e.g. tini) as PID 1",
                pod.name
            ))));
        }
        Err(e) => {
            resume();
            return Err(e);
        }
    };
    let detail = format!(
        "SIGSTOP to every process of pod `{}` (uid {}), sent with exec ({:.1} ms after the call): {} stopped",
        pod.name,
        pod.uid,
        sent.after.as_secs_f64() * 1000.0,
        sent.seen.stopped - sent.seen.was_stopped
    );
    ctx.injected_at(sent.at, detail);
    Ok(ctx.heal_with(resume))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_script_printed_is_read_back() {
        let killed = Seen::parse("before S 4242\nwas_stopped 0\nafter\nstopped 0\n");
        assert_eq!(killed.before, Some(('S', 4242)));
        assert_eq!(killed.after, None, "PID 1 gone");
        assert!(!killed.pid1_untouched());
        let ignored = Seen::parse("before S 4242\nwas_stopped 0\nafter S 4242\nstopped 0\n");
        assert!(ignored.pid1_untouched(), "the same PID 1, running");
        let stopped = Seen::parse("before S 4242\nwas_stopped 0\nafter T 4242\nstopped 3\n");
        assert!(!stopped.pid1_untouched() && stopped.stopped == 3);
        let replaced = Seen::parse("before S 4242\nafter S 5000\n");
        assert!(!replaced.pid1_untouched(), "another PID 1 (a restart)");
        assert!(Seen::parse("shared\n").shared);
        assert_eq!(Seen::parse(""), Seen::default(), "a script that did not run");
    }

    #[test]
    fn the_script_signals_pid_1_or_every_process() {
        let main = script(Signal::SIGKILL, SignalScope::Main);
        assert!(main.contains("kill -s KILL 1; echo sent;") && !main.contains("kill -s KILL -1"), "{main}");
        let all = script(Signal::SIGSTOP, SignalScope::All);
        assert!(all.contains("kill -s STOP -1 2>/dev/null; kill -s STOP 1;"), "{all}");
    }
}
