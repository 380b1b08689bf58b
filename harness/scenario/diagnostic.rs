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
        let offset = offset.min(self.source_text.len());
        let before = &self.source_text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// `file:line:col: message` lines, in source order.
    pub fn rendered(&self) -> Vec<String> {
        let mut list = self.list.clone();
        list.sort_by_key(|d| (d.span.start, d.span.end));
        list.dedup();
        list.iter()
            .map(|d| {
                let (line, col) = self.line_col(d.span.start);
                format!("{}:{line}:{col}: {}", self.path.display(), d.message)
            })
            .collect()
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
