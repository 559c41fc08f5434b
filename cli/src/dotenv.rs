//! `.env` files for `ductape secrets import` and `export`.
//!
//! Hand-written rather than taken from `dotenvy`: a dotenv loader expands `$VAR` in
//! unquoted and double-quoted values from the environment of whoever runs it, which would
//! silently change any password containing `$` on its way into the secrets store. Here a
//! value is read exactly as written: `KEY=value`, `export KEY=value`, `'literal'`,
//! `"escaped\n"` (`\n \r \t \" \\ \$`), quoted values across lines, and `# comments`.

/// One `KEY=value` of a file, with the line it starts on.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parses a whole file; the error names the line and what is wrong with it (never the
/// value, which may be a secret).
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while !rest.is_empty() {
        let (this, consumed) = parse_line(rest).map_err(|why| format!("line {line}: {why}"))?;
        let spanned = rest[..consumed].matches('\n').count();
        if let Some((key, value)) = this {
            entries.push(Entry { key, value, line });
        }
        line += spanned.max(1);
        rest = &rest[consumed..];
        if spanned == 0 && consumed == 0 {
            break;
        }
    }
    Ok(entries)
}

/// Reads one logical line (a quoted value may span several) from the start of `s`: the
/// entry if it has one, and how many bytes it took, its newline included.
fn parse_line(s: &str) -> Result<(Option<(String, String)>, usize), String> {
    let end = s.find('\n').map_or(s.len(), |i| i + 1);
    let first = s[..end].trim_end_matches(['\n', '\r']);
    let trimmed = first.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok((None, end));
    }
    let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
    let Some((key, _)) = body.split_once('=') else {
        return Err("expected KEY=value".into());
    };
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err("expected KEY=value with a key of one word".into());
    }
    // Where the value starts, as an offset into `s`.
    let body_start = body.as_ptr() as usize - s.as_ptr() as usize;
    let eq = body_start + body.find('=').unwrap_or(0) + 1;
    let value_start = eq + (s[eq..].len() - s[eq..].trim_start_matches([' ', '\t']).len());
    let v = &s[value_start..];
    let (value, after) = match v.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let (value, len) = quoted(&v[1..], q)?;
            (value, value_start + 1 + len)
        }
        _ => {
            let line_end = v.find('\n').unwrap_or(v.len());
            let raw = v[..line_end].trim_end_matches('\r');
            // `KEY=value # comment`: a `#` after whitespace starts a comment.
            let cut = raw
                .char_indices()
                .find(|&(i, c)| c == '#' && i > 0 && raw[..i].ends_with([' ', '\t']))
                .map_or(raw.len(), |(i, _)| i);
            (raw[..cut].trim_end().to_owned(), value_start + line_end)
        }
    };
    // After a closing quote: only blanks or a comment before the end of the line.
    let tail_end = s[after..].find('\n').map_or(s.len(), |i| after + i + 1);
    let tail = s[after..tail_end].trim();
    if !(tail.is_empty() || tail.starts_with('#')) {
        return Err("unexpected text after the closing quote".into());
    }
    Ok((Some((key.to_owned(), value)), tail_end))
}

/// The value of a quoted string whose opening quote was just before `s`, and the bytes it
/// took with its closing quote.
fn quoted(s: &str, quote: char) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, i + 1)),
            '\\' if quote == '"' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e @ ('"' | '\\' | '$'))) => out.push(e),
                // An unknown escape is kept as written.
                Some((_, e)) => {
                    out.push('\\');
                    out.push(e);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!("the value's {quote} quote is never closed"))
}

/// `KEY=value` for a file, quoting the value when it needs it so that [`parse`] (and other
/// dotenv readers, which expand `$`) read back exactly `value`.
pub fn line(key: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@+,=%^~".contains(c));
    if plain {
        return format!("{key}={value}");
    }
    let mut out = String::with_capacity(value.len() + key.len() + 3);
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn reads_plain_exported_quoted_and_commented_lines() {
        let text = "# header\n\nA=1\nexport B = two words # note\nC='$HOME \"x\"' # c\nD=\"a\\nb\\t\\$c\\\\\"\r\nE=\nF=p#ss\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("A", "1"),
                kv("B", "two words"),
                kv("C", "$HOME \"x\""),
                kv("D", "a\nb\t$c\\"),
                kv("E", ""),
                kv("F", "p#ss"),
            ]
        );
    }

    #[test]
    fn never_expands_variables() {
        std::env::set_var("DUCTAPE_DOTENV_PROBE", "leaked");
        assert_eq!(
            pairs("A=$DUCTAPE_DOTENV_PROBE\nB=\"${DUCTAPE_DOTENV_PROBE}\"\n"),
            vec![
                kv("A", "$DUCTAPE_DOTENV_PROBE"),
                kv("B", "${DUCTAPE_DOTENV_PROBE}")
            ]
        );
    }

    #[test]
    fn quoted_values_span_lines_and_line_numbers_follow() {
        let entries = parse("A=\"one\ntwo\"\nB='x\ny'\nC=3\n").unwrap();
        assert_eq!(entries[0].value, "one\ntwo");
        assert_eq!(entries[1].value, "x\ny");
        assert_eq!((entries[2].key.as_str(), entries[2].line), ("C", 5));
    }

    #[test]
    fn errors_name_the_line_and_never_the_value() {
        let e = parse("A=1\nB=\"sk_live_CANARY\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(!e.contains("CANARY"), "{e}");
        assert!(parse("A=1\njust words\n")
            .unwrap_err()
            .starts_with("line 2:"));
        assert!(parse("A='x' trailing\n")
            .unwrap_err()
            .contains("after the closing quote"));
        assert!(parse("=v\n").is_err());
    }

    #[test]
    fn every_value_written_reads_back_the_same() {
        let values = [
            "plain",
            "",
            "with space",
            "quote\"s",
            "single'",
            "dollar$HOME",
            "back\\slash",
            "multi\nline\r\n",
            "tab\there",
            "#hash",
            "trailing ",
            " leading",
            "üñí©ødé 🔑",
            "a=b",
            "x # y",
        ];
        let text: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| line(&format!("K{i}"), v) + "\n")
            .collect();
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), values.len());
        for (e, v) in back.iter().zip(values) {
            assert_eq!(e.value, v, "{}", e.key);
        }
    }
}
