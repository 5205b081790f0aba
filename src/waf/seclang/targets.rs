//! SecLang variable lists: `ARGS|!ARGS:pwd|&TX:x|REQUEST_HEADERS:/^x-/|XML:/*` into the
//! model's [`Target`]s and [`Exclusion`]s.

use crate::waf::model::{Exclusion, Selector, Target, TargetSpec, Variable};

/// Splits a variable list on `|`, keeping `|` inside `/regex/` selectors and quotes.
pub fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_regex = false;
    let mut in_quote = false;
    let mut prev = '\0';
    for c in s.chars() {
        match c {
            '\'' if !in_regex => in_quote = !in_quote,
            '/' if !in_quote && prev != '\\' => {
                // A selector regex opens right after `:`; it closes at the next bare `/`.
                if in_regex {
                    in_regex = false;
                } else if prev == ':' && !cur.to_ascii_uppercase().ends_with("XML:") {
                    in_regex = true;
                }
                cur.push(c);
            }
            '|' if !in_regex && !in_quote => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
        prev = if prev == '\\' && c == '\\' { '\0' } else { c };
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// One parsed list element.
pub enum Parsed {
    Target(Target),
    Exclusion(Exclusion),
}

/// Parses one element: `!`/`&` prefixes, the variable, an optional `:key` or `:/regex/`.
pub fn parse_one(s: &str) -> Result<Parsed, String> {
    let mut rest = s.trim();
    let exclusion = rest.starts_with('!');
    if exclusion {
        rest = &rest[1..];
    }
    let count = rest.starts_with('&');
    if count {
        rest = &rest[1..];
    }
    let (name, sel) = match rest.split_once(':') {
        Some((n, k)) => (n, Some(k.trim_matches('\''))),
        None => (rest, None),
    };
    // ARGS*, REQUEST_BODY: the SecLang views, without the XML body (as ModSecurity).
    let variable = Variable::parse(name)
        .map(Variable::seclang)
        .ok_or_else(|| format!("unsupported variable {name:?} in {s:?}"))?;
    let selector = match sel {
        None => Selector::All,
        Some("") => return Err(format!("empty selector in {s:?}")),
        Some(k) if variable == Variable::Xml => xpath(k)?,
        Some(k) => {
            if !variable.is_collection() {
                return Err(format!("{variable} is not a collection: selector {k:?}"));
            }
            if k.len() >= 2 && k.starts_with('/') && k.ends_with('/') {
                let re = regex::RegexBuilder::new(&k[1..k.len() - 1])
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("invalid selector regex in {s:?}: {e}"))?;
                Selector::Regex(re)
            } else {
                Selector::Key(k.to_owned())
            }
        }
    };
    Ok(if exclusion {
        Parsed::Exclusion(Exclusion { variable, selector })
    } else {
        Parsed::Target(Target {
            variable,
            selector,
            count,
        })
    })
}

/// The two XPath selectors CRS uses: `/*` (every text node and attribute value) and `//@*`
/// (attribute values only, whose decoded keys contain `@`). Other XPath is not supported.
fn xpath(k: &str) -> Result<Selector, String> {
    match k {
        "/*" => Ok(Selector::All),
        "//@*" => regex::Regex::new("@")
            .map(Selector::Regex)
            .map_err(|e| e.to_string()),
        other => Err(format!(
            "XML:{other}: only the XPath selectors /* and //@* are supported"
        )),
    }
}

/// Parses a whole list into a target spec.
pub fn parse_list(s: &str) -> Result<TargetSpec, String> {
    let mut spec = TargetSpec::default();
    for part in split_list(s) {
        match parse_one(&part)? {
            Parsed::Target(t) => spec.targets.push(t),
            Parsed::Exclusion(e) => spec.exclusions.push(e),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_regex_selectors() {
        let parts = split_list("REQUEST_COOKIES|!REQUEST_COOKIES:/__utm(?:a|b)/|ARGS_NAMES|XML:/*");
        assert_eq!(
            parts,
            [
                "REQUEST_COOKIES",
                "!REQUEST_COOKIES:/__utm(?:a|b)/",
                "ARGS_NAMES",
                "XML:/*"
            ]
        );
    }

    #[test]
    fn parses_counts_exclusions_and_xml() {
        let spec = parse_list("&TX:x|ARGS|!ARGS:pwd|XML://@*").expect("parses");
        assert_eq!(spec.targets.len(), 3);
        assert!(spec.targets[0].count);
        assert_eq!(spec.exclusions.len(), 1);
        assert!(parse_list("NOPE").is_err());
        assert!(parse_list("XML://a/b").is_err());
    }
}
