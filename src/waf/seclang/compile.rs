//! Compiles SecLang [`Directive`]s into the rule model: SecRule / SecAction chains, markers,
//! default actions, rule removal and target updates, and the engine settings directives.
//!
//! Every directive, action, operator, variable and transformation is either mapped onto the
//! model or rejected with `file:line: directive: message`. A few directives and actions are
//! accepted with no effect because Egret has no counterpart (audit and debug logs, persistent
//! collections); [`NO_EFFECT_DIRECTIVES`] and [`NO_EFFECT_ACTIONS`] list them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::actions::{split_actions, RawAction};
use super::lexer::Directive;
use super::targets;
use crate::waf::load::LoadError;
use crate::waf::model::{
    Actions, Ctl, Disruptive, Exclusion, Phase, Rule, SetVar, Severity, SkipTarget, Target,
    TargetSpec, Variable,
};
use crate::waf::operator::Operator;
use crate::waf::transform::Transform;

/// Directives accepted and recorded without effect: logging and storage settings of
/// ModSecurity that Egret replaces with its own access/audit log and limits.
pub const NO_EFFECT_DIRECTIVES: &[&str] = &[
    "SecAuditEngine",
    "SecAuditLog",
    "SecAuditLog2",
    "SecAuditLogDirMode",
    "SecAuditLogFileMode",
    "SecAuditLogFormat",
    "SecAuditLogParts",
    "SecAuditLogRelevantStatus",
    "SecAuditLogStorageDir",
    "SecAuditLogType",
    "SecDebugLog",
    "SecDebugLogLevel",
    "SecTmpDir",
    "SecDataDir",
    "SecUploadDir",
    "SecUploadFileMode",
    "SecUploadFileLimit",
    "SecUploadKeepFiles",
    "SecTmpSaveUploadedFiles",
    "SecCollectionTimeout",
    "SecStatusEngine",
    "SecServerSignature",
    "SecUnicodeMapFile",
    "SecPcreMatchLimit",
    "SecPcreMatchLimitRecursion",
    "SecCookieFormat",
    "SecArgumentSeparator",
    "SecResponseBodyMimeType",
    "SecResponseBodyLimitAction",
    "SecRequestBodyInMemoryLimit",
    "SecWebAppId",
];

/// Actions accepted without effect: metadata Egret does not report, audit-log switches, and
/// persistent collections (`initcol`, `expirevar`), which Egret does not keep (CRS only uses
/// them when `tx.enable_default_collections` is set).
pub const NO_EFFECT_ACTIONS: &[&str] = &[
    "ver",
    "rev",
    "maturity",
    "accuracy",
    "auditlog",
    "noauditlog",
    "status",
    "initcol",
    "expirevar",
    "sanitiseMatched",
    "sanitiseArg",
];

/// The engine settings the files asked for (Egret's site config decides; these are reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `SecRuleEngine`: `On`, `Off` or `DetectionOnly`.
    pub rule_engine: Option<String>,
    pub request_body_access: Option<bool>,
    pub response_body_access: Option<bool>,
    pub request_body_limit: Option<usize>,
    pub request_body_no_files_limit: Option<usize>,
    pub response_body_limit: Option<usize>,
    pub arguments_limit: Option<usize>,
    /// `SecRequestBodyLimitAction`: `Reject` or `ProcessPartial`.
    pub request_body_limit_action: Option<String>,
    /// `SecComponentSignature` values (e.g. `OWASP_CRS/4.28.0`).
    pub components: Vec<String>,
}

/// A compiled set of SecLang files: rules in order, markers, settings.
#[derive(Debug, Default)]
pub struct Compiled {
    pub rules: Vec<Rule>,
    /// Marker name -> number of rules defined before it.
    pub markers: Vec<(String, usize)>,
    pub settings: Settings,
}

/// Per-phase defaults from `SecDefaultAction`.
#[derive(Debug, Clone)]
struct Defaults {
    disruptive: Disruptive,
    log: bool,
    transforms: Vec<Transform>,
}

impl Default for Defaults {
    /// ModSecurity's built-in default: `phase:2,log,auditlog,pass`.
    fn default() -> Self {
        Defaults {
            disruptive: Disruptive::Pass,
            log: true,
            transforms: Vec::new(),
        }
    }
}

/// A rule or a marker, in definition order (removed rules leave `None`).
enum Item {
    Rule(Option<Box<Rule>>),
    Marker(String),
}

/// Where a directive came from, for errors.
#[derive(Clone, Copy)]
struct At<'a> {
    file: &'a Path,
    line: usize,
    directive: &'a str,
}

impl At<'_> {
    fn err(&self, rule_id: Option<u32>, message: impl Into<String>) -> LoadError {
        LoadError {
            file: Some(self.file.to_owned()),
            line: self.line,
            col: 1,
            rule_id,
            message: format!("{}: {}", self.directive, message.into()),
        }
    }
}

/// A rule as parsed from one SecRule / SecAction, before chains are folded.
struct Pending {
    rule: Rule,
}

/// Incremental compiler over the directives of several files (order matters).
#[derive(Default)]
pub struct Compiler {
    items: Vec<Item>,
    by_id: HashMap<u32, usize>,
    defaults: HashMap<u8, Defaults>,
    /// Links of the chain being built (head first).
    chain: Vec<Pending>,
    settings: Settings,
    errors: Vec<LoadError>,
}

impl Compiler {
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Compiles the directives of one file; `dir` resolves data files (`@pmFromFile`).
    pub fn add_file(&mut self, file: &Path, directives: &[Directive]) {
        let dir = file.parent().unwrap_or(Path::new(".")).to_owned();
        for d in directives {
            let at = At {
                file,
                line: d.line,
                directive: &d.name,
            };
            if let Err(e) = self.directive(at, &dir, d) {
                self.errors.push(e);
            }
        }
        if let Some(p) = self.chain.first() {
            let at = At {
                file,
                line: origin_line(&p.rule.origin),
                directive: "SecRule",
            };
            self.errors.push(at.err(
                Some(p.rule.id),
                "the file ends inside a chain (last link has `chain`)",
            ));
            self.chain.clear();
        }
    }

    /// Finishes: rules in order and markers, or every error found.
    pub fn finish(self) -> Result<Compiled, Vec<LoadError>> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let mut rules = Vec::new();
        let mut markers = Vec::new();
        for it in self.items {
            match it {
                Item::Rule(Some(r)) => rules.push(*r),
                Item::Rule(None) => {}
                Item::Marker(m) => markers.push((m, rules.len())),
            }
        }
        Ok(Compiled {
            rules,
            markers,
            settings: self.settings,
        })
    }

    fn directive(&mut self, at: At<'_>, dir: &Path, d: &Directive) -> Result<(), LoadError> {
        let args = &d.args;
        let arg = |n: usize| -> Result<&str, LoadError> {
            args.get(n)
                .map(String::as_str)
                .ok_or_else(|| at.err(None, format!("expected at least {} argument(s)", n + 1)))
        };
        if !self.chain.is_empty() && d.name != "SecRule" {
            return Err(at.err(
                None,
                "a chain must continue with SecRule (the previous rule has `chain`)",
            ));
        }
        match d.name.as_str() {
            "SecRule" => {
                if args.len() > 3 {
                    return Err(at.err(None, "expected VARIABLES OPERATOR [ACTIONS]"));
                }
                let actions = args.get(2).map(String::as_str).unwrap_or("");
                self.rule(at, dir, Some((arg(0)?, arg(1)?)), actions)
            }
            "SecAction" => self.rule(at, dir, None, arg(0)?),
            "SecMarker" => {
                self.items.push(Item::Marker(arg(0)?.to_owned()));
                Ok(())
            }
            "SecDefaultAction" => self.default_action(at, arg(0)?),
            "SecRuleRemoveById" => {
                if args.is_empty() {
                    return Err(at.err(None, "expected rule ids"));
                }
                for a in args {
                    let ids = parse_id_range(a).map_err(|e| at.err(None, e))?;
                    self.remove(|r| ids.contains(r.id));
                }
                Ok(())
            }
            "SecRuleRemoveByTag" => {
                let tag = arg(0)?.to_owned();
                self.remove(|r| r.has_tag(&tag));
                Ok(())
            }
            "SecRuleRemoveByMsg" => {
                let msg = arg(0)?.to_owned();
                self.remove(|r| r.msg == msg);
                Ok(())
            }
            "SecRuleUpdateTargetById" => {
                let ids = parse_id_range(arg(0)?).map_err(|e| at.err(None, e))?;
                let (list, replaced) = (arg(1)?, args.get(2).map(String::as_str));
                self.update_targets(at, |r| ids.contains(r.id), list, replaced)
            }
            "SecRuleUpdateTargetByTag" => {
                let tag = arg(0)?.to_owned();
                let (list, replaced) = (arg(1)?, args.get(2).map(String::as_str));
                self.update_targets(at, |r| r.has_tag(&tag), list, replaced)
            }
            "SecRuleUpdateTargetByMsg" => {
                let msg = arg(0)?.to_owned();
                let (list, replaced) = (arg(1)?, args.get(2).map(String::as_str));
                self.update_targets(at, |r| r.msg == msg, list, replaced)
            }
            "SecComponentSignature" => {
                self.settings.components.push(arg(0)?.to_owned());
                Ok(())
            }
            "SecRuleEngine" => {
                let v = arg(0)?;
                match v.to_ascii_lowercase().as_str() {
                    "on" | "off" | "detectiononly" => {
                        self.settings.rule_engine = Some(v.to_owned());
                        Ok(())
                    }
                    _ => Err(at.err(
                        None,
                        format!("expected On, Off or DetectionOnly, got {v:?}"),
                    )),
                }
            }
            "SecRequestBodyAccess" => {
                self.settings.request_body_access = Some(on_off(at, arg(0)?)?);
                Ok(())
            }
            "SecResponseBodyAccess" => {
                self.settings.response_body_access = Some(on_off(at, arg(0)?)?);
                Ok(())
            }
            "SecRequestBodyLimit" => {
                self.settings.request_body_limit = Some(number(at, arg(0)?)?);
                Ok(())
            }
            "SecRequestBodyNoFilesLimit" => {
                self.settings.request_body_no_files_limit = Some(number(at, arg(0)?)?);
                Ok(())
            }
            "SecResponseBodyLimit" => {
                self.settings.response_body_limit = Some(number(at, arg(0)?)?);
                Ok(())
            }
            "SecArgumentsLimit" => {
                self.settings.arguments_limit = Some(number(at, arg(0)?)?);
                Ok(())
            }
            "SecRequestBodyLimitAction" => {
                let v = arg(0)?;
                match v {
                    "Reject" | "ProcessPartial" => {
                        self.settings.request_body_limit_action = Some(v.to_owned());
                        Ok(())
                    }
                    _ => Err(at.err(
                        None,
                        format!("expected Reject or ProcessPartial, got {v:?}"),
                    )),
                }
            }
            name if NO_EFFECT_DIRECTIVES.contains(&name) => Ok(()),
            other => Err(LoadError {
                file: Some(at.file.to_owned()),
                line: at.line,
                col: 1,
                rule_id: None,
                message: format!("unsupported directive {other}"),
            }),
        }
    }

    /// Removes already defined rules matching `pred` (their slots stay, so markers keep
    /// their place).
    fn remove(&mut self, pred: impl Fn(&Rule) -> bool) {
        for it in &mut self.items {
            if let Item::Rule(slot) = it {
                if slot.as_deref().is_some_and(&pred) {
                    if let Some(r) = slot.take() {
                        self.by_id.remove(&r.id);
                    }
                }
            }
        }
    }

    fn update_targets(
        &mut self,
        at: At<'_>,
        pred: impl Fn(&Rule) -> bool,
        list: &str,
        replaced: Option<&str>,
    ) -> Result<(), LoadError> {
        let spec = targets::parse_list(list).map_err(|e| at.err(None, e))?;
        let mut any = false;
        for it in &mut self.items {
            let Item::Rule(Some(r)) = it else { continue };
            if !pred(r) {
                continue;
            }
            any = true;
            if let Some(old) = replaced {
                let before = r.targets.targets.len();
                r.targets.targets.retain(|t| t.to_string() != old);
                if r.targets.targets.len() == before {
                    return Err(
                        at.err(Some(r.id), format!("rule has no target {old:?} to replace"))
                    );
                }
            }
            r.targets.targets.extend(spec.targets.iter().cloned());
            r.targets.exclusions.extend(spec.exclusions.iter().cloned());
        }
        if any {
            Ok(())
        } else {
            Err(at.err(None, "no rule defined so far matches"))
        }
    }

    fn default_action(&mut self, at: At<'_>, list: &str) -> Result<(), LoadError> {
        let acts = split_actions(list).map_err(|e| at.err(None, e))?;
        let mut phase = None;
        let mut d = Defaults::default();
        for a in &acts {
            match (a.name.as_str(), a.value.as_deref()) {
                ("phase", Some(v)) => phase = Some(parse_phase(v).map_err(|e| at.err(None, e))?),
                ("log", None) => d.log = true,
                ("nolog", None) => d.log = false,
                ("pass", None) => d.disruptive = Disruptive::Pass,
                ("deny" | "drop", None) => d.disruptive = Disruptive::Deny,
                ("allow", _) => d.disruptive = Disruptive::Allow,
                ("t", Some(v)) => {
                    push_transform(&mut d.transforms, v).map_err(|e| at.err(None, e))?
                }
                (n, _) if NO_EFFECT_ACTIONS.contains(&n) || n == "tag" => {}
                (n, _) => {
                    return Err(at.err(
                        None,
                        format!("action {n:?} is not supported in SecDefaultAction"),
                    ))
                }
            }
        }
        let Some(phase) = phase else {
            return Err(at.err(None, "SecDefaultAction needs a phase"));
        };
        self.defaults.insert(phase, d);
        Ok(())
    }

    /// SecRule (with `vars_op`) or SecAction (without).
    fn rule(
        &mut self,
        at: At<'_>,
        dir: &Path,
        vars_op: Option<(&str, &str)>,
        actions: &str,
    ) -> Result<(), LoadError> {
        let acts = split_actions(actions).map_err(|e| at.err(None, e))?;
        let is_link = !self.chain.is_empty();
        let head = self
            .chain
            .first()
            .map(|p| (p.rule.id, p.rule.phase, p.rule.paranoia));
        let id_of = |acts: &[RawAction]| {
            acts.iter()
                .find(|a| a.name == "id")
                .and_then(|a| a.value.as_deref()?.trim().parse::<u32>().ok())
        };
        let rid = id_of(&acts).or(head.map(|h| h.0));
        let e = |m: String| at.err(rid, m);

        let mut id = None;
        let mut phase_num = None;
        let mut msg = String::new();
        let mut logdata = String::new();
        let mut tags = Vec::new();
        let mut severity = None;
        let mut disruptive: Option<Disruptive> = None;
        let mut block = false;
        let mut log = None;
        let mut transforms = Vec::new();
        let mut reset_transforms = false;
        let mut actions = Actions {
            disruptive: Disruptive::Pass,
            ..Actions::default()
        };
        let mut chain = false;
        for a in &acts {
            let v = a.value.as_deref();
            let need = |what: &str| v.ok_or_else(|| e(format!("action {} needs {what}", a.name)));
            match a.name.as_str() {
                "id" => {
                    let n = need("a number")?
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| e(format!("bad id {v:?}")))?;
                    if n == 0 {
                        return Err(e("id must be positive".into()));
                    }
                    id = Some(n);
                }
                "phase" => phase_num = Some(parse_phase(need("a phase")?).map_err(e)?),
                "msg" => msg = need("a message")?.to_owned(),
                "logdata" => logdata = need("data")?.to_owned(),
                "tag" => tags.push(need("a tag")?.to_owned()),
                "severity" => {
                    let s = need("a severity")?;
                    severity = Some(
                        Severity::parse(s).ok_or_else(|| e(format!("unknown severity {s:?}")))?,
                    );
                }
                "t" => {
                    let t = need("a transformation")?;
                    if t.eq_ignore_ascii_case("none") {
                        transforms.clear();
                        reset_transforms = true;
                    } else {
                        push_transform(&mut transforms, t).map_err(e)?;
                    }
                }
                "chain" => chain = true,
                "capture" => actions.capture = true,
                "multiMatch" => actions.multi_match = true,
                "block" => block = true,
                "pass" => disruptive = Some(Disruptive::Pass),
                "deny" | "drop" => disruptive = Some(Disruptive::Deny),
                "allow" => disruptive = Some(Disruptive::Allow),
                "log" => log = Some(true),
                "nolog" => log = Some(false),
                "setvar" => actions
                    .set_vars
                    .push(parse_setvar(need("an assignment")?).map_err(e)?),
                "skip" => {
                    actions.skip = need("a count")?
                        .trim()
                        .parse()
                        .map_err(|_| e(format!("bad skip count {v:?}")))?
                }
                "skipAfter" => {
                    actions.skip_after =
                        Some(SkipTarget::Marker(need("a marker")?.trim().to_owned()))
                }
                "ctl" => actions
                    .ctl
                    .extend(parse_ctl(need("name=value")?).map_err(e)?),
                n if NO_EFFECT_ACTIONS.contains(&n) => {}
                other => return Err(e(format!("unsupported action {other:?}"))),
            }
        }
        if is_link {
            if id.is_some() || phase_num.is_some() {
                return Err(e("a chained rule cannot have an id or a phase".into()));
            }
            if disruptive.is_some() || block {
                return Err(e("a chained rule cannot have a disruptive action".into()));
            }
        } else if id.is_none() {
            return Err(e("rule has no id".into()));
        }
        let (id, phase_num) = match head {
            Some((hid, hphase, _)) => (hid, hphase as u8),
            None => (id.unwrap_or(0), phase_num.unwrap_or(2)),
        };
        // Phase 5 (logging) has no counterpart: its rules run at the end of phase 4.
        let phase = match phase_num {
            1 => Phase::RequestHeaders,
            2 => Phase::RequestBody,
            3 => Phase::ResponseHeaders,
            _ => Phase::ResponseBody,
        };
        let defaults = self.defaults.get(&phase_num).cloned().unwrap_or_default();
        if !reset_transforms {
            let mut all = defaults.transforms.clone();
            all.extend(transforms);
            transforms = all;
        }
        let log = log.unwrap_or(defaults.log);
        let disruptive = match (disruptive, block) {
            (Some(d), _) => d,
            (None, true) => defaults.disruptive,
            (None, false) => defaults.disruptive,
        };
        // Egret's engine: `Log` records the match (no engine score: CRS keeps its own
        // scores in TX and decides with its blocking-evaluation rules), `Pass` is silent.
        actions.disruptive = match disruptive {
            Disruptive::Deny => Disruptive::Deny,
            Disruptive::Allow => Disruptive::Allow,
            _ if log => Disruptive::Log,
            _ => Disruptive::Pass,
        };
        actions.score = 0;
        let (target_spec, operator) = match vars_op {
            Some((vars, op)) => (
                targets::parse_list(vars).map_err(e)?,
                compile_operator(op, dir).map_err(e)?,
            ),
            None => (
                // SecAction: one always-present value, unconditionally matched.
                TargetSpec {
                    targets: vec![Target {
                        variable: Variable::RequestMethod,
                        selector: crate::waf::model::Selector::All,
                        count: false,
                    }],
                    exclusions: Vec::new(),
                },
                Operator::compile("unconditionalMatch", "", None, false, dir).map_err(e)?,
            ),
        };
        if target_spec.targets.is_empty() {
            return Err(e("rule has no targets".into()));
        }
        let paranoia = match head {
            Some((_, _, p)) => p,
            None => tags
                .iter()
                .find_map(|t| t.strip_prefix("paranoia-level/")?.parse::<u8>().ok())
                .filter(|p| (1..=4).contains(p))
                .unwrap_or(1),
        };
        let rule = Rule {
            id,
            msg,
            description: String::new(),
            logdata,
            tags,
            references: Vec::new(),
            severity: severity.unwrap_or(Severity::Notice),
            phase,
            paranoia,
            targets: target_spec,
            transforms,
            operator,
            actions,
            chain: None,
            tests: Vec::new(),
            chain_id: 0,
            origin: format!("{}:{}", at.file.display(), at.line),
        };
        self.chain.push(Pending { rule });
        if chain {
            return Ok(());
        }
        // Fold the chain: each link becomes the `chain` of the one before it.
        let mut folded: Option<Rule> = None;
        while let Some(p) = self.chain.pop() {
            let mut r = p.rule;
            r.chain = folded.map(Box::new);
            folded = Some(r);
        }
        let Some(rule) = folded else { return Ok(()) };
        if let Some(&prev) = self.by_id.get(&rule.id) {
            let first = match &self.items[prev] {
                Item::Rule(Some(r)) => r.origin.clone(),
                _ => String::new(),
            };
            return Err(at.err(
                Some(rule.id),
                format!("duplicate rule id (first defined at {first})"),
            ));
        }
        self.by_id.insert(rule.id, self.items.len());
        self.items.push(Item::Rule(Some(Box::new(rule))));
        Ok(())
    }
}

fn origin_line(origin: &str) -> usize {
    origin
        .rsplit_once(':')
        .and_then(|(_, l)| l.parse().ok())
        .unwrap_or(0)
}

fn on_off(at: At<'_>, v: &str) -> Result<bool, LoadError> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(at.err(None, format!("expected On or Off, got {v:?}"))),
    }
}

fn number(at: At<'_>, v: &str) -> Result<usize, LoadError> {
    v.trim()
        .parse()
        .map_err(|_| at.err(None, format!("expected a number, got {v:?}")))
}

fn parse_phase(v: &str) -> Result<u8, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" => Ok(1),
        "2" | "request" => Ok(2),
        "3" => Ok(3),
        "4" | "response" => Ok(4),
        "5" | "logging" => Ok(5),
        other => Err(format!("unknown phase {other:?}")),
    }
}

fn push_transform(list: &mut Vec<Transform>, name: &str) -> Result<(), String> {
    match Transform::parse(name.trim()) {
        Some(Transform::None) => list.clear(),
        Some(t) => list.push(t),
        None => return Err(format!("unsupported transformation t:{name}")),
    }
    Ok(())
}

/// Ids: `942100`, `942100-942199`, or several separated by spaces or commas.
#[derive(Debug, Clone)]
pub struct IdSet(Vec<(u32, u32)>);

impl IdSet {
    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }
}

pub fn parse_id_range(s: &str) -> Result<IdSet, String> {
    let mut out = Vec::new();
    for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad rule id {x:?}"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("bad id range {part:?}"));
        }
        out.push((a, b));
    }
    if out.is_empty() {
        return Err("expected rule ids".into());
    }
    Ok(IdSet(out))
}

/// `tx.name=value`, `tx.name=+n`, `tx.name=-n`, `!tx.name`, `tx.name` (set to 1): the same
/// syntax as the native rulesets' `setvar`. Only the TX collection is kept by Egret.
fn parse_setvar(s: &str) -> Result<SetVar, String> {
    crate::waf::load::parse_setvar(s)
}

/// `ctl:` actions. Those with no counterpart in Egret (audit engine, debug log,
/// `forceRequestBodyVariable`) compile to nothing. In ModSecurity `forceRequestBodyVariable`
/// only fills REQUEST_BODY for a body no processor parsed, which Egret always does; it does not
/// parse the body into ARGS (CRS 901340 turns it on for every such request, so decoding it as
/// urlencoded made a binary protobuf or an ndjson body into argument names with CR/LF).
fn parse_ctl(s: &str) -> Result<Vec<Ctl>, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("ctl:{s}: expected name=value"))?;
    let v = v.trim();
    let target = |t: &str| -> Result<Exclusion, String> {
        match targets::parse_one(t)? {
            targets::Parsed::Target(t) if !t.count => Ok(Exclusion {
                variable: t.variable,
                selector: t.selector,
            }),
            _ => Err(format!("ctl:{s}: target must be VAR or VAR:key")),
        }
    };
    Ok(match k.trim() {
        "ruleRemoveById" => {
            let ids = parse_id_range(v)?;
            ids.0
                .iter()
                .flat_map(|&(a, b)| {
                    // Ranges are expanded; keep them small.
                    (a..=b.min(a.saturating_add(9999))).map(Ctl::RuleRemoveById)
                })
                .collect()
        }
        "ruleRemoveByTag" if !v.is_empty() => vec![Ctl::RuleRemoveByTag(v.to_owned())],
        "ruleRemoveTargetById" => {
            let (n, t) = v
                .split_once(';')
                .ok_or_else(|| format!("ctl:{s}: expected id;TARGET"))?;
            let ids = parse_id_range(n)?;
            let ex = target(t)?;
            ids.0
                .iter()
                .flat_map(|&(a, b)| a..=b.min(a.saturating_add(9999)))
                .map(|id| Ctl::RuleRemoveTargetById(id, ex.clone()))
                .collect()
        }
        "ruleRemoveTargetByTag" => {
            let (tag, t) = v
                .split_once(';')
                .ok_or_else(|| format!("ctl:{s}: expected tag;TARGET"))?;
            vec![Ctl::RuleRemoveTargetByTag(
                tag.trim().to_owned(),
                target(t)?,
            )]
        }
        "ruleEngine" => match v.to_ascii_lowercase().as_str() {
            "off" => vec![Ctl::RuleEngineOff],
            "detectiononly" => vec![Ctl::RuleEngineDetectOnly],
            "on" => Vec::new(),
            _ => {
                return Err(format!(
                    "ctl:{s}: ruleEngine must be On, Off or DetectionOnly"
                ))
            }
        },
        "requestBodyProcessor" => match v.to_ascii_uppercase().as_str() {
            "URLENCODED" => vec![Ctl::RequestBodyProcessor(
                "application/x-www-form-urlencoded",
            )],
            "MULTIPART" => vec![Ctl::RequestBodyProcessor("multipart/form-data")],
            "JSON" => vec![Ctl::RequestBodyProcessor("application/json")],
            "XML" => vec![Ctl::RequestBodyProcessor("application/xml")],
            _ => return Err(format!("ctl:{s}: unknown body processor")),
        },
        "forceRequestBodyVariable" | "auditEngine" | "auditLogParts" | "debugLogLevel" => {
            Vec::new()
        }
        other => return Err(format!("ctl:{other} is not supported")),
    })
}

/// `@op arg`, `!@op arg`, or a bare regex (`@rx` implied).
fn compile_operator(s: &str, dir: &Path) -> Result<Operator, String> {
    let (negate, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (name, arg) = match rest.strip_prefix('@') {
        Some(r) => match r.split_once(|c: char| c.is_whitespace()) {
            Some((n, a)) => (n, a),
            None => (r, ""),
        },
        None => ("rx", rest),
    };
    let name = match name {
        "pmf" => "pmFromFile",
        "ipMatchF" => "ipMatchFromFile",
        n => n,
    };
    const MACRO_OPS: &[&str] = &[
        "eq",
        "ge",
        "gt",
        "le",
        "lt",
        "within",
        "streq",
        "endsWith",
        "beginsWith",
        "contains",
        "containsWord",
    ];
    if arg.contains("%{") {
        if MACRO_OPS.contains(&name) {
            return Operator::compile_macro(name, arg, negate);
        }
        return Err(format!("@{name}: macros in the argument are not supported"));
    }
    match name {
        "ipMatchFromFile" => {
            let path = data_path(dir, arg)?;
            let list = crate::waf::operator::read_phrase_file(&path)?;
            Operator::compile("ipMatch", &list.join(","), None, negate, dir)
        }
        "rx" => Operator::compile("rx", &super::pcre::translate(arg), None, negate, dir),
        _ => Operator::compile(name, arg, None, negate, dir),
    }
}

/// A data file named by a rule: relative to the rule file's directory, no `..`.
fn data_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let name = name.trim();
    if name.is_empty() || name.contains("..") {
        return Err(format!("bad data file name {name:?}"));
    }
    let p = Path::new(name);
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    })
}
