//! `{placeholder}` templates in commands and ports.

/// The placeholders a target's command may use.
pub const PLACEHOLDERS: &[&str] = &["port", "host", "data_dir", "run_dir", "trial", "target"];

/// The names of the placeholders in a text, or the reason it is malformed.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// Fills placeholders from `(name, value)` pairs. Names were checked at
/// compile time, so an unknown one is left as it is.
pub fn render<K: AsRef<str>>(text: &str, vars: &[(K, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{}}}", name.as_ref()), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_fills() {
        assert_eq!(placeholders("--port={port} {data_dir}").unwrap(), vec!["port", "data_dir"]);
        assert!(placeholders("{port").is_err());
        assert_eq!(render("{port}/{port}", &[("port", "80".into())]), "80/80");
    }
}
