//! `{placeholder}` templates in commands and ports.

/// The placeholders a target's command may use.
pub const PLACEHOLDERS: &[&str] = &["port", "host", "data_dir", "run_dir", "trial", "target", "scenario_dir"];

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

/// The `{name}` placeholders of a text where braces may also be literal
/// (a JSON body): only braces around a name (letters, digits, `_`, `.`)
/// make a placeholder.
pub fn names(text: &str) -> impl Iterator<Item = &str> {
    text.split('{').skip(1).filter_map(|part| {
        let name = &part[..part.find('}')?];
        let is_name = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        is_name.then_some(name)
    })
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
        let json = r#"{"key": "{key_b64}", "n": {seq}, "o": {"a": 1}}"#;
        assert_eq!(names(json).collect::<Vec<_>>(), ["key_b64", "seq"]);
    }
}
