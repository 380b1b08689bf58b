//! Errors in a scenario file, pointing at file, line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a scenario, at a byte range of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Range<usize>,
    pub message: String,
}

/// Every problem found in one file, with the source needed to place them.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics {
    pub path: PathBuf,
    pub source_text: String,
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(path: &Path, source_text: &str) -> Self {
        Diagnostics { path: path.to_path_buf(), source_text: source_text.to_string(), list: Vec::new() }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.list.push(Diagnostic { span, message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        LineIndex::new(&self.source_text).line_col(&self.source_text, offset)
    }

    /// `file:line:col: message` lines, in source order.
    pub fn rendered(&self) -> Vec<String> {
        let mut list = self.list.clone();
        list.sort_by_key(|d| (d.span.start, d.span.end));
        list.dedup();
        // One pass over the source for all of them: a file with thousands
        // of errors must not take thousands of passes.
        let index = LineIndex::new(&self.source_text);
        list.iter()
            .map(|d| {
                let (line, col) = index.line_col(&self.source_text, d.span.start);
                format!("{}:{line}:{col}: {}", self.path.display(), d.message)
            })
            .collect()
    }
}

/// Where each line of a text starts.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let newlines = text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1);
        LineIndex { starts: std::iter::once(0).chain(newlines).collect() }
    }

    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|start| *start <= offset);
        let line_start = self.starts[line - 1];
        (line, text[line_start..offset].chars().count() + 1)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.rendered() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// The nearest candidate to a misspelt word, if one is near enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 3) && *distance < c.len().max(word.len()))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// ", did you mean `x`?" or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(word, candidates).map(|s| format!(", did you mean `{s}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_offsets() {
        let d = Diagnostics::new(Path::new("x.toml"), "a = 1\nbé = 2\n");
        assert_eq!(d.line_col(0), (1, 1));
        assert_eq!(d.line_col(6), (2, 1));
        assert_eq!(d.line_col(10), (2, 4));
    }

    #[test]
    fn suggests_near_words_only() {
        assert_eq!(suggest("kil", ["kill", "pause", "restart"]), Some("kill"));
        assert_eq!(suggest("duraton", ["duration", "rate"]), Some("duration"));
        assert_eq!(suggest("zzz", ["kill", "pause"]), None);
    }
}
