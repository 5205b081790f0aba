//! The rule model shared by every front-end (native TOML now, SecLang later).
//!
//! A [`Rule`] is a phase, a [`TargetSpec`] (variables with key selectors, regex selectors,
//! exclusions and counting), a chain of [`Transform`]s, one [`Operator`] (possibly negated)
//! and [`Actions`]. Everything here is already validated and compiled: constructing these
//! types is the only way in, and the engine evaluates them without further checks.

use std::fmt;

use super::operator::Operator;
use super::transform::Transform;

/// Processing phase, numbered like ModSecurity / Coraza (1-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Phase 1: request line and headers, before the body is read.
    RequestHeaders = 1,
    /// Phase 2: request body (ARGS then contains GET and POST arguments).
    RequestBody = 2,
    /// Phase 3: response status and headers.
    ResponseHeaders = 3,
    /// Phase 4: response body (text types, up to the site's response inspection limit).
    ResponseBody = 4,
}

impl Phase {
    /// Parses the native names and the SecLang numbers.
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "request_headers" | "1" => Phase::RequestHeaders,
            "request_body" | "2" => Phase::RequestBody,
            "response_headers" | "3" => Phase::ResponseHeaders,
            "response_body" | "4" => Phase::ResponseBody,
            _ => return None,
        })
    }

    /// Whether scores of this phase count toward the inbound (request) score.
    pub fn is_inbound(self) -> bool {
        matches!(self, Phase::RequestHeaders | Phase::RequestBody)
    }
}

/// Rule severity; the CRS default anomaly score derives from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Severity {
    /// Parses the lowercase name (or the SecLang number 0-7).
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "emergency" | "0" => Severity::Emergency,
            "alert" | "1" => Severity::Alert,
            "critical" | "2" => Severity::Critical,
            "error" | "3" => Severity::Error,
            "warning" | "4" => Severity::Warning,
            "notice" | "5" => Severity::Notice,
            "info" | "6" => Severity::Info,
            "debug" | "7" => Severity::Debug,
            _ => return None,
        })
    }

    /// CRS anomaly score for a blocking rule of this severity.
    pub fn default_score(self) -> u32 {
        match self {
            Severity::Emergency | Severity::Alert | Severity::Critical => 5,
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Notice => 2,
            Severity::Info | Severity::Debug => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Emergency => "emergency",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request (or response) variable, named as in SecLang.
///
/// Collections (`is_collection`) hold key/value pairs and accept selectors; the others are
/// scalars. `*_NAMES` collections yield the keys as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variable {
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    ArgsGetNames,
    ArgsPostNames,
    ArgsCombinedSize,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    RequestFilename,
    RequestBasename,
    FileExt,
    QueryString,
    RequestBody,
    RequestBodyLength,
    RequestUri,
    RequestUriRaw,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    RemoteAddr,
    Files,
    FilesNames,
    FilesContent,
    FilesSizes,
    MultipartPartHeaders,
    MultipartName,
    MultipartFilename,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    MultipartBoundaryMissing,
    MultipartDataBefore,
    MultipartDataAfter,
    MultipartHeaderFolding,
    MultipartInvalidQuoting,
    MultipartInvalidPart,
    MultipartInvalidHeaderFolding,
    MultipartLfLine,
    MultipartMissingSemicolon,
    MultipartUnterminated,
    MultipartDuplicateDisposition,
    ReqbodyError,
    ReqbodyProcessor,
    UrlencodedError,
    Xml,
    Tx,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    ResponseStatus,
    ResponseHeaders,
    ResponseBody,
    UniqueId,
    FilesCombinedSize,
    // SecLang views (ModSecurity/Coraza semantics), printed under the plain names and never
    // parsed from a name: the SecLang loader maps `REQUEST_BODY`, `ARGS`, `ARGS_NAMES`,
    // `ARGS_POST` and `ARGS_POST_NAMES` onto them. An XML body is only in `XML:/*` there
    // (ModSecurity neither puts it into ARGS nor keeps it in REQUEST_BODY); native rules see
    // XML text and attribute values as arguments and the raw body in REQUEST_BODY.
    /// SecLang `REQUEST_BODY`: the raw body unless the XML processor parsed it.
    SecLangRequestBody,
    /// SecLang `ARGS`: arguments other than XML body values.
    SecLangArgs,
    /// SecLang `ARGS_NAMES`.
    SecLangArgsNames,
    /// SecLang `ARGS_POST`.
    SecLangArgsPost,
    /// SecLang `ARGS_POST_NAMES`.
    SecLangArgsPostNames,
}

/// Name table: the single source for parsing and printing variable names.
const VARIABLE_NAMES: &[(Variable, &str)] = &[
    (Variable::Args, "ARGS"),
    (Variable::ArgsGet, "ARGS_GET"),
    (Variable::ArgsPost, "ARGS_POST"),
    (Variable::ArgsNames, "ARGS_NAMES"),
    (Variable::ArgsGetNames, "ARGS_GET_NAMES"),
    (Variable::ArgsPostNames, "ARGS_POST_NAMES"),
    (Variable::ArgsCombinedSize, "ARGS_COMBINED_SIZE"),
    (Variable::RequestHeaders, "REQUEST_HEADERS"),
    (Variable::RequestHeadersNames, "REQUEST_HEADERS_NAMES"),
    (Variable::RequestCookies, "REQUEST_COOKIES"),
    (Variable::RequestCookiesNames, "REQUEST_COOKIES_NAMES"),
    (Variable::RequestFilename, "REQUEST_FILENAME"),
    (Variable::RequestBasename, "REQUEST_BASENAME"),
    (Variable::FileExt, "FILE_EXT"),
    (Variable::QueryString, "QUERY_STRING"),
    (Variable::RequestBody, "REQUEST_BODY"),
    (Variable::RequestBodyLength, "REQUEST_BODY_LENGTH"),
    (Variable::RequestUri, "REQUEST_URI"),
    (Variable::RequestUriRaw, "REQUEST_URI_RAW"),
    (Variable::RequestLine, "REQUEST_LINE"),
    (Variable::RequestMethod, "REQUEST_METHOD"),
    (Variable::RequestProtocol, "REQUEST_PROTOCOL"),
    (Variable::RemoteAddr, "REMOTE_ADDR"),
    (Variable::Files, "FILES"),
    (Variable::FilesNames, "FILES_NAMES"),
    (Variable::FilesContent, "FILES_CONTENT"),
    (Variable::FilesSizes, "FILES_SIZES"),
    (Variable::MultipartPartHeaders, "MULTIPART_PART_HEADERS"),
    (Variable::MultipartName, "MULTIPART_NAME"),
    (Variable::MultipartFilename, "MULTIPART_FILENAME"),
    (Variable::MultipartStrictError, "MULTIPART_STRICT_ERROR"),
    (
        Variable::MultipartUnmatchedBoundary,
        "MULTIPART_UNMATCHED_BOUNDARY",
    ),
    (
        Variable::MultipartBoundaryMissing,
        "MULTIPART_BOUNDARY_MISSING",
    ),
    (Variable::MultipartDataBefore, "MULTIPART_DATA_BEFORE"),
    (Variable::MultipartDataAfter, "MULTIPART_DATA_AFTER"),
    (Variable::MultipartHeaderFolding, "MULTIPART_HEADER_FOLDING"),
    (
        Variable::MultipartInvalidQuoting,
        "MULTIPART_INVALID_QUOTING",
    ),
    (Variable::MultipartInvalidPart, "MULTIPART_INVALID_PART"),
    (
        Variable::MultipartInvalidHeaderFolding,
        "MULTIPART_INVALID_HEADER_FOLDING",
    ),
    (Variable::MultipartLfLine, "MULTIPART_LF_LINE"),
    (
        Variable::MultipartMissingSemicolon,
        "MULTIPART_MISSING_SEMICOLON",
    ),
    (Variable::MultipartUnterminated, "MULTIPART_UNTERMINATED"),
    (
        Variable::MultipartDuplicateDisposition,
        "MULTIPART_DUPLICATE_DISPOSITION",
    ),
    (Variable::ReqbodyError, "REQBODY_ERROR"),
    (Variable::ReqbodyProcessor, "REQBODY_PROCESSOR"),
    (Variable::UrlencodedError, "URLENCODED_ERROR"),
    (Variable::Xml, "XML"),
    (Variable::Tx, "TX"),
    (Variable::MatchedVar, "MATCHED_VAR"),
    (Variable::MatchedVarName, "MATCHED_VAR_NAME"),
    (Variable::MatchedVars, "MATCHED_VARS"),
    (Variable::MatchedVarsNames, "MATCHED_VARS_NAMES"),
    (Variable::ResponseStatus, "RESPONSE_STATUS"),
    (Variable::ResponseHeaders, "RESPONSE_HEADERS"),
    (Variable::ResponseBody, "RESPONSE_BODY"),
    (Variable::UniqueId, "UNIQUE_ID"),
    (Variable::FilesCombinedSize, "FILES_COMBINED_SIZE"),
    // After the native variables of the same names, so that parsing finds those.
    (Variable::SecLangRequestBody, "REQUEST_BODY"),
    (Variable::SecLangArgs, "ARGS"),
    (Variable::SecLangArgsNames, "ARGS_NAMES"),
    (Variable::SecLangArgsPost, "ARGS_POST"),
    (Variable::SecLangArgsPostNames, "ARGS_POST_NAMES"),
];

/// Number of variables (size of per-variable tables).
pub const VARIABLE_COUNT: usize = VARIABLE_NAMES.len();

impl Variable {
    /// Parses a SecLang variable name (case-insensitive).
    pub fn parse(s: &str) -> Option<Variable> {
        VARIABLE_NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(v, _)| *v)
    }

    pub fn name(self) -> &'static str {
        VARIABLE_NAMES
            .iter()
            .find(|(v, _)| *v == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// The SecLang view of a variable ([`Variable::SecLangArgs`], ...), or itself.
    pub fn seclang(self) -> Variable {
        match self {
            Variable::RequestBody => Variable::SecLangRequestBody,
            Variable::Args => Variable::SecLangArgs,
            Variable::ArgsNames => Variable::SecLangArgsNames,
            Variable::ArgsPost => Variable::SecLangArgsPost,
            Variable::ArgsPostNames => Variable::SecLangArgsPostNames,
            v => v,
        }
    }

    /// The native variable behind a SecLang view, or itself.
    pub fn native(self) -> Variable {
        match self {
            Variable::SecLangRequestBody => Variable::RequestBody,
            Variable::SecLangArgs => Variable::Args,
            Variable::SecLangArgsNames => Variable::ArgsNames,
            Variable::SecLangArgsPost => Variable::ArgsPost,
            Variable::SecLangArgsPostNames => Variable::ArgsPostNames,
            v => v,
        }
    }

    /// Dense index for per-variable tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the variable is a key/value collection that accepts `:key` selectors.
    pub fn is_collection(self) -> bool {
        use Variable::*;
        matches!(
            self,
            Args | ArgsGet
                | SecLangArgs
                | SecLangArgsNames
                | SecLangArgsPost
                | SecLangArgsPostNames
                | ArgsPost
                | ArgsNames
                | ArgsGetNames
                | ArgsPostNames
                | RequestHeaders
                | RequestHeadersNames
                | RequestCookies
                | RequestCookiesNames
                | Files
                | FilesNames
                | FilesContent
                | FilesSizes
                | MultipartPartHeaders
                | Xml
                | Tx
                | MatchedVars
                | MatchedVarsNames
                | ResponseHeaders
        )
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which members of a collection a target selects.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Every member (or the scalar itself).
    All,
    /// Members whose key equals this (ASCII case-insensitive).
    Key(String),
    /// Members whose key matches this regex (`ARGS:/^id_/`).
    Regex(regex::Regex),
}

impl Selector {
    /// Whether a member with this key is selected.
    pub fn selects(&self, key: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k) => k.eq_ignore_ascii_case(key),
            Selector::Regex(r) => r.is_match(key),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => Ok(()),
            Selector::Key(k) => write!(f, ":{k}"),
            Selector::Regex(r) => write!(f, ":/{}/", r.as_str()),
        }
    }
}

/// One inspected variable: `ARGS`, `ARGS:q`, `ARGS:/^id/`, `&ARGS` (count).
#[derive(Debug, Clone)]
pub struct Target {
    pub variable: Variable,
    pub selector: Selector,
    /// `&VAR`: the operator sees the number of selected members instead of their values.
    pub count: bool,
}

/// An excluded member: `!ARGS:password` or `!REQUEST_HEADERS:/^x-/`.
#[derive(Debug, Clone)]
pub struct Exclusion {
    pub variable: Variable,
    pub selector: Selector,
}

impl Exclusion {
    /// Whether this exclusion removes the member `key` of `variable`.
    ///
    /// An exclusion on `ARGS` also applies to `ARGS_GET` / `ARGS_POST` and their names, so
    /// that `!ARGS:content` reads as staff expect; SecLang views count as their native
    /// variables (a native exclusion of `ARGS:q` covers a CRS rule's `ARGS`).
    pub fn excludes(&self, variable: Variable, key: &str) -> bool {
        let (excluded, variable) = (self.variable.native(), variable.native());
        let same = excluded == variable
            || (excluded == Variable::Args
                && matches!(variable, Variable::ArgsGet | Variable::ArgsPost))
            || (excluded == Variable::ArgsNames
                && matches!(variable, Variable::ArgsGetNames | Variable::ArgsPostNames));
        same && self.selector.selects(key)
    }
}

/// All targets of a rule plus its exclusions.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    pub targets: Vec<Target>,
    pub exclusions: Vec<Exclusion>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count {
            f.write_str("&")?;
        }
        write!(f, "{}{}", self.variable, self.selector)
    }
}

/// What a matching rule does to the transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruptive {
    /// Add the anomaly score; the threshold decides (CRS `block`).
    Block,
    /// Block immediately, whatever the score (SecLang `deny`).
    Deny,
    /// Record the match, add no score.
    Log,
    /// Silent: neither score nor log (used for flow-control rules).
    Pass,
    /// Stop evaluating and let the request through.
    Allow,
}

impl Disruptive {
    pub fn parse(s: &str) -> Option<Disruptive> {
        Some(match s {
            "block" => Disruptive::Block,
            "deny" => Disruptive::Deny,
            "log" => Disruptive::Log,
            "pass" => Disruptive::Pass,
            "allow" => Disruptive::Allow,
            _ => return None,
        })
    }
}

/// Where `skip_after` resumes, resolved at engine build to a rule index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipTarget {
    /// Resume after the rule with this id.
    RuleId(u32),
    /// Resume after a SecMarker with this name.
    Marker(String),
}

/// Operation of a `setvar` action (`tx.a=1`, `tx.a=+5`, `tx.a=-1`, `!tx.a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetVarOp {
    Set,
    Add,
    Sub,
    Delete,
}

/// `setvar` on the TX collection; the value may contain `%{...}` macros.
#[derive(Debug, Clone)]
pub struct SetVar {
    pub name: String,
    pub op: SetVarOp,
    pub value: String,
}

/// Everything a rule does when it matches.
#[derive(Debug, Clone)]
pub struct Actions {
    pub disruptive: Disruptive,
    /// Anomaly score added when the rule (whole chain) matches with `Block`.
    pub score: u32,
    pub capture: bool,
    pub set_vars: Vec<SetVar>,
    /// Skip the next N rules (SecLang `skip`).
    pub skip: u32,
    pub skip_after: Option<SkipTarget>,
    /// Evaluate the operator after every transformation step (SecLang `multiMatch`).
    pub multi_match: bool,
    /// Per-transaction configuration changes (SecLang `ctl:`), applied when the rule matches.
    pub ctl: Vec<Ctl>,
}

/// A per-transaction configuration change (SecLang `ctl:`).
#[derive(Debug, Clone)]
pub enum Ctl {
    /// `ctl:ruleRemoveById=N`: later rules with this id do not run for this request.
    RuleRemoveById(u32),
    /// `ctl:ruleRemoveByTag=T`.
    RuleRemoveByTag(String),
    /// `ctl:ruleRemoveTargetById=N;ARGS:x`.
    RuleRemoveTargetById(u32, Exclusion),
    /// `ctl:ruleRemoveTargetByTag=T;ARGS:x`.
    RuleRemoveTargetByTag(String, Exclusion),
    /// `ctl:requestBodyProcessor=...`: decode the body as this content type.
    RequestBodyProcessor(&'static str),
    /// `ctl:ruleEngine=Off`: stop evaluating, allow the request.
    RuleEngineOff,
    /// `ctl:ruleEngine=DetectionOnly`: never block this request.
    RuleEngineDetectOnly,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            disruptive: Disruptive::Block,
            score: 0,
            capture: false,
            set_vars: Vec::new(),
            skip: 0,
            skip_after: None,
            multi_match: false,
            ctl: Vec::new(),
        }
    }
}

/// An inline rule test: one raw HTTP request and whether the rule must fire on it.
#[derive(Debug, Clone)]
pub struct RuleTest {
    pub must_match: bool,
    pub request: String,
}

/// A compiled rule. A chained rule's links live in `chain`; all must match.
#[derive(Debug)]
pub struct Rule {
    pub id: u32,
    pub msg: String,
    pub description: String,
    /// SecLang `logdata`: text with `%{...}` macros, expanded into each match's `data`.
    pub logdata: String,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub severity: Severity,
    pub phase: Phase,
    pub paranoia: u8,
    pub targets: TargetSpec,
    pub transforms: Vec<Transform>,
    pub operator: Operator,
    pub actions: Actions,
    pub chain: Option<Box<Rule>>,
    pub tests: Vec<RuleTest>,
    /// Id of the deduplicated transformation chain, assigned when the engine is built.
    pub chain_id: usize,
    /// Where the rule was defined (`file:line`), for reports.
    pub origin: String,
}

impl Rule {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}
