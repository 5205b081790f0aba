//! Splitting a SecLang action list (`"id:1,phase:2,msg:'a, b',t:none"`) into
//! `(name, value)` pairs. Commas inside single quotes do not split; a value wrapped in
//! single quotes is unwrapped (`\'` inside it is a quote).

/// One action as written: `msg:'x'` is `("msg", Some("x"))`, `chain` is `("chain", None)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAction {
    pub name: String,
    pub value: Option<String>,
}

/// Splits an action list.
pub fn split_actions(s: &str) -> Result<Vec<RawAction>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote && chars.peek() == Some(&'\'') => {
                cur.push('\\');
                cur.push('\'');
                chars.next();
            }
            '\'' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            ',' if !in_quote => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if in_quote {
        return Err(format!("unterminated single quote in actions {s:?}"));
    }
    parts.push(cur);
    let mut out = Vec::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (name, value) = match p.split_once(':') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (p, None),
        };
        if name.is_empty() {
            return Err(format!("action without a name in {p:?}"));
        }
        out.push(RawAction {
            name: name.to_owned(),
            value,
        });
    }
    Ok(out)
}

/// Removes one pair of surrounding single quotes and resolves `\'`.
fn unquote(v: &str) -> String {
    match v
        .strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .filter(|_| v.len() >= 2)
    {
        Some(inner) => inner.replace("\\'", "'"),
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_unquotes() {
        let a = split_actions("id:1, phase:2,msg:'a, b',t:none,chain,setvar:'tx.x=+%{tx.y}'")
            .expect("parses");
        let names: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["id", "phase", "msg", "t", "chain", "setvar"]);
        assert_eq!(a[2].value.as_deref(), Some("a, b"));
        assert_eq!(a[4].value, None);
        assert_eq!(a[5].value.as_deref(), Some("tx.x=+%{tx.y}"));
        assert!(split_actions("msg:'open").is_err());
    }
}
