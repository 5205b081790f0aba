//! The native TOML ruleset front-end: raw serde structs (`deny_unknown_fields`, spans kept)
//! parsed into the validated rule model, with every error reported as `file:line:col`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::model::{
    Actions, Ctl, Disruptive, Exclusion, Phase, Rule, RuleTest, Selector, SetVar, SetVarOp,
    Severity, SkipTarget, Target, TargetSpec, Variable,
};
use super::operator::Operator;
use super::transform::Transform;

/// A ruleset loading error, displayed as `file:line:col: rule ID: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct LoadError {
    pub file: Option<PathBuf>,
    pub line: usize,
    pub col: usize,
    pub rule_id: Option<u32>,
    pub message: String,
}

impl LoadError {
    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.file {
            s.push_str(&format!("{}:{}:{}: ", f.display(), self.line, self.col));
        }
        if let Some(id) = self.rule_id {
            s.push_str(&format!("rule {id}: "));
        }
        s.push_str(&self.message);
        s
    }

    pub(crate) fn io(path: &Path, e: &std::io::Error) -> LoadError {
        LoadError {
            file: Some(path.to_owned()),
            line: 0,
            col: 0,
            rule_id: None,
            message: e.to_string(),
        }
    }

    pub(crate) fn plain(message: String) -> LoadError {
        LoadError {
            file: None,
            line: 0,
            col: 0,
            rule_id: None,
            message,
        }
    }

    /// An error about a compiled rule, located by its origin `file:line`.
    pub(crate) fn rule(r: &Rule, message: String) -> LoadError {
        let (file, line) = split_origin(&r.origin);
        LoadError {
            file,
            line,
            col: 1,
            rule_id: Some(r.id),
            message,
        }
    }

    pub(crate) fn duplicate(r: &Rule, first: &Rule) -> LoadError {
        LoadError::rule(
            r,
            format!("duplicate rule id (first defined at {})", first.origin),
        )
    }
}

fn split_origin(origin: &str) -> (Option<PathBuf>, usize) {
    match origin.rsplit_once(':') {
        Some((f, l)) => (Some(PathBuf::from(f)), l.parse().unwrap_or(0)),
        None => (None, 0),
    }
}

/// Raw ruleset file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// Raw rule (also used for chain links, where metadata fields must be absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<u32>>,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    severity: Option<Spanned<String>>,
    phase: Option<Spanned<String>>,
    paranoia: Option<Spanned<u8>>,
    targets: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    transformations: Vec<Spanned<String>>,
    operator: Spanned<String>,
    #[serde(default)]
    argument: Option<Spanned<String>>,
    #[serde(default)]
    phrases: Option<Vec<String>>,
    #[serde(default)]
    negate: bool,
    action: Option<Spanned<String>>,
    score: Option<u32>,
    #[serde(default)]
    capture: bool,
    #[serde(default)]
    multi_match: bool,
    #[serde(default)]
    ctl: Vec<Spanned<String>>,
    #[serde(default)]
    setvar: Vec<Spanned<String>>,
    #[serde(default)]
    skip: u32,
    skip_after: Option<u32>,
    chain: Option<Box<Spanned<RawRule>>>,
    tests: Option<RawTests>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTests {
    #[serde(default, rename = "match")]
    must_match: Vec<String>,
    #[serde(default)]
    no_match: Vec<String>,
}

/// Maps byte offsets of one file to `line:col` (1-based).
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn err(
        &self,
        span: Range<usize>,
        rule_id: Option<u32>,
        message: impl Into<String>,
    ) -> LoadError {
        let (line, col) = line_col(self.text, span.start);
        LoadError {
            file: Some(self.path.to_owned()),
            line,
            col,
            rule_id,
            message: message.into(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0)
        + 1;
    (line, col)
}

/// Parses a target string: `ARGS`, `ARGS:q`, `ARGS:/re/`, `&ARGS`, `!ARGS:q`.
/// Returns the target and whether it is an exclusion (`!`).
pub fn parse_target(s: &str) -> Result<(Target, bool), String> {
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
        Some((n, k)) => (n, Some(k)),
        None => (rest, None),
    };
    let variable =
        Variable::parse(name).ok_or_else(|| format!("unknown target variable {name:?}"))?;
    let selector = match sel {
        None => Selector::All,
        Some("") => return Err(format!("empty key selector in {s:?}")),
        Some(k) => {
            if !variable.is_collection() {
                return Err(format!(
                    "{variable} is not a collection; selector {k:?} not allowed"
                ));
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
    Ok((
        Target {
            variable,
            selector,
            count,
        },
        exclusion,
    ))
}

/// Parses `tx.name=value`, `tx.name=+n`, `tx.name=-n`, `!tx.name` and `tx.name` (set to 1);
/// shared by the native and the SecLang loaders. Only the TX collection exists (no persistent
/// collections).
pub(crate) fn parse_setvar(s: &str) -> Result<SetVar, String> {
    let s = s.trim();
    let (del, body) = match s.strip_prefix('!') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let body = body
        .strip_prefix("tx.")
        .or_else(|| body.strip_prefix("TX."))
        .or_else(|| body.strip_prefix("Tx."))
        .ok_or_else(|| {
            format!("setvar {s:?}: only the TX collection is supported (no persistent collections)")
        })?;
    if del {
        return Ok(SetVar {
            name: body.to_owned(),
            op: SetVarOp::Delete,
            value: String::new(),
        });
    }
    let (name, value) = body.split_once('=').unwrap_or((body, "1"));
    let (op, value) = if let Some(v) = value.strip_prefix('+') {
        (SetVarOp::Add, v)
    } else if let Some(v) = value.strip_prefix('-') {
        (SetVarOp::Sub, v)
    } else {
        (SetVarOp::Set, value)
    };
    if name.is_empty() {
        return Err(format!("setvar {s:?}: empty variable name"));
    }
    Ok(SetVar {
        name: name.to_owned(),
        op,
        value: value.to_owned(),
    })
}

/// Parses a `ctl` action: `ruleRemoveById=N`, `ruleRemoveByTag=T`,
/// `ruleRemoveTargetById=N;VAR:key`, `ruleEngine=Off|DetectionOnly`.
pub fn parse_ctl(s: &str) -> Result<Ctl, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("ctl {s:?}: expected name=value"))?;
    let v = v.trim();
    let id = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| format!("ctl {s:?}: bad rule id {x:?}"))
    };
    match k.trim() {
        "ruleRemoveById" => Ok(Ctl::RuleRemoveById(id(v)?)),
        "ruleRemoveByTag" if !v.is_empty() => Ok(Ctl::RuleRemoveByTag(v.to_owned())),
        "ruleRemoveTargetById" => {
            let (n, t) = v.split_once(';').ok_or_else(|| format!("ctl {s:?}: expected id;TARGET"))?;
            let (target, _) = parse_target(t)?;
            Ok(Ctl::RuleRemoveTargetById(id(n)?, Exclusion { variable: target.variable, selector: target.selector }))
        }
        "ruleEngine" => match v.to_ascii_lowercase().as_str() {
            "off" => Ok(Ctl::RuleEngineOff),
            "detectiononly" => Ok(Ctl::RuleEngineDetectOnly),
            _ => Err(format!("ctl {s:?}: ruleEngine must be Off or DetectionOnly")),
        },
        _ => Err(format!("ctl {s:?}: unsupported (ruleRemoveById, ruleRemoveByTag, ruleRemoveTargetById, ruleEngine)")),
    }
}

/// Compiles one raw rule (or chain link, when `link` is true).
fn compile_rule(
    src: &Source<'_>,
    raw: Spanned<RawRule>,
    link: bool,
    head_id: Option<u32>,
) -> Result<Rule, Vec<LoadError>> {
    let span = raw.span();
    let raw = raw.into_inner();
    let mut errs = Vec::new();
    let id = match (&raw.id, link) {
        (Some(id), false) => {
            let v = *id.get_ref();
            if v == 0 {
                errs.push(src.err(id.span(), None, "rule id must be positive"));
            }
            v
        }
        (Some(id), true) => {
            errs.push(src.err(id.span(), head_id, "a chained link has no id of its own"));
            0
        }
        (None, false) => {
            return Err(vec![src.err(span, None, "rule without id")]);
        }
        (None, true) => head_id.unwrap_or(0),
    };
    let rid = Some(id);
    if link {
        let meta = !raw.msg.is_empty()
            || raw.severity.is_some()
            || raw.phase.is_some()
            || raw.paranoia.is_some()
            || raw.action.is_some()
            || raw.score.is_some()
            || !raw.tags.is_empty()
            || raw.tests.is_some();
        if meta {
            errs.push(src.err(span.clone(), rid, "chained link may only have targets, transformations, operator, argument, phrases, negate, capture, setvar and chain"));
        }
    }
    let severity = match &raw.severity {
        None => Severity::Critical,
        Some(s) => Severity::parse(s.get_ref()).unwrap_or_else(|| {
            errs.push(src.err(s.span(), rid, format!("unknown severity {:?}", s.get_ref())));
            Severity::Critical
        }),
    };
    let phase = match &raw.phase {
        None => Phase::RequestBody,
        Some(p) => Phase::parse(p.get_ref()).unwrap_or_else(|| {
            errs.push(src.err(p.span(), rid, format!("unknown phase {:?} (request_headers|request_body|response_headers|response_body)", p.get_ref())));
            Phase::RequestBody
        }),
    };
    let paranoia = match &raw.paranoia {
        None => 1,
        Some(p) => {
            let v = *p.get_ref();
            if !(1..=4).contains(&v) {
                errs.push(src.err(p.span(), rid, format!("paranoia must be 1-4, got {v}")));
            }
            v
        }
    };
    let mut targets = TargetSpec::default();
    for t in raw.targets.get_ref() {
        match parse_target(t.get_ref()) {
            Ok((target, true)) => targets.exclusions.push(Exclusion {
                variable: target.variable,
                selector: target.selector,
            }),
            Ok((target, false)) => targets.targets.push(target),
            Err(e) => errs.push(src.err(t.span(), rid, e)),
        }
    }
    if targets.targets.is_empty() {
        errs.push(src.err(raw.targets.span(), rid, "rule has no targets"));
    }
    let mut transforms = Vec::new();
    for t in &raw.transformations {
        match Transform::parse(t.get_ref()) {
            // `none` clears the chain, as in SecLang.
            Some(Transform::None) => transforms.clear(),
            Some(tr) => transforms.push(tr),
            None => errs.push(src.err(
                t.span(),
                rid,
                format!("unknown transformation {:?}", t.get_ref()),
            )),
        }
    }
    let data_dir = src.path.parent().unwrap_or(Path::new(".")).join("data");
    let arg = raw
        .argument
        .as_ref()
        .map(|a| a.get_ref().as_str())
        .unwrap_or("");
    let arg_span = raw
        .argument
        .as_ref()
        .map(|a| a.span())
        .unwrap_or(raw.operator.span());
    let operator = match Operator::compile(
        raw.operator.get_ref(),
        arg,
        raw.phrases.clone(),
        raw.negate,
        &data_dir,
    ) {
        Ok(o) => Some(o),
        Err(e) => {
            let sp = if e.starts_with("unknown operator") {
                raw.operator.span()
            } else {
                arg_span
            };
            errs.push(src.err(sp, rid, e));
            None
        }
    };
    let disruptive = match &raw.action {
        None => Disruptive::Block,
        Some(a) => Disruptive::parse(a.get_ref()).unwrap_or_else(|| {
            errs.push(src.err(
                a.span(),
                rid,
                format!(
                    "unknown action {:?} (block|deny|log|pass|allow)",
                    a.get_ref()
                ),
            ));
            Disruptive::Block
        }),
    };
    let mut set_vars = Vec::new();
    for sv in &raw.setvar {
        match parse_setvar(sv.get_ref()) {
            Ok(v) => set_vars.push(v),
            Err(e) => errs.push(src.err(sv.span(), rid, e)),
        }
    }
    let mut ctl = Vec::new();
    for c in &raw.ctl {
        match parse_ctl(c.get_ref()) {
            Ok(v) => ctl.push(v),
            Err(e) => errs.push(src.err(c.span(), rid, e)),
        }
    }
    let chain = match raw.chain {
        None => None,
        Some(c) => match compile_rule(src, *c, true, rid) {
            Ok(r) => Some(Box::new(r)),
            Err(mut e) => {
                errs.append(&mut e);
                None
            }
        },
    };
    let mut tests = Vec::new();
    if let Some(t) = raw.tests {
        tests.extend(t.must_match.into_iter().map(|r| RuleTest {
            must_match: true,
            request: r,
        }));
        tests.extend(t.no_match.into_iter().map(|r| RuleTest {
            must_match: false,
            request: r,
        }));
    }
    if !link && raw.msg.is_empty() {
        errs.push(src.err(span.clone(), rid, "rule needs a msg"));
    }
    let Some(operator) = operator else {
        return Err(errs);
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let (line, _) = line_col(src.text, span.start);
    Ok(Rule {
        id,
        msg: raw.msg,
        description: raw.description,
        logdata: String::new(),
        tags: raw.tags,
        references: raw.references,
        severity,
        phase,
        paranoia,
        targets,
        transforms,
        operator,
        actions: Actions {
            disruptive,
            score: raw.score.unwrap_or(severity.default_score()),
            capture: raw.capture,
            set_vars,
            skip: raw.skip,
            skip_after: raw.skip_after.map(SkipTarget::RuleId),
            multi_match: raw.multi_match,
            ctl,
        },
        chain,
        tests,
        chain_id: 0,
        origin: format!("{}:{line}", src.path.display()),
    })
}

/// Parses one ruleset file's text.
pub fn parse_ruleset(
    path: &Path,
    text: &str,
) -> Result<(String, String, Vec<Rule>), Vec<LoadError>> {
    let src = Source { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        vec![src.err(span, None, e.message().to_owned())]
    })?;
    let mut rules = Vec::new();
    let mut errs = Vec::new();
    for r in raw.rule {
        match compile_rule(&src, r, false, None) {
            Ok(rule) => rules.push(rule),
            Err(mut e) => errs.append(&mut e),
        }
    }
    if errs.is_empty() {
        Ok((raw.name, raw.description, rules))
    } else {
        Err(errs)
    }
}

/// Loads and compiles files in order, collecting all errors (including duplicate ids).
pub fn load_files(files: &[PathBuf]) -> Result<Vec<Rule>, Vec<LoadError>> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errs.push(LoadError::io(f, &e));
                continue;
            }
        };
        match parse_ruleset(f, &text) {
            Ok((_, _, rs)) => {
                for r in rs {
                    if let Some(prev) = rules.iter().find(|p| p.id == r.id) {
                        errs.push(LoadError::duplicate(&r, prev));
                    } else {
                        rules.push(r);
                    }
                }
            }
            Err(mut e) => errs.append(&mut e),
        }
    }
    if errs.is_empty() {
        Ok(rules)
    } else {
        Err(errs)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {}", self.id, self.origin, self.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse_ruleset(Path::new("t.toml"), text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    const OK: &str = r#"
name = "t"
[[rule]]
id = 1
msg = "m"
targets = ["ARGS", "!ARGS:safe", "REQUEST_HEADERS:/^x-/"]
transformations = ["urlDecodeUni", "lowercase"]
operator = "rx"
argument = "a+b"
"#;

    #[test]
    fn parses_valid_rule() {
        let (name, _, rules) = parse_ruleset(Path::new("t.toml"), OK).expect("valid ruleset");
        assert_eq!(name, "t");
        assert_eq!(rules[0].targets.targets.len(), 2);
        assert_eq!(rules[0].targets.exclusions.len(), 1);
        assert_eq!(rules[0].actions.score, 5);
        assert_eq!(rules[0].origin, "t.toml:3");
    }

    #[test]
    fn errors_carry_file_line_col_and_rule_id() {
        let cases: &[(&str, &str)] = &[
            (r#"argument = "a+b""#, r#"argument = "(""#),
            (r#"operator = "rx""#, r#"operator = "regex""#),
            (r#""urlDecodeUni""#, r#""urlDecodeUnicode""#),
            (r#""ARGS", "!ARGS:safe""#, r#""ARGZ""#),
            (r#"msg = "m""#, "msg = \"m\"\nbogus = 1"),
        ];
        let want = [
            "t.toml:9:12: rule 1: invalid regex",
            "t.toml:8:12: rule 1: unknown operator",
            "t.toml:7:20: rule 1: unknown transformation",
            "t.toml:6:12: rule 1: unknown target variable",
            "t.toml:6:1: unknown field `bogus`",
        ];
        for ((from, to), want) in cases.iter().zip(want) {
            let e = errs(&OK.replace(from, to));
            assert!(
                e.iter().any(|m| m.starts_with(want)),
                "want {want:?}, got {e:?}"
            );
        }
    }

    #[test]
    fn target_syntax() {
        let (t, ex) = parse_target("!REQUEST_COOKIES:/^_ga/").expect("parses");
        assert!(ex);
        assert!(t.selector.selects("_GA_123"));
        let (t, _) = parse_target("&ARGS").expect("parses");
        assert!(t.count);
        assert!(parse_target("REQUEST_METHOD:x").is_err());
        assert!(parse_target("ARGS:/(/").is_err());
    }

    #[test]
    fn setvar_syntax() {
        let s = parse_setvar("tx.score=+%{tx.critical}").expect("parses");
        assert_eq!(
            (s.name.as_str(), s.op, s.value.as_str()),
            ("score", SetVarOp::Add, "%{tx.critical}")
        );
        assert_eq!(parse_setvar("!tx.x").expect("parses").op, SetVarOp::Delete);
        assert!(parse_setvar("ip.x=1").is_err());
    }
}
