//! One connection through the proxy: a pump per direction, both in one
//! task, each re-reading the behaviour before every chunk and waking up
//! when it changes. A chunk read as the behaviour changed meets the new
//! one, so nothing sent after a fault took effect escapes it.

use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use super::{Behavior, Direction};

/// How a pump ended.
enum End {
    /// Its source closed: pass the close on, let the other way go on.
    Eof,
    /// A fault closed the connection (limit-data, timeout) or it broke.
    Close,
    /// A fault resets the connection: RST both ways.
    Reset,
}

pub async fn connection(client: TcpStream, server: TcpStream, watcher: watch::Receiver<Behavior>) {
    let resets = watcher.borrow().resets;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, Direction::Up, watcher.clone(), resets);
    let down = pump(server_read, client_write, Direction::Down, watcher, resets);
    tokio::pin!(up, down);
    let (end, up_ended) = tokio::select! {
        (end, r, w) = &mut up => (finish(end, r, w), true),
        (end, r, w) = &mut down => (finish(end, r, w), false),
    };
    // Half-closed: the other way may still carry data. Any other end
    // drops both ways at once.
    if matches!(end, End::Eof) {
        let (end, r, w) = if up_ended { down.await } else { up.await };
        finish(end, r, w);
    }
}

/// On a reset, both sockets are set to close with RST (the pump holds one
/// half of each); dropping the rest closes them.
fn finish(end: End, read: OwnedReadHalf, write: OwnedWriteHalf) -> End {
    if matches!(end, End::Reset) {
        let _ = read.as_ref().set_zero_linger();
        let _ = write.as_ref().set_zero_linger();
    }
    end
}

async fn pump(
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    direction: Direction,
    mut watcher: watch::Receiver<Behavior>,
    resets: u64,
) -> (End, OwnedReadHalf, OwnedWriteHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes forwarded since the behaviour last changed (for limit-data).
    let mut counted = (u64::MAX, 0u64);
    // Bytes read under a behaviour that changed before they were forwarded:
    // they wait in `buf` and meet the new one (a blackhole holds them).
    let mut held = 0usize;
    loop {
        let toxics = {
            let b = watcher.borrow_and_update();
            if b.stopped {
                return (End::Close, src, dst);
            }
            if b.resets != resets {
                return (End::Reset, src, dst);
            }
            if counted.0 != b.generation {
                counted = (b.generation, 0);
            }
            b.toxics(direction).clone()
        };
        if toxics.blackhole {
            if watcher.changed().await.is_err() {
                return (End::Close, src, dst);
            }
            continue;
        }
        if let Some(after) = toxics.timeout {
            tokio::select! {
                _ = sleep(after) => return (End::Close, src, dst),
                changed = watcher.changed() => if changed.is_err() { return (End::Close, src, dst) },
            }
            continue;
        }
        let n = if held > 0 {
            std::mem::take(&mut held)
        } else {
            // A change first: woken by a change and by data at once (a
            // busy runtime), the data meets the new behaviour.
            tokio::select! {
                biased;
                changed = watcher.changed() => {
                    if changed.is_err() {
                        return (End::Close, src, dst);
                    }
                    continue;
                }
                read = src.read(&mut buf) => match read {
                    Ok(n) => n,
                    Err(_) => return (End::Close, src, dst),
                },
            }
        };
        if n > 0 && matches!(watcher.has_changed(), Ok(true)) {
            held = n;
            continue;
        }
        if n == 0 {
            if let Some(delay) = toxics.slow_close {
                sleep(delay).await;
            }
            let _ = dst.shutdown().await;
            return (End::Eof, src, dst);
        }
        if let Some((delay, jitter)) = toxics.latency {
            sleep(jittered(delay, jitter)).await;
        }
        let mut chunk = &buf[..n];
        let mut close_after = false;
        if let Some(limit) = toxics.limit_data {
            let left = limit.saturating_sub(counted.1);
            if (chunk.len() as u64) >= left {
                chunk = &chunk[..left as usize];
                close_after = true;
            }
        }
        if write(&mut dst, chunk, &toxics).await.is_err() {
            return (End::Close, src, dst);
        }
        counted.1 += chunk.len() as u64;
        if close_after {
            return (End::Close, src, dst);
        }
    }
}

fn jittered(delay: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let j = rand::rng().random_range(-(jitter.as_secs_f64())..=jitter.as_secs_f64());
    Duration::from_secs_f64((delay.as_secs_f64() + j).max(0.0))
}

/// Writes a chunk, sliced and paced as the toxics say.
async fn write(dst: &mut OwnedWriteHalf, chunk: &[u8], toxics: &super::Toxics) -> std::io::Result<()> {
    let piece = match (toxics.slice, toxics.bandwidth) {
        (Some((size, _)), _) => size.max(1),
        // Paced in pieces of at most 1/100 s worth, so that the rate holds
        // over short spans too.
        (None, Some(rate)) => ((rate / 100).max(1) as usize).min(chunk.len()),
        (None, None) => chunk.len(),
    };
    let start = Instant::now();
    let mut sent = 0usize;
    for part in chunk.chunks(piece.max(1)) {
        if sent > 0 {
            if let Some((_, gap)) = toxics.slice {
                sleep(gap).await;
            }
        }
        dst.write_all(part).await?;
        sent += part.len();
        if let Some(rate) = toxics.bandwidth {
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
    }
    Ok(())
}
