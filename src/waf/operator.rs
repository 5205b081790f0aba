//! Operators (SecLang `@` names): a closed enum compiled at load, evaluated on transformed
//! bytes. Also owns the required-literal extraction used by the engine's prefilter.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder};

/// Compiled-regex size limit (bytes of compiled program), per rule.
pub const REGEX_SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// A phrase set matched with one aho-corasick automaton, ASCII case-insensitive (like `@pm`).
#[derive(Debug)]
pub struct PhraseSet {
    pub phrases: Vec<String>,
    pub ac: AhoCorasick,
}

/// The operator kind and its compiled argument.
#[derive(Debug)]
pub enum OpKind {
    Rx(Regex),
    Pm(PhraseSet),
    /// `@pmFromFile` keeps the file name for display; matching is the same as `Pm`.
    PmFromFile(String, PhraseSet),
    Contains(Vec<u8>),
    BeginsWith(Vec<u8>),
    EndsWith(Vec<u8>),
    Streq(Vec<u8>),
    Within(Vec<u8>),
    ContainsWord(Vec<u8>),
    /// An operator whose argument has `%{...}` macros, expanded per request by the engine
    /// (see [`Operator::macro_template`] and [`Operator::eval_macro`]).
    Macro(MacroOp, String),
    Eq(i64),
    Gt(i64),
    Ge(i64),
    Lt(i64),
    Le(i64),
    IpMatch(Vec<IpNet>),
    DetectSqli,
    DetectXss,
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    ValidateByteRange(Vec<(u8, u8)>),
    UnconditionalMatch,
    NoMatch,
}

/// Operators that accept a macro argument (`@ge %{tx.inbound_anomaly_score_threshold}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacroOp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
    Within,
    Streq,
    EndsWith,
    BeginsWith,
    Contains,
    ContainsWord,
}

impl MacroOp {
    fn parse(name: &str) -> Option<MacroOp> {
        Some(match name {
            "eq" => MacroOp::Eq,
            "ge" => MacroOp::Ge,
            "gt" => MacroOp::Gt,
            "le" => MacroOp::Le,
            "lt" => MacroOp::Lt,
            "within" => MacroOp::Within,
            "streq" => MacroOp::Streq,
            "endsWith" => MacroOp::EndsWith,
            "beginsWith" => MacroOp::BeginsWith,
            "contains" => MacroOp::Contains,
            "containsWord" => MacroOp::ContainsWord,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            MacroOp::Eq => "eq",
            MacroOp::Ge => "ge",
            MacroOp::Gt => "gt",
            MacroOp::Le => "le",
            MacroOp::Lt => "lt",
            MacroOp::Within => "within",
            MacroOp::Streq => "streq",
            MacroOp::EndsWith => "endsWith",
            MacroOp::BeginsWith => "beginsWith",
            MacroOp::Contains => "contains",
            MacroOp::ContainsWord => "containsWord",
        }
    }

    /// Evaluates with an already expanded argument (not negated).
    fn eval(self, value: &[u8], arg: &[u8]) -> bool {
        match self {
            MacroOp::Eq => value_num(value) == value_num(arg),
            MacroOp::Ge => value_num(value) >= value_num(arg),
            MacroOp::Gt => value_num(value) > value_num(arg),
            MacroOp::Le => value_num(value) <= value_num(arg),
            MacroOp::Lt => value_num(value) < value_num(arg),
            MacroOp::Within => memchr::memmem::find(arg, value).is_some(),
            MacroOp::Streq => value == arg,
            MacroOp::EndsWith => value.ends_with(arg),
            MacroOp::BeginsWith => value.starts_with(arg),
            MacroOp::Contains => memchr::memmem::find(value, arg).is_some(),
            MacroOp::ContainsWord => contains_word(value, arg),
        }
    }
}

/// `@containsWord`: `word` occurs delimited by non-word characters (or the ends).
fn contains_word(value: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    memchr::memmem::find_iter(value, word).any(|at| {
        let before = at == 0 || !is_word(value[at - 1]);
        let end = at + word.len();
        let after = end >= value.len() || !is_word(value[end]);
        before && after
    })
}

/// An operator, possibly negated (`!@rx`).
#[derive(Debug)]
pub struct Operator {
    pub kind: OpKind,
    pub negate: bool,
    /// Lowercased literals one of which every match must contain (prefilter), when known.
    pub required_literals: Option<Vec<Vec<u8>>>,
    /// The operator cannot match a plain value (see [`is_plain_byte`]): every string it
    /// matches holds a byte that is not plain. The engine skips plain values for it when the
    /// rule's transformations keep plain values plain.
    pub plain_impossible: bool,
}

/// A plain byte: ASCII letter, digit or `_`, or a non-ASCII byte other than 0xA0 (decoded CJK
/// text and ordinary words are made of these). See `Transform::keeps_plain`.
pub const fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || (b >= 0x80 && b != 0xa0)
}

/// Pseudo-random plain values (bytes drawn from every [`is_plain_byte`] byte, up to 63 long)
/// after `fixed`, for the tests of the plain-value fast paths.
#[cfg(test)]
pub(crate) fn plain_samples(fixed: &[&str], seed: u64, n: usize) -> Vec<Vec<u8>> {
    let alphabet: Vec<u8> = (0u8..=255).filter(|&b| is_plain_byte(b)).collect();
    let mut samples: Vec<Vec<u8>> = fixed.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut seed = seed;
    for _ in 0..n {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (seed >> 58) as usize;
        samples.push(
            (0..len)
                .map(|i| alphabet[(seed.rotate_left(i as u32 * 7) >> 33) as usize % alphabet.len()])
                .collect(),
        );
    }
    samples
}

/// Names accepted by [`Operator::compile`], as in SecLang.
pub const OPERATOR_NAMES: &[&str] = &[
    "rx",
    "pm",
    "pmFromFile",
    "contains",
    "beginsWith",
    "endsWith",
    "streq",
    "within",
    "containsWord",
    "eq",
    "gt",
    "ge",
    "lt",
    "le",
    "ipMatch",
    "detectSQLi",
    "detectXSS",
    "validateUrlEncoding",
    "validateUtf8Encoding",
    "validateByteRange",
    "unconditionalMatch",
    "noMatch",
];

/// The largest phrase-list DFA kept (see [`phrase_set`]).
const PHRASE_DFA_MAX_BYTES: usize = 4 << 20;

fn phrase_set(phrases: Vec<String>) -> Result<PhraseSet, String> {
    let phrases: Vec<String> = phrases.into_iter().filter(|p| !p.is_empty()).collect();
    if phrases.is_empty() {
        return Err("phrase list is empty".into());
    }
    let build = |kind| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(kind))
            .build(&phrases)
            .map_err(|e| format!("phrase list: {e}"))
    };
    // A DFA is the fastest automaton; a long list (CRS data files) would take tens of MB as
    // one, and gets the far smaller contiguous NFA instead.
    let mut ac = build(aho_corasick::AhoCorasickKind::DFA)?;
    if ac.memory_usage() > PHRASE_DFA_MAX_BYTES {
        ac = build(aho_corasick::AhoCorasickKind::ContiguousNFA)?;
    }
    Ok(PhraseSet { phrases, ac })
}

fn parse_num(arg: &str) -> Result<i64, String> {
    arg.trim()
        .parse::<i64>()
        .map_err(|_| format!("expected an integer, got {arg:?}"))
}

/// Parses leading digits like ModSecurity (non-numeric input counts as 0).
fn value_num(v: &[u8]) -> i64 {
    let s = std::str::from_utf8(v).unwrap_or("").trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    s[..end].parse().unwrap_or(0)
}

/// Reads a `@pmFromFile` data file: one phrase per line, `#` comments and blanks skipped.
pub fn read_phrase_file(path: &Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("data file {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

impl Operator {
    /// Compiles an operator by SecLang name. `phrases` overrides the argument for `pm`;
    /// `data_dir` resolves `pmFromFile` names.
    pub fn compile(
        name: &str,
        arg: &str,
        phrases: Option<Vec<String>>,
        negate: bool,
        data_dir: &Path,
    ) -> Result<Operator, String> {
        let kind = match name {
            "rx" => {
                let re = RegexBuilder::new(arg)
                    .unicode(false)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("invalid regex: {e}"))?;
                OpKind::Rx(re)
            }
            "pm" => {
                let list =
                    phrases.unwrap_or_else(|| arg.split_whitespace().map(str::to_owned).collect());
                OpKind::Pm(phrase_set(list)?)
            }
            "pmFromFile" => {
                let file = arg.trim();
                if file.is_empty() || file.contains("..") {
                    return Err(format!("pmFromFile: bad data file name {file:?}"));
                }
                let list = read_phrase_file(&data_dir.join(file))?;
                OpKind::PmFromFile(file.to_owned(), phrase_set(list)?)
            }
            "contains" => OpKind::Contains(arg.as_bytes().to_vec()),
            "beginsWith" => OpKind::BeginsWith(arg.as_bytes().to_vec()),
            "endsWith" => OpKind::EndsWith(arg.as_bytes().to_vec()),
            "streq" => OpKind::Streq(arg.as_bytes().to_vec()),
            "within" => OpKind::Within(arg.as_bytes().to_vec()),
            "containsWord" => OpKind::ContainsWord(arg.as_bytes().to_vec()),
            "eq" => OpKind::Eq(parse_num(arg)?),
            "gt" => OpKind::Gt(parse_num(arg)?),
            "ge" => OpKind::Ge(parse_num(arg)?),
            "lt" => OpKind::Lt(parse_num(arg)?),
            "le" => OpKind::Le(parse_num(arg)?),
            "ipMatch" => {
                let mut nets = Vec::new();
                for part in arg
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                {
                    let net = match part.parse::<IpNet>() {
                        Ok(n) => n,
                        Err(_) => part
                            .parse::<IpAddr>()
                            .map(IpNet::from)
                            .map_err(|_| format!("ipMatch: bad address or CIDR {part:?}"))?,
                    };
                    nets.push(net);
                }
                if nets.is_empty() {
                    return Err("ipMatch: empty list".into());
                }
                OpKind::IpMatch(nets)
            }
            "detectSQLi" => OpKind::DetectSqli,
            "detectXSS" => OpKind::DetectXss,
            "validateUrlEncoding" => OpKind::ValidateUrlEncoding,
            "validateUtf8Encoding" => OpKind::ValidateUtf8Encoding,
            "validateByteRange" => OpKind::ValidateByteRange(parse_ranges(arg)?),
            "unconditionalMatch" => OpKind::UnconditionalMatch,
            "noMatch" => OpKind::NoMatch,
            other => return Err(format!("unknown operator {other:?}")),
        };
        // Both analyses of a regex read one parse of it.
        let hir = match &kind {
            OpKind::Rx(_) if !negate => parse_hir(arg),
            _ => None,
        };
        let required_literals = match &kind {
            OpKind::Rx(_) => hir.as_ref().and_then(required_literals_of),
            // A phrase match contains its phrase: the phrases are the prefilter's literals.
            OpKind::Pm(set) | OpKind::PmFromFile(_, set) if !negate => {
                let mut lits: Vec<Vec<u8>> = set
                    .phrases
                    .iter()
                    .map(|p| p.as_bytes().to_ascii_lowercase())
                    .collect();
                lits.sort();
                lits.dedup();
                lits.iter().all(|l| l.len() >= 2).then_some(lits)
            }
            _ => None,
        };
        let has_non_plain = |b: &[u8]| b.iter().any(|&c| !is_plain_byte(c));
        let plain_impossible = !negate
            && match &kind {
                OpKind::Rx(_) => hir.as_ref().is_some_and(needs_non_plain),
                // Phrases match ASCII case-insensitively: case does not make a byte plain.
                OpKind::Pm(set) | OpKind::PmFromFile(_, set) => {
                    set.phrases.iter().all(|p| has_non_plain(p.as_bytes()))
                }
                OpKind::Contains(a)
                | OpKind::BeginsWith(a)
                | OpKind::EndsWith(a)
                | OpKind::Streq(a)
                | OpKind::ContainsWord(a) => has_non_plain(a),
                _ => false,
            };
        Ok(Operator {
            kind,
            negate,
            required_literals,
            plain_impossible,
        })
    }

    /// Compiles an operator whose argument contains `%{...}` macros (SecLang front-end).
    pub fn compile_macro(name: &str, template: &str, negate: bool) -> Result<Operator, String> {
        let op = MacroOp::parse(name)
            .ok_or_else(|| format!("@{name}: macros in the argument are not supported"))?;
        Ok(Operator {
            kind: OpKind::Macro(op, template.trim().to_owned()),
            negate,
            required_literals: None,
            plain_impossible: false,
        })
    }

    /// The argument template to expand per request, for macro operators.
    pub fn macro_template(&self) -> Option<&str> {
        match &self.kind {
            OpKind::Macro(_, t) => Some(t),
            _ => None,
        }
    }

    /// Evaluates a macro operator with its expanded argument (other operators ignore `arg`).
    pub fn eval_macro(&self, value: &[u8], arg: &[u8]) -> bool {
        match &self.kind {
            OpKind::Macro(op, _) => op.eval(value, arg) != self.negate,
            _ => {
                let mut caps = Vec::new();
                self.eval(value, None, &mut caps, false)
            }
        }
    }

    /// Evaluates the operator. On a match, `caps` receives the matched fragment(s):
    /// for `rx` the whole match then groups 1-9 (TX:0-9), for `pm` the phrase.
    /// `want_caps` asks `rx` for capture groups (slower); otherwise it only tests for a match.
    pub fn eval(
        &self,
        value: &[u8],
        client_ip: Option<IpAddr>,
        caps: &mut Vec<Vec<u8>>,
        want_caps: bool,
    ) -> bool {
        caps.clear();
        let hit = match &self.kind {
            // `captures` allocates its slots on every call; most values do not match, and
            // `is_match` settles those without it.
            OpKind::Rx(re) if want_caps => {
                match re.is_match(value).then(|| re.captures(value)).flatten() {
                    Some(c) => {
                        for g in c.iter().take(10) {
                            caps.push(g.map(|m| m.as_bytes().to_vec()).unwrap_or_default());
                        }
                        true
                    }
                    None => false,
                }
            }
            OpKind::Rx(re) => re.is_match(value),
            OpKind::Pm(set) | OpKind::PmFromFile(_, set) => match set.ac.find(value) {
                Some(m) => {
                    caps.push(value[m.start()..m.end()].to_vec());
                    true
                }
                None => false,
            },
            OpKind::Contains(s) => memchr::memmem::find(value, s).is_some(),
            OpKind::BeginsWith(s) => value.starts_with(s),
            OpKind::EndsWith(s) => value.ends_with(s),
            OpKind::Streq(s) => value == s.as_slice(),
            OpKind::Within(s) => memchr::memmem::find(s, value).is_some(),
            OpKind::ContainsWord(s) => contains_word(value, s),
            // Unexpanded (the engine expands first): the template itself is the argument.
            OpKind::Macro(op, t) => op.eval(value, t.as_bytes()),
            OpKind::Eq(n) => value_num(value) == *n,
            OpKind::Gt(n) => value_num(value) > *n,
            OpKind::Ge(n) => value_num(value) >= *n,
            OpKind::Lt(n) => value_num(value) < *n,
            OpKind::Le(n) => value_num(value) <= *n,
            OpKind::IpMatch(nets) => {
                let ip = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                    .or(client_ip);
                ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
            }
            OpKind::DetectSqli => crate::waf::sqli::detect(value, caps),
            OpKind::DetectXss => libinjectionrs::detect_xss(value).is_injection(),
            OpKind::ValidateUrlEncoding => !valid_url_encoding(value),
            OpKind::ValidateUtf8Encoding => std::str::from_utf8(value).is_err(),
            OpKind::ValidateByteRange(ranges) => value
                .iter()
                .any(|b| !ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(b))),
            OpKind::UnconditionalMatch => true,
            OpKind::NoMatch => false,
        };
        hit != self.negate
    }

    /// SecLang-style name of the operator (`rx`, `pm`, ...), with `!` when negated.
    pub fn name(&self) -> String {
        let n = match &self.kind {
            OpKind::Rx(_) => "rx",
            OpKind::Pm(_) => "pm",
            OpKind::PmFromFile(..) => "pmFromFile",
            OpKind::Contains(_) => "contains",
            OpKind::BeginsWith(_) => "beginsWith",
            OpKind::EndsWith(_) => "endsWith",
            OpKind::Streq(_) => "streq",
            OpKind::Within(_) => "within",
            OpKind::ContainsWord(_) => "containsWord",
            OpKind::Macro(op, _) => op.name(),
            OpKind::Eq(_) => "eq",
            OpKind::Gt(_) => "gt",
            OpKind::Ge(_) => "ge",
            OpKind::Lt(_) => "lt",
            OpKind::Le(_) => "le",
            OpKind::IpMatch(_) => "ipMatch",
            OpKind::DetectSqli => "detectSQLi",
            OpKind::DetectXss => "detectXSS",
            OpKind::ValidateUrlEncoding => "validateUrlEncoding",
            OpKind::ValidateUtf8Encoding => "validateUtf8Encoding",
            OpKind::ValidateByteRange(_) => "validateByteRange",
            OpKind::UnconditionalMatch => "unconditionalMatch",
            OpKind::NoMatch => "noMatch",
        };
        if self.negate {
            format!("!@{n}")
        } else {
            format!("@{n}")
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

fn parse_ranges(arg: &str) -> Result<Vec<(u8, u8)>, String> {
    let mut out = Vec::new();
    for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("validateByteRange: bad range {part:?}");
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u8>().map_err(|_| bad())?,
                b.trim().parse::<u8>().map_err(|_| bad())?,
            ),
            None => {
                let v = part.parse::<u8>().map_err(|_| bad())?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        out.push((lo, hi));
    }
    if out.is_empty() {
        return Err("validateByteRange: empty range list".into());
    }
    Ok(out)
}

/// `%` must be followed by two hex digits.
pub fn valid_url_encoding(v: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &v[i..]) {
        let at = i + p;
        let ok = v.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && v.get(at + 2).is_some_and(u8::is_ascii_hexdigit);
        if !ok {
            return false;
        }
        i = at + 3;
    }
    true
}

/// Extracts literals one of which every match of `pattern` must contain (lowercased), by
/// walking the regex-syntax HIR: exact literal sets are combined across concatenations and
/// unioned across alternations. `None` when no set with literals of 2+ bytes exists.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    required_literals_of(&parse_hir(pattern)?)
}

/// The pattern as the `rx` operator compiles it (bytes, no Unicode classes).
fn parse_hir(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()
}

fn required_literals_of(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    let facts = literal_facts(hir);
    let mut set = facts.required?;
    for l in set.iter_mut() {
        l.make_ascii_lowercase();
    }
    set.sort();
    set.dedup();
    (set.iter().map(Vec::len).min().unwrap_or(0) >= 2).then_some(set)
}

/// Whether every match of `pattern` contains a byte that is not plain ([`is_plain_byte`]),
/// so that the pattern cannot match anywhere in a plain value. `false` when unsure.
pub fn needs_non_plain_pattern(pattern: &str) -> bool {
    parse_hir(pattern).is_some_and(|hir| needs_non_plain(&hir))
}

fn needs_non_plain(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => lit.0.iter().any(|&b| !is_plain_byte(b)),
        HirKind::Class(Class::Bytes(c)) => c
            .ranges()
            .iter()
            .all(|r| (r.start()..=r.end()).all(|b| !is_plain_byte(b))),
        // Only ASCII ranges are judged; anything wider may encode to plain bytes.
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().all(|r| {
            u8::try_from(u32::from(r.end()))
                .ok()
                .filter(|&end| end < 0x80)
                .is_some_and(|end| (r.start() as u8..=end).all(|b| !is_plain_byte(b)))
        }),
        HirKind::Capture(c) => needs_non_plain(&c.sub),
        HirKind::Repetition(r) => r.min >= 1 && needs_non_plain(&r.sub),
        HirKind::Concat(children) => children.iter().any(needs_non_plain),
        HirKind::Alternation(children) => children.iter().all(needs_non_plain),
    }
}

/// Bounds of the literal analysis.
const MAX_SET: usize = 64;
const MAX_LIT: usize = 32;

/// What is known about the strings a HIR node matches.
struct Facts {
    /// Every string the node can match, when that set is small and finite.
    exact: Option<Vec<Vec<u8>>>,
    /// A set one of whose members occurs in every match.
    required: Option<Vec<Vec<u8>>>,
}

fn quality(set: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    (
        set.iter().map(Vec::len).min().unwrap_or(0),
        std::cmp::Reverse(set.len()),
    )
}

fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if quality(&b) > quality(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn useful(set: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    (!set.is_empty() && set.iter().all(|l| !l.is_empty())).then(|| set.to_vec())
}

fn literal_facts(hir: &regex_syntax::hir::Hir) -> Facts {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Facts {
            exact: Some(vec![Vec::new()]),
            required: None,
        },
        HirKind::Literal(lit) => {
            let v = lit.0.to_vec();
            Facts {
                exact: Some(vec![v.clone()]),
                required: Some(vec![v]),
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let n: usize = c
                .ranges()
                .iter()
                .map(|r| usize::from(r.end() - r.start()) + 1)
                .sum();
            if n > 8 {
                return Facts {
                    exact: None,
                    required: None,
                };
            }
            let set: Vec<Vec<u8>> = c
                .ranges()
                .iter()
                .flat_map(|r| (r.start()..=r.end()).map(|b| vec![b]))
                .collect();
            Facts {
                exact: Some(set.clone()),
                required: Some(set),
            }
        }
        HirKind::Class(Class::Unicode(c)) => {
            let n: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if n > 8 {
                return Facts {
                    exact: None,
                    required: None,
                };
            }
            let mut set = Vec::new();
            for r in c.ranges() {
                for cp in u32::from(r.start())..=u32::from(r.end()) {
                    if let Some(ch) = char::from_u32(cp) {
                        set.push(ch.to_string().into_bytes());
                    }
                }
            }
            Facts {
                exact: Some(set.clone()),
                required: Some(set),
            }
        }
        HirKind::Capture(c) => literal_facts(&c.sub),
        HirKind::Repetition(r) => {
            let sub = literal_facts(&r.sub);
            if r.min == 0 {
                let exact = match (r.max, sub.exact) {
                    (Some(1), Some(mut e)) => {
                        e.push(Vec::new());
                        Some(e)
                    }
                    _ => None,
                };
                Facts {
                    exact,
                    required: None,
                }
            } else if r.min == 1 && r.max == Some(1) {
                sub
            } else {
                Facts {
                    exact: None,
                    required: sub.required,
                }
            }
        }
        HirKind::Concat(children) => {
            let mut cur: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            let mut best: Option<Vec<Vec<u8>>> = None;
            for child in children {
                let f = literal_facts(child);
                match (cur.take(), f.exact) {
                    (Some(c), Some(e)) if c.len() * e.len() <= MAX_SET => {
                        let mut next = Vec::with_capacity(c.len() * e.len());
                        let mut too_long = false;
                        for a in &c {
                            for b in &e {
                                let mut s = a.clone();
                                s.extend_from_slice(b);
                                too_long |= s.len() > MAX_LIT;
                                next.push(s);
                            }
                        }
                        if too_long {
                            best = better(best, useful(&c));
                            best = better(best, f.required);
                            cur = None;
                            all_exact = false;
                        } else {
                            cur = Some(next);
                        }
                    }
                    (c, e) => {
                        all_exact = false;
                        if let Some(c) = c {
                            best = better(best, useful(&c));
                        }
                        best = better(best, f.required);
                        // Restart accumulation after a non-literal piece.
                        cur = if e.is_some() {
                            e
                        } else {
                            Some(vec![Vec::new()])
                        };
                    }
                }
            }
            if let Some(c) = &cur {
                best = better(best, useful(c));
            }
            Facts {
                exact: if all_exact { cur } else { None },
                required: best,
            }
        }
        HirKind::Alternation(children) => {
            let mut exact: Option<Vec<Vec<u8>>> = Some(Vec::new());
            let mut required: Option<Vec<Vec<u8>>> = Some(Vec::new());
            for child in children {
                let f = literal_facts(child);
                exact = match (exact, f.exact) {
                    (Some(mut a), Some(b)) if a.len() + b.len() <= MAX_SET => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                };
                required = match (required, f.required) {
                    (Some(mut a), Some(b)) if a.len() + b.len() <= 4 * MAX_SET => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                };
            }
            Facts { exact, required }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, arg: &str) -> Operator {
        Operator::compile(name, arg, None, false, Path::new("rulesets/data"))
            .expect("test operator compiles")
    }

    fn m(o: &Operator, v: &str) -> bool {
        o.eval(v.as_bytes(), None, &mut Vec::new(), false)
    }

    #[test]
    fn plain_impossible_patterns() {
        for p in [
            r"\.\./",
            r"(?i)union\s+select",
            r"(?:%27|')",
            r"\A\s*<\?(?:php\b|=)",
            r"(?i)<script",
            r"[<>]+",
            r"a(?:b|c)=",
        ] {
            assert!(needs_non_plain_pattern(p), "{p} needs a non-plain byte");
        }
        for p in [
            r"(?i)union",
            r"a|\.",
            r"[^a-z]",
            r"x*",
            r"^$",
            r"\.?",
            r"\w+",
            r"[\x80-\xff]",
            r"(",
        ] {
            assert!(!needs_non_plain_pattern(p), "{p} can match a plain value");
        }
        assert!(op("rx", r"\.\./").plain_impossible);
        assert!(
            !Operator::compile("rx", r"\.\./", None, true, Path::new("rulesets/data"))
                .expect("compiles")
                .plain_impossible
        );
        assert!(op("pm", "../ <script").plain_impossible);
        assert!(!op("pm", "../ union").plain_impossible);
        assert!(op("contains", "'").plain_impossible);
        assert!(!op("streq", "abc").plain_impossible);
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("rx", "(?i)union\\s+select", "1 UNION  select 2", true),
            ("rx", "(?i)union\\s+select", "reunion", false),
            ("pm", "eval system passthru", "x=SYSTEM(1)", true),
            ("pm", "eval system", "evening", false),
            ("contains", "../", "a/../b", true),
            ("contains", "../", "a/b", false),
            ("beginsWith", "/admin", "/admin/x", true),
            ("beginsWith", "/admin", "/x/admin", false),
            ("endsWith", ".php", "a.php", true),
            ("endsWith", ".php", "a.phps", false),
            ("streq", "GET", "GET", true),
            ("streq", "GET", "get", false),
            ("within", "|GET|POST|HEAD|", "POST", true),
            ("within", "|GET|POST|HEAD|", "TRACE", false),
            ("eq", "3", "3", true),
            ("gt", "255", "300", true),
            ("gt", "255", "abc", false),
            ("ge", "5", "5", true),
            ("lt", "5", "4", true),
            ("le", "5", "6", false),
            ("ipMatch", "10.0.0.0/8,192.168.1.1", "10.2.3.4", true),
            ("ipMatch", "10.0.0.0/8,192.168.1.1", "192.168.1.2", false),
            ("detectSQLi", "", "1' or '1'='1", true),
            ("detectSQLi", "", "政务公开", false),
            ("detectXSS", "", "<script>alert(1)</script>", true),
            ("detectXSS", "", "hello world", false),
            ("validateUrlEncoding", "", "a%2x", true),
            ("validateUrlEncoding", "", "a%20b", false),
            ("validateUtf8Encoding", "", "\u{653f}", false),
            ("validateByteRange", "32-126", "abc", false),
            ("validateByteRange", "32-126", "ab\u{1}", true),
            ("unconditionalMatch", "", "", true),
            ("noMatch", "", "x", false),
        ];
        for (name, arg, v, want) in cases {
            assert_eq!(m(&op(name, arg), v), *want, "@{name} {arg:?} on {v:?}");
        }
        let bad = Operator::compile("validateUtf8Encoding", "", None, false, Path::new("."))
            .expect("compiles")
            .eval(&[0xd5, 0xfe], None, &mut Vec::new(), false);
        assert!(bad);
    }

    #[test]
    fn negation_and_errors() {
        let o = Operator::compile("streq", "GET", None, true, Path::new(".")).expect("compiles");
        assert!(o.eval(b"POST", None, &mut Vec::new(), false));
        assert!(!o.eval(b"GET", None, &mut Vec::new(), false));
        assert!(Operator::compile("rx", "(", None, false, Path::new(".")).is_err());
        assert!(Operator::compile("nope", "", None, false, Path::new(".")).is_err());
        assert!(Operator::compile("gt", "x", None, false, Path::new(".")).is_err());
        assert!(
            Operator::compile("pmFromFile", "missing.data", None, false, Path::new(".")).is_err()
        );
    }

    #[test]
    fn rx_captures() {
        let o = op("rx", "id=(\\d+)");
        let mut caps = Vec::new();
        assert!(o.eval(b"x id=42", None, &mut caps, true));
        assert_eq!(caps, vec![b"id=42".to_vec(), b"42".to_vec()]);
    }

    #[test]
    fn literal_extraction() {
        let l = required_literals("(?i)union\\s+select").expect("literals");
        assert!(l.iter().all(|x| x == b"union" || x == b"select"), "{l:?}");
        let l = required_literals("(?:^|[;|])\\s*(?:cat|wget)\\s+/etc").expect("literals");
        assert_eq!(l, vec![b"/etc".to_vec()]);
        let l = required_literals("a(?:bc|de)f|xyz").expect("literals");
        assert_eq!(l, vec![b"abcf".to_vec(), b"adef".to_vec(), b"xyz".to_vec()]);
        assert!(required_literals("(?:ab)?c").is_none());
        assert!(required_literals("\\w+").is_none());
        let l = required_literals("(?:/etc/passwd|win\\.ini)").expect("literals");
        assert!(l.contains(&b"/etc/passwd".to_vec()));
    }
}
