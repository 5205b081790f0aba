//! SecLang lexing: a configuration file becomes a list of [`Directive`]s (name plus
//! arguments, with the line it starts on).
//!
//! Follows ModSecurity's (Apache's) configuration syntax: a line ending in `\` continues on
//! the next one (the two are joined, so `"id:1,\` + `  phase:2"` reads `"id:1,  phase:2"`);
//! blank lines and lines starting with `#` are skipped; arguments are separated by
//! whitespace and may be quoted with `"` or `'`, inside which only `\` before the quote
//! character is an escape (every other backslash is kept, so regexes stay intact).

/// One directive: `SecRule ARGS "@rx x" "id:1,..."` is name `SecRule` and three arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line of the directive's first physical line.
    pub line: usize,
    pub name: String,
    pub args: Vec<String>,
}

/// A lexing error with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

/// Splits a configuration file into directives.
pub fn lex(text: &str) -> Result<Vec<Directive>, LexError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim_end();
        if logical.is_empty() {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            start_line = line_no;
        }
        match line.strip_suffix('\\') {
            Some(head) => logical.push_str(head),
            None => {
                logical.push_str(line);
                out.push(split(&logical, start_line)?);
                logical.clear();
            }
        }
    }
    if !logical.trim().is_empty() {
        out.push(split(&logical, start_line)?);
    }
    Ok(out)
}

/// Splits one logical line into the directive name and its arguments.
fn split(line: &str, line_no: usize) -> Result<Directive, LexError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(LexError {
                    line: line_no,
                    message: format!("unterminated {first}-quoted argument"),
                });
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(LexError {
                    line: line_no,
                    message: "missing space after a quoted argument".into(),
                });
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    let mut it = words.into_iter();
    let name = it.next().unwrap_or_default();
    Ok(Directive {
        line: line_no,
        name,
        args: it.collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_quotes_and_comments() {
        let text = "# comment\n\nSecRule ARGS \"@rx a\\\"b\\d\" \\\n    \"id:1,\\\n    msg:'x y'\"\nSecMarker END-X\n";
        let d = lex(text).expect("lexes");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].line, 3);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b\\d", "id:1,    msg:'x y'"]);
        assert_eq!(d[1].line, 6);
        assert_eq!(d[1].args, vec!["END-X"]);
    }

    #[test]
    fn unterminated_quote_is_an_error_with_its_line() {
        let e = lex("\nSecRule ARGS \"@rx a").expect_err("unterminated");
        assert_eq!(e.line, 2);
    }
}
