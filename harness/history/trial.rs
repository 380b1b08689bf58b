//! One trial's history as the checks read it. A trial of a million ops is
//! almost all ops and read-back items: they are held compactly here (40
//! bytes an op plus its key's and value's text; 16 bytes an item, whose
//! text is the history's line itself when read from a file), every other
//! event as it was recorded.

use std::io;

use foldhash::HashMap;

use super::{Event, EventKind, Outcome};

/// Where a key and its value are in a trial's text: side by side, in
/// chunk `start >> CHUNK_BITS` at `start & CHUNK_OFFSET`.
#[derive(Debug, Clone, Copy)]
struct Pair {
    start: u64,
    key_len: u32,
    value_len: u32,
}

/// A chunk of text is at most 1 TiB; a trial has up to 16 Mi of them.
const CHUNK_BITS: u32 = 40;
const CHUNK_OFFSET: u64 = (1 << CHUNK_BITS) - 1;

/// A write the workload sent, and how and when it ended.
#[derive(Debug, Clone)]
pub struct Op {
    pub invoked_ms: f64,
    written: Pair,
    /// `None`: no answer was recorded (the trial ended first). What a
    /// failure said is not kept: no check reads it.
    pub completed: Option<(Outcome, f64)>,
}

/// A store's contents, read back after recovery.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub t_ms: f64,
    pub target: String,
    /// The items' text: when read from a history, its line, where the
    /// items are found as they were written.
    text: String,
    items: Vec<Item>,
}

/// Where an item's key and value are in its read-back's text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    key: u32,
    key_len: u32,
    value: u32,
    value_len: u32,
}

/// One trial's events: its ops and read-backs compact, the rest as recorded.
#[derive(Debug, Default)]
pub struct TrialHistory {
    /// Every event but the ops and the read-backs, in time order.
    pub events: Vec<Event>,
    /// In the order they were sent.
    pub ops: Vec<Op>,
    pub read_backs: Vec<ReadBack>,
    /// Every key and value, each pair once: one chunk, and one more for
    /// each part of the history read apart and appended (not copied).
    text: Vec<String>,
    ids: OpIds,
    /// Answers to ops not seen sent: a part of a history read apart from
    /// its beginning gives them to the part before it.
    unmatched: Vec<(u64, Outcome, f64)>,
}

impl TrialHistory {
    /// A trial's history from its events, in time order.
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> io::Result<Self> {
        let mut trial = TrialHistory::default();
        for event in events {
            trial.push(event)?;
        }
        trial.close();
        Ok(trial)
    }

    /// Adds the next event.
    pub fn push(&mut self, event: Event) -> io::Result<()> {
        match event.kind {
            EventKind::Invoke { op, key, value } => self.invoke(op, event.t_ms, &key, &value),
            EventKind::Complete { op, outcome, .. } => {
                self.complete(op, outcome, event.t_ms);
                Ok(())
            }
            EventKind::ReadBack { target, items } => {
                let items = items.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                self.read_backs.push(ReadBack::of_items(event.t_ms, target, items)?);
                Ok(())
            }
            _ => {
                self.events.push(event);
                Ok(())
            }
        }
    }

    /// The workload sent op `id`, writing `value` under `key`.
    pub(super) fn invoke(&mut self, id: u64, t_ms: f64, key: &str, value: &str) -> io::Result<()> {
        let written = self.pair(key, value)?;
        let at = u32::try_from(self.ops.len()).map_err(|_| too_large("ops"))?;
        self.ids.insert(id, at);
        self.ops.push(Op { invoked_ms: t_ms, written, completed: None });
        Ok(())
    }

    /// Op `id` ended; an answer to an op never sent is not one of this
    /// trial's writes (see [`Self::close`]).
    pub(super) fn complete(&mut self, id: u64, outcome: Outcome, t_ms: f64) {
        match self.ids.get(id) {
            Some(at) => self.ops[at as usize].completed = Some((outcome, t_ms)),
            None => self.unmatched.push((id, outcome, t_ms)),
        }
    }

    /// Adds `later`, the same trial's history as read from further on in
    /// its file: its answers to ops sent before it are theirs.
    pub(super) fn append(&mut self, later: TrialHistory) -> io::Result<()> {
        for (id, outcome, t_ms) in later.unmatched {
            self.complete(id, outcome, t_ms);
        }
        // `later`'s text moves over whole, as chunks after ours.
        let shift = (self.text.len() as u64) << CHUNK_BITS;
        self.text.extend(later.text);
        let base =
            u32::try_from(self.ops.len() + later.ops.len()).map_err(|_| too_large("ops"))? - later.ops.len() as u32;
        for (id, at) in later.ids.into_entries() {
            self.ids.insert(id, base + at);
        }
        self.ops.extend(
            later
                .ops
                .into_iter()
                .map(|op| Op { written: Pair { start: op.written.start + shift, ..op.written }, ..op }),
        );
        self.read_backs.extend(later.read_backs);
        self.events.extend(later.events);
        Ok(())
    }

    /// Everything was added: answers to ops never sent are dropped, and
    /// what was added out of time order is put in order, stably (a spool's
    /// lines may go back in time, and a history may be edited).
    pub(super) fn close(&mut self) {
        self.unmatched = Vec::new();
        if !self.events.is_sorted_by(|a, b| a.t_ms <= b.t_ms) {
            self.events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        }
        // No answer comes after: where each op is is no longer needed.
        self.ids = OpIds::default();
        if !self.ops.is_sorted_by(|a, b| a.invoked_ms <= b.invoked_ms) {
            self.ops.sort_by(|a, b| a.invoked_ms.total_cmp(&b.invoked_ms));
        }
        self.read_backs.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    }

    /// What op `op` wrote: its key and value.
    pub fn written(&self, op: &Op) -> (&str, &str) {
        self.text_of(op.written)
    }

    fn pair(&mut self, key: &str, value: &str) -> io::Result<Pair> {
        let len = |s: &str| u32::try_from(s.len()).map_err(|_| too_large("a key or value"));
        if self.text.is_empty() {
            self.text.push(String::new());
        }
        let (chunk, text) = (self.text.len() - 1, self.text.last_mut().expect("a chunk"));
        let pair = Pair {
            start: (chunk as u64) << CHUNK_BITS | text.len() as u64,
            key_len: len(key)?,
            value_len: len(value)?,
        };
        if text.len() as u64 + u64::from(pair.key_len) + u64::from(pair.value_len) > CHUNK_OFFSET {
            return Err(too_large("the text of its keys and values"));
        }
        text.push_str(key);
        text.push_str(value);
        Ok(pair)
    }

    fn text_of(&self, pair: Pair) -> (&str, &str) {
        let text = &self.text[(pair.start >> CHUNK_BITS) as usize];
        let start = (pair.start & CHUNK_OFFSET) as usize;
        let middle = start + pair.key_len as usize;
        (&text[start..middle], &text[middle..middle + pair.value_len as usize])
    }
}

impl ReadBack {
    /// A read-back of `items`, given one by one.
    fn of_items<'a>(
        t_ms: f64,
        target: String,
        items: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> io::Result<Self> {
        let mut text = String::new();
        let mut add = |s: &str| {
            let at = text.len();
            text.push_str(s);
            (at, s.len())
        };
        let items = items.into_iter().map(|(key, value)| Item::at(add(key), add(value))).collect::<io::Result<_>>()?;
        Ok(ReadBack { t_ms, target, text, items })
    }

    /// A read-back of items found in `line`, the history's line that holds
    /// them: each where it was found in the line, or in `extra` (those
    /// that had to be unescaped), which the line is followed by.
    pub(super) fn in_line(t_ms: f64, target: String, line: String, extra: &str, items: Vec<Item>) -> Self {
        let mut text = line;
        text.push_str(extra);
        ReadBack { t_ms, target, text, items }
    }

    /// Its items, as `(key, value)`.
    pub fn items(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let at = |start: u32, len: u32| &self.text[start as usize..start as usize + len as usize];
        self.items.iter().map(move |item| (at(item.key, item.key_len), at(item.value, item.value_len)))
    }
}

impl Item {
    /// An item whose key and value are at these `(start, length)` in its
    /// read-back's text.
    pub(super) fn at(key: (usize, usize), value: (usize, usize)) -> io::Result<Item> {
        let n = |n: usize| u32::try_from(n).map_err(|_| too_large("a read-back"));
        Ok(Item { key: n(key.0)?, key_len: n(key.1)?, value: n(value.0)?, value_len: n(value.1)? })
    }
}

fn too_large(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: too large for one trial's history"))
}

/// Where each op is in a trial's ops, by its id. Ids are the workload's
/// sequence numbers, dense from 0: mostly a vector, a map for the rest.
#[derive(Debug, Default)]
struct OpIds {
    dense: Vec<u32>,
    sparse: HashMap<u64, u32>,
}

impl OpIds {
    const NONE: u32 = u32::MAX;

    /// Op `id` is at `at`; an id sent again is the later op.
    fn insert(&mut self, id: u64, at: u32) {
        // Dense while ids stay near the count of ops: a vector no larger
        // than a few times the ops.
        let bound = (u64::from(at) + 1) * 4 + 1024;
        if id < bound {
            let i = id as usize;
            if self.dense.len() <= i {
                self.dense.resize(i + 1, Self::NONE);
            }
            self.dense[i] = at;
            if !self.sparse.is_empty() {
                self.sparse.remove(&id);
            }
        } else {
            self.sparse.insert(id, at);
        }
    }

    /// Every `(id, place)`.
    fn into_entries(self) -> impl Iterator<Item = (u64, u32)> {
        let dense = self.dense.into_iter().enumerate().filter(|(_, at)| *at != Self::NONE);
        dense.map(|(id, at)| (id as u64, at)).chain(self.sparse)
    }

    fn get(&self, id: u64) -> Option<u32> {
        let dense = usize::try_from(id).ok().and_then(|i| self.dense.get(i)).copied().filter(|at| *at != Self::NONE);
        dense.or_else(|| self.sparse.get(&id).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_ms: f64, kind: EventKind) -> Event {
        Event { trial: 0, t_ms, kind }
    }

    #[test]
    fn ops_and_items_read_back_as_recorded_and_other_events_stay_whole() {
        let trial = TrialHistory::from_events([
            ev(0.0, EventKind::WorkloadStarted),
            ev(1.0, EventKind::Invoke { op: 7, key: "k\u{e9}".into(), value: "".into() }),
            ev(2.0, EventKind::Invoke { op: 1 << 40, key: "far".into(), value: "v".into() }),
            ev(3.0, EventKind::Complete { op: 1 << 40, outcome: Outcome::Fail, error: Some("no".into()) }),
            ev(4.0, EventKind::Complete { op: 99, outcome: Outcome::Ok, error: None }),
            ev(5.0, EventKind::ReadBack { target: "kv".into(), items: vec![("k\u{e9}".into(), "x".into())] }),
        ])
        .unwrap();
        assert_eq!(trial.events.len(), 1);
        let ops: Vec<_> = trial.ops.iter().map(|op| (trial.written(op), op.completed)).collect();
        assert_eq!(ops, [(("k\u{e9}", ""), None), (("far", "v"), Some((Outcome::Fail, 3.0)))]);
        let read = &trial.read_backs[0];
        assert_eq!((read.t_ms, read.target.as_str()), (5.0, "kv"));
        assert_eq!(read.items().collect::<Vec<_>>(), [("k\u{e9}", "x")]);
    }

    #[test]
    fn an_id_sent_again_is_answered_as_the_later_op() {
        let mut ids = OpIds::default();
        for (id, at) in [(3, 0), (5_000_000, 1), (3, 2), (5_000_000, 3)] {
            ids.insert(id, at);
        }
        assert_eq!((ids.get(3), ids.get(5_000_000), ids.get(4)), (Some(2), Some(3), None));
    }
}
