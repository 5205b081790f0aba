//! The compiled, immutable [`Engine`] and the per-request [`Transaction`] that evaluates it.
//!
//! The engine owns the rules in evaluation order, the deduplicated transformation chains and
//! a literal prefilter (aho-corasick) for each side (request phases, response phases). A
//! transaction owns the decoded request variables, the per-request transformation cache, TX
//! variables, scores and matches.
//! Phase 1 runs before the body is read ([`Transaction::eval_headers`]); phase 2 after
//! ([`Transaction::eval_body`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::AhoCorasick;

use super::load::{self, LoadError};
use super::model::{
    Ctl, Disruptive, Exclusion, Phase, Rule, Selector, SetVarOp, SkipTarget, Target, Variable,
};
use super::policy::{Mode, OverLimit, SitePolicy};
use super::request::{self, Request, Vars};
use super::transform::{self, Transform};
use super::verdict::{truncate_value, Action, RuleMatch, Verdict};

/// Bytes of one value that are transformed and inspected; the rest is ignored.
pub const VALUE_INSPECT_LIMIT: usize = 128 * 1024;

/// Literal prefilter: which regex rules can possibly match a transformed value.
#[derive(Debug)]
struct Prefilter {
    ac: AhoCorasick,
    /// Pattern id -> rule indexes requiring it.
    pattern_rules: Vec<Vec<u32>>,
    /// Per rule: whether it has required literals (others always run).
    filtered: Vec<bool>,
    /// With few patterns: a SIMD searcher over the (lowercase) patterns; `ac` then matches
    /// case-sensitively and values are scanned lowercased (the same result as a
    /// case-insensitive scan).
    packed: Option<aho_corasick::packed::Searcher>,
    /// Length of the longest pattern.
    longest: usize,
}

/// Compiled rulesets: immutable, shared by all requests (`Send + Sync`).
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    by_id: HashMap<u32, usize>,
    /// Lowercased tag -> the rules carrying it (for `ctl:ruleRemove*ByTag` per request).
    by_tag: HashMap<String, Vec<usize>>,
    /// Transformation trie: `(parent, transform)`; chains sharing a prefix share nodes, so a
    /// request computes `urlDecodeUni` of a value once for every chain that starts with it.
    nodes: Vec<(Option<u32>, Transform)>,
    /// Chain id -> its last trie node (`None` for the empty chain).
    chain_nodes: Vec<Option<u32>>,
    /// Per chain: every transformation leaves a plain or stable value (see [`value_class`])
    /// unchanged up to ASCII case, so the literal prefilter can run on the raw value.
    chain_keeps_plain: Vec<bool>,
    /// Per trie node: every transformation from the root to it keeps plain and stable values
    /// as they are up to ASCII case.
    node_keeps_plain: Vec<bool>,
    /// Per chain: every transformation returns a plain or stable value as it is (the operator
    /// can run on the raw bytes of such a value).
    chain_identity_on_plain: Vec<bool>,
    /// Literal prefilters: `[request phases, response phases]` (see [`prefilter_side`]). A
    /// response body is scanned only for the literals of response rules.
    prefilters: [Option<Prefilter>; 2],
    /// Per rule: resolved `skip_after` (index of the rule after which to resume).
    skip_after: Vec<Option<usize>>,
    /// Per rule: its distinct variables when the rule can be ruled out from them as wholes
    /// (see [`TxState::rule_cannot_match`]): every target a decoded variable (request or
    /// response; not TX or MATCHED_*), not counted, no `multiMatch`, transformations that
    /// keep plain values plain.
    rule_item_vars: Vec<Option<Box<[Variable]>>>,
    phase_rules: [Vec<usize>; 4],
    files: Vec<PathBuf>,
}

impl Engine {
    /// Loads every `*.toml` file of `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Engine, Vec<LoadError>> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => return Err(vec![LoadError::io(dir, &e)]),
        };
        files.sort();
        Engine::from_files(&files)
    }

    /// Loads the given ruleset files in order.
    pub fn from_files(files: &[PathBuf]) -> Result<Engine, Vec<LoadError>> {
        let rules = load::load_files(files)?;
        Engine::from_rules(rules, HashMap::new(), files.to_vec()).map_err(|e| vec![e])
    }

    /// Builds an engine from already-compiled rules (the SecLang loader's entry point).
    /// `markers` maps SecMarker names to the index of the rule they follow.
    pub fn from_rules(
        mut rules: Vec<Rule>,
        markers: HashMap<String, usize>,
        files: Vec<PathBuf>,
    ) -> Result<Engine, LoadError> {
        let mut by_id = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            if let Some(prev) = by_id.insert(r.id, i) {
                return Err(LoadError::duplicate(r, &rules[prev]));
            }
        }
        // Deduplicate transformation chains (heads and chained links).
        let mut chains: Vec<Vec<Transform>> = Vec::new();
        fn assign(rule: &mut Rule, chains: &mut Vec<Vec<Transform>>) {
            rule.chain_id = match chains.iter().position(|c| *c == rule.transforms) {
                Some(i) => i,
                None => {
                    chains.push(rule.transforms.clone());
                    chains.len() - 1
                }
            };
            if let Some(next) = rule.chain.as_deref_mut() {
                assign(next, chains);
            }
        }
        for r in rules.iter_mut() {
            assign(r, &mut chains);
        }
        let mut nodes: Vec<(Option<u32>, Transform)> = Vec::new();
        let mut chain_nodes = Vec::with_capacity(chains.len());
        for chain in &chains {
            let mut parent: Option<u32> = None;
            for t in chain {
                let idx = match nodes.iter().position(|n| *n == (parent, *t)) {
                    Some(i) => i,
                    None => {
                        nodes.push((parent, *t));
                        nodes.len() - 1
                    }
                };
                parent = Some(idx as u32);
            }
            chain_nodes.push(parent);
        }
        let mut node_keeps_plain: Vec<bool> = Vec::with_capacity(nodes.len());
        for (parent, t) in &nodes {
            // Parents are always created before their children.
            let up = parent.is_none_or(|p| node_keeps_plain[p as usize]);
            node_keeps_plain.push(up && t.keeps_plain());
        }
        let chain_identity_on_plain = chains
            .iter()
            .map(|c| c.iter().all(|t| t.identity_on_plain()))
            .collect();
        let chain_keeps_plain: Vec<bool> = chains
            .iter()
            .map(|c| c.iter().all(|t| t.keeps_plain()))
            .collect();
        // One prefilter over the required literals of the regex rules of each side (request,
        // response). A rule's literals are looked for in that rule's own transformed value,
        // so the scan result is cached per distinct transformed byte string, not per chain.
        let prefilters = [build_prefilter(&rules, 0)?, build_prefilter(&rules, 1)?];
        let mut skip_after = Vec::with_capacity(rules.len());
        for r in &rules {
            let resolved = match &r.actions.skip_after {
                None => None,
                Some(SkipTarget::RuleId(id)) => match by_id.get(id) {
                    Some(i) => Some(*i),
                    None => {
                        return Err(LoadError::rule(
                            r,
                            format!("skip_after: unknown rule id {id}"),
                        ))
                    }
                },
                Some(SkipTarget::Marker(m)) => match markers.get(m) {
                    Some(i) => Some(*i),
                    None => {
                        return Err(LoadError::rule(
                            r,
                            format!("skip_after: unknown marker {m:?}"),
                        ))
                    }
                },
            };
            skip_after.push(resolved);
        }
        let rule_item_vars = rules
            .iter()
            .map(|r| {
                let t = &r.targets.targets;
                let eligible = !t.is_empty()
                    && !r.actions.multi_match
                    && chain_keeps_plain[r.chain_id]
                    && t.iter().all(|t| !t.count && is_item_variable(t.variable));
                eligible.then(|| {
                    let mut vars: Vec<Variable> = t.iter().map(|t| t.variable).collect();
                    vars.sort();
                    vars.dedup();
                    vars.into_boxed_slice()
                })
            })
            .collect();
        let mut phase_rules: [Vec<usize>; 4] = Default::default();
        let mut by_tag: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            phase_rules[r.phase as usize - 1].push(i);
            for t in &r.tags {
                let list = by_tag.entry(t.to_ascii_lowercase()).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Ok(Engine {
            rules,
            by_id,
            by_tag,
            nodes,
            chain_nodes,
            chain_keeps_plain,
            node_keeps_plain,
            chain_identity_on_plain,
            prefilters,
            skip_after,
            rule_item_vars,
            phase_rules,
            files,
        })
    }

    /// The rules carrying `tag` (ASCII case-insensitive), in evaluation order.
    fn rules_tagged(&self, tag: &str) -> &[usize] {
        self.by_tag
            .get(&tag.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any rule runs in `phase` (the proxy skips response inspection otherwise).
    pub fn has_rules_in(&self, phase: Phase) -> bool {
        !self.phase_rules[phase as usize - 1].is_empty()
    }

    /// All rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Files the engine was loaded from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn rule(&self, id: u32) -> Option<&Rule> {
        self.by_id.get(&id).map(|&i| &self.rules[i])
    }

    pub(crate) fn rule_index(&self, id: u32) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// Starts a transaction borrowing the engine and policy (tests, CLI, one-shot use).
    /// The proxy keeps an owned one instead: `Transaction::new(Arc<Engine>, Arc<SitePolicy>, &req)`.
    pub fn transaction<'e>(
        &'e self,
        policy: &'e SitePolicy,
        req: &Request<'_>,
    ) -> Transaction<&'e Engine, &'e SitePolicy> {
        Transaction::new(self, policy, req)
    }

    /// Both phases at once, using `req.body` (or no body).
    pub fn evaluate(&self, policy: &SitePolicy, req: &Request<'_>) -> Verdict {
        let mut tx = self.transaction(policy, req);
        let v = tx.eval_headers();
        if v.is_block() {
            return v;
        }
        match req.body {
            Some(b) => tx.eval_body(b),
            None => tx.eval_body(&[]),
        }
    }
}

/// UNIQUE_ID: sixteen lowercase hex digits.
pub(crate) fn unique_id(n: u64) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|i| HEX[(n >> (i * 4)) as usize & 15])
        .collect()
}

/// Which prefilter serves a phase: 0 for the request phases, 1 for the response phases.
fn prefilter_side(phase: Phase) -> u8 {
    match phase {
        Phase::RequestHeaders | Phase::RequestBody => 0,
        Phase::ResponseHeaders | Phase::ResponseBody => 1,
    }
}

/// The prefilter over the required literals of the rules (chain heads) on one `side`.
fn build_prefilter(rules: &[Rule], side: u8) -> Result<Option<Prefilter>, LoadError> {
    let mut pats: Vec<Vec<u8>> = Vec::new();
    let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
    let mut filtered = vec![false; rules.len()];
    for (ri, r) in rules.iter().enumerate() {
        if prefilter_side(r.phase) != side {
            continue;
        }
        let Some(lits) = &r.operator.required_literals else {
            continue;
        };
        filtered[ri] = true;
        for lit in lits {
            match pats.iter().position(|p| p == lit) {
                Some(pi) => pattern_rules[pi].push(ri as u32),
                None => {
                    pats.push(lit.clone());
                    pattern_rules.push(vec![ri as u32]);
                }
            }
        }
    }
    if pats.is_empty() {
        return Ok(None);
    }
    Prefilter::new(pats, pattern_rules, filtered).map(Some)
}

/// Up to this many prefilter patterns, a packed (SIMD) searcher finds candidates.
const PACKED_PREFILTER_PATTERNS: usize = 64;

/// Packed hits in one value after which the rest of it is scanned in one pass (a value full
/// of pattern occurrences would otherwise be rescanned in windows).
const PACKED_MAX_HITS: usize = 32;

impl Prefilter {
    /// A prefilter over `pats` (ASCII case-insensitive); `pattern_rules` and `filtered` as in
    /// the struct.
    fn new(
        mut pats: Vec<Vec<u8>>,
        pattern_rules: Vec<Vec<u32>>,
        filtered: Vec<bool>,
    ) -> Result<Prefilter, LoadError> {
        // A case-insensitive automaton gets no SIMD prefilter and walks every byte (about 14 us
        // for an 8 KB page). With few patterns, a packed (Teddy) searcher over the lowercased
        // patterns finds candidate positions in a lowercased copy instead (under 2 us).
        // (Rules' literals are lowercase already; this keeps the function true to its word.)
        for p in &mut pats {
            p.make_ascii_lowercase();
        }
        let packed = if pats.len() <= PACKED_PREFILTER_PATTERNS {
            let mut b = aho_corasick::packed::Config::new().builder();
            b.extend(&pats);
            b.build()
        } else {
            None
        };
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(packed.is_none())
            // The fastest automaton, and the largest: about 24 MB for CRS's request side,
            // 29 MB for its response side (a contiguous NFA takes a twentieth, and 12% more
            // instructions on a 2 KB form, 34% more on an 8 KB page).
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&pats)
            .map_err(|e| LoadError::plain(format!("prefilter: {e}")))?;
        Ok(Prefilter {
            ac,
            packed,
            longest: pats.iter().map(Vec::len).max().unwrap_or(0),
            pattern_rules,
            filtered,
        })
    }

    /// Calls `found` with the id of every pattern that occurs in `value` (at least once each).
    fn scan(&self, value: &[u8], lower: &mut Vec<u8>, mut found: impl FnMut(usize)) {
        let Some(packed) = &self.packed else {
            for m in self.ac.find_overlapping_iter(value) {
                found(m.pattern().as_usize());
            }
            return;
        };
        // The patterns are lowercase: so is the copy scanned.
        let value = if value.iter().any(u8::is_ascii_uppercase) {
            lower.clear();
            lower.extend(value.iter().map(u8::to_ascii_lowercase));
            &lower[..]
        } else {
            value
        };
        // The packed searcher reports the leftmost occurrence from `pos`: every position where
        // some pattern starts is visited in turn, and a window of the longest pattern's length
        // from there holds every pattern starting at it.
        let mut pos = 0;
        let mut hits = 0;
        while let Some(m) = packed.find_in(value, aho_corasick::Span::from(pos..value.len())) {
            hits += 1;
            if hits > PACKED_MAX_HITS {
                for m in self.ac.find_overlapping_iter(&value[m.start()..]) {
                    found(m.pattern().as_usize());
                }
                return;
            }
            let end = value.len().min(m.start() + self.longest);
            for w in self.ac.find_overlapping_iter(&value[m.start()..end]) {
                found(w.pattern().as_usize());
            }
            pos = m.start() + 1;
        }
    }
}

/// Per-request cache of transformed values and prefilter results, in flat vectors indexed
/// by item, row and trie node (no hashing on the hot path).
#[derive(Debug, Default)]
struct Cache {
    /// Per (item, trie node), in rows of one per node: 0 = not computed, 1 = same bytes as
    /// the parent node, n >= 2 = `owned[n - 2]`. A row is added when an item first needs a
    /// transformation computed (plain values rarely do).
    slots: Vec<u32>,
    /// Per item: its row in `slots` plus one (0 = no row yet: nothing computed).
    row: Vec<u32>,
    /// Transformations already applied to a byte string, so that two trie nodes applying
    /// the same transformation to the same bytes (`a,b,t` and `a,t` when `b` changed
    /// nothing) compute it once: linked lists of `(transformation, slot value, next)`
    /// (`next` = entry + 1, 0 = end), headed per raw item and per `owned` entry.
    memo: Vec<(Transform, u32, u32)>,
    memo_raw: Vec<u32>,
    memo_owned: Vec<u32>,
    owned: Vec<Vec<u8>>,
    /// Per `owned` entry: the source it equals up to ASCII case (after `lowercase` /
    /// `uppercase`), whose case-insensitive prefilter result it can reuse.
    owned_case_of: Vec<Option<Src>>,
    /// Prefilter candidates per distinct byte string: per raw item, and per `owned` entry.
    /// 0 = not computed, n >= 1 = `cands[n - 1]` (bitset of rule indexes).
    raw_cands: Vec<u32>,
    owned_cands: Vec<u32>,
    cands: Vec<Vec<u64>>,
    /// The prefilter side (see [`prefilter_side`]) the candidates above come from.
    cands_side: u8,
    /// Scratch buffer: a value lowercased for a case-sensitive prefilter.
    lower: Vec<u8>,
    /// Per item: 0 = not known, else its [`value_class`].
    class: Vec<u8>,
}

impl Cache {
    /// Room for the transformations of a typical request (a few values need some), so the
    /// first ones do not grow every vector from empty.
    fn with_capacity(nodes: usize) -> Cache {
        const VALUES: usize = 16;
        Cache {
            slots: Vec::with_capacity(4 * nodes),
            memo: Vec::with_capacity(2 * VALUES),
            owned: Vec::with_capacity(VALUES),
            owned_case_of: Vec::with_capacity(VALUES),
            memo_owned: Vec::with_capacity(VALUES),
            owned_cands: Vec::with_capacity(VALUES),
            cands: Vec::with_capacity(VALUES),
            ..Cache::default()
        }
    }
}

/// Whether `collect` takes a variable's values from the decoded members (everything but the
/// computed TX and MATCHED_* variables).
fn is_item_variable(v: Variable) -> bool {
    !matches!(
        v,
        Variable::Tx
            | Variable::MatchedVar
            | Variable::MatchedVarName
            | Variable::MatchedVars
            | Variable::MatchedVarsNames
    )
}

#[cfg(test)]
thread_local! {
    /// Set by tests that compare the shortcuts with the evaluation they stand for.
    static SHORTCUTS_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this thread with every evaluation shortcut off: no prefilter, no skipping of
/// plain or stable values, every transformation computed. Results must not change.
#[cfg(test)]
pub(crate) fn without_shortcuts<R>(f: impl FnOnce() -> R) -> R {
    SHORTCUTS_OFF.with(|s| s.set(true));
    let r = f();
    SHORTCUTS_OFF.with(|s| s.set(false));
    r
}

/// Whether the evaluation shortcuts (prefilter, plain and stable values) run: always, but in
/// tests under [`without_shortcuts`].
#[inline(always)]
fn shortcuts() -> bool {
    #[cfg(test)]
    {
        !SHORTCUTS_OFF.with(|s| s.get())
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// A plain value holds only ASCII letters, digits, `_` and non-ASCII bytes other than 0xA0
/// (decoded CJK text and ordinary words): no transformation that [`Transform::keeps_plain`]
/// changes it beyond ASCII case. Most benign argument values are plain.
#[cfg(test)]
fn is_plain(v: &[u8]) -> bool {
    value_class(v) == PLAIN
}

#[cfg(test)]
pub(crate) fn is_plain_for_tests(v: &[u8]) -> bool {
    is_plain(v)
}

#[cfg(test)]
pub(crate) fn is_stable_for_tests(v: &[u8]) -> bool {
    value_class(v) != UNSTABLE
}

/// Whether bit `i` of a bitset is set.
fn has_bit(set: &[u64], i: usize) -> bool {
    set.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// [`super::operator::is_plain_byte`] as a table.
static PLAIN_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = super::operator::is_plain_byte(b as u8);
        b += 1;
    }
    t
};

/// [`value_class`]: a plain value.
const PLAIN: u8 = 1;
/// [`value_class`]: a stable value that is not plain.
const STABLE: u8 = 2;
/// [`value_class`]: neither.
const UNSTABLE: u8 = 3;

/// Classifies a value as plain, stable or neither. A stable value is made of plain bytes and
/// `/`, `.`, `-`, `:`, with no `//`, `/.`, `..` or `--` and no leading `.`: paths, file and
/// host names such as `/news/2024/list-1.html` or `www.example.gov.cn:8443`. Like a plain
/// value, no transformation that [`Transform::keeps_plain`] changes it beyond ASCII case
/// (there is nothing to decode, no comment or whitespace, and no `.`/`..` segment or `//` for
/// the path normalisations), so the prefilter on the raw value decides for it.
/// Operators' [`plain_impossible`](crate::waf::operator::Operator) is about plain values
/// only: a stable value may hold what such an operator matches.
fn value_class(v: &[u8]) -> u8 {
    // Plain values are the common case: one table lookup per byte.
    if v.iter().all(|&b| PLAIN_BYTES[b as usize]) {
        return PLAIN;
    }
    let mut class = PLAIN;
    let mut prev = 0u8;
    for &b in v {
        if !PLAIN_BYTES[b as usize] {
            let breaks = match b {
                b'.' => matches!(prev, 0 | b'/' | b'.'),
                b'/' | b'-' => prev == b,
                b':' => false,
                _ => true,
            };
            if breaks {
                return UNSTABLE;
            }
            class = STABLE;
        }
        prev = b;
    }
    class
}

/// Variables with at least this many members are split by plainness ([`Split`]).
const SPLIT_MIN_MEMBERS: usize = 4;

/// A variable's members that are not plain, and what the plain ones can match: rules that
/// cannot match any plain member visit only the others.
#[derive(Debug, Default)]
struct Split {
    /// Member count the split was computed for (members are only ever appended).
    len: usize,
    non_plain: Vec<u32>,
    /// OR of the prefilter candidates of the plain members (computed on first use).
    plain_cands: Vec<u64>,
    cands_len: usize,
}

/// A request variable's members taken as a whole, for ruling rules out without visiting
/// them (see [`TxState::rule_cannot_match`]).
#[derive(Debug, Default, Clone, Copy)]
struct VarState {
    /// Item count + 1 when last checked (0 = never): nothing changed since if it is the same.
    stamp: usize,
    /// Member count and last member id + 1 when computed: members are only appended, and a
    /// replaced value is a new member with a higher id.
    len: usize,
    last: u32,
    /// Every member is plain.
    all_plain: bool,
    /// Every member is stable and this is the slot (into `cache.cands`) of the OR of their
    /// raw values' prefilter candidates; 0 = unknown.
    cands: u32,
}

/// Where a transformed value's bytes live in the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Raw,
    Owned(usize),
}

/// A value the operator sees: a decoded member (cacheable) or a computed one.
enum Source<'v> {
    Item(u32),
    Owned(Vec<u8>),
    Borrowed(&'v [u8]),
}

/// A target member's display name, rendered only when it matches.
enum Name {
    Member(Variable, u32),
    /// A TX variable: `TX:key`.
    Tx(String),
    Text(String),
}

/// The name a `TX:name` target selects, when short enough to lowercase on the stack.
fn tx_key(selector: &Selector) -> Option<&str> {
    match selector {
        Selector::Key(k) if k.len() <= 64 => Some(k),
        _ => None,
    }
}

/// `VAR:key`, without the formatting machinery (built for every matched value).
fn member_name(var: &str, key: &str) -> String {
    let mut s = String::with_capacity(var.len() + 1 + key.len());
    s.push_str(var);
    s.push(':');
    s.push_str(key);
    s
}

/// A value that matched, kept for MATCHED_VAR(S) and the verdict.
#[derive(Debug, Clone)]
struct Hit {
    name: String,
    value: Vec<u8>,
    caps: Vec<Vec<u8>>,
}

/// Targets removed from rules for this transaction (site exclusions with a target,
/// `ctl:ruleRemoveTargetBy*`), indexed by rule: no hashing on the per-rule check.
#[derive(Debug, Default)]
struct Removals {
    /// Per rule, empty until the first removal: 0, or 1 + the index of its list in `lists`.
    slot: Vec<u32>,
    /// Per rule with removals: indexes into `exclusions`.
    lists: Vec<smallvec::SmallVec<[u32; 2]>>,
    /// Each removal once, however many rules it applies to.
    exclusions: Vec<Exclusion>,
}

impl Removals {
    /// Removes the target `ex` from each of `rules` (indexes below `n`, the engine's count).
    fn add(&mut self, rules: &[usize], ex: &Exclusion, n: usize) {
        if rules.is_empty() {
            return;
        }
        let e = self.exclusions.len() as u32;
        self.exclusions.push(ex.clone());
        for &rule in rules {
            if self.slot.len() < n.max(rule + 1) {
                self.slot.resize(n.max(rule + 1), 0);
            }
            let list = match self.slot[rule] {
                0 => {
                    self.lists.push(smallvec::SmallVec::new());
                    self.slot[rule] = self.lists.len() as u32;
                    self.lists.len() - 1
                }
                s => s as usize - 1,
            };
            self.lists[list].push(e);
        }
    }

    /// Whether no target was removed from `rule`.
    #[inline]
    fn none_for(&self, rule: usize) -> bool {
        self.slot.get(rule).is_none_or(|&s| s == 0)
    }

    /// Whether a removal of `rule` excludes member `key` of `var`.
    fn excludes(&self, rule: usize, var: Variable, key: &str) -> bool {
        match self.slot.get(rule) {
            Some(&s) if s > 0 => self.lists[s as usize - 1]
                .iter()
                .any(|&e| self.exclusions[e as usize].excludes(var, key)),
            _ => false,
        }
    }
}

/// A walk over one phase's rules in order, following `skip` and `skipAfter`.
struct RuleWalk<'a> {
    list: &'a [usize],
    pos: usize,
    /// The `skipAfter` target in force: rules up to it are passed over.
    resume_after: Option<usize>,
}

impl<'a> RuleWalk<'a> {
    fn new(list: &'a [usize]) -> Self {
        RuleWalk {
            list,
            pos: 0,
            resume_after: None,
        }
    }

    /// The next rule to consider (disabled rules included), or `None` at the end.
    #[inline]
    fn next_rule(&mut self) -> Option<usize> {
        while let Some(&ri) = self.list.get(self.pos) {
            self.pos += 1;
            match self.resume_after {
                Some(t) if ri <= t => continue,
                Some(_) => self.resume_after = None,
                None => {}
            }
            return Some(ri);
        }
        None
    }

    /// Rule `ri` (whole chain) matched: its skip applies.
    #[inline]
    fn matched(&mut self, engine: &Engine, ri: usize) {
        self.pos += engine.rules[ri].actions.skip as usize;
        if let Some(t) = engine.skip_after[ri] {
            self.resume_after = Some(t);
        }
    }
}

/// The engine and policy a transaction evaluates against, passed down explicitly so that the
/// transaction state can be borrowed mutably next to them.
#[derive(Clone, Copy)]
struct Cx<'a> {
    engine: &'a Engine,
    policy: &'a SitePolicy,
}

/// Per-request evaluation state (everything but the engine and policy).
struct TxState {
    vars: Vars,
    content_type: Option<String>,
    client_ip: IpAddr,
    cache: Cache,
    /// Per variable (by index), see [`Split`]; empty until first needed.
    splits: Vec<Split>,
    /// Per variable (by index), see [`VarState`]; empty until first needed.
    var_states: Vec<VarState>,
    /// TX variables. A randomly seeded, fast hasher: CRS sets and reads dozens of them per
    /// request (SipHash took a tenth of a clean GET), and the seed keeps keys derived from
    /// request names from being chosen to collide.
    tx: HashMap<String, Vec<u8>, foldhash::quality::RandomState>,
    disabled: Vec<bool>,
    removals: Removals,
    inbound: u32,
    outbound: u32,
    matches: Vec<RuleMatch>,
    denied: bool,
    allowed: bool,
    /// Set by `ctl:ruleEngine=DetectionOnly`.
    detect_only: bool,
    body_over_limit: bool,
    caps: Vec<Vec<u8>>,
}

impl TxState {
    fn new(engine: &Engine, policy: &SitePolicy, req: &Request<'_>) -> TxState {
        let mut vars = request::decode_headers(req);
        vars.set(Variable::UniqueId, unique_id(fastrand::u64(..)));
        // The body processor is known from the headers already (phase 1 rules test it).
        let kind =
            request::BodyKind::from_content_type(req.effective_content_type().as_deref(), b"");
        vars.set(Variable::ReqbodyProcessor, kind.name());
        let mut disabled = policy.disabled.clone();
        disabled.resize(engine.rules.len(), false);
        let mut removals = Removals::default();
        let path = vars.first(Variable::RequestFilename).unwrap_or(b"/");
        let norm = Transform::NormalizePathWin.apply(path);
        for ex in &policy.exclusions {
            let applies = match &ex.path {
                None => true,
                Some(p) => norm.starts_with(p.as_bytes()),
            };
            if !applies {
                continue;
            }
            for &ri in &ex.rules {
                match &ex.target {
                    None => {
                        if let Some(d) = disabled.get_mut(ri) {
                            *d = true;
                        }
                    }
                    Some(t) => removals.add(&[ri], t, engine.rules.len()),
                }
            }
        }
        TxState {
            vars,
            content_type: req.effective_content_type(),
            client_ip: req.client_ip,
            cache: Cache::with_capacity(engine.nodes.len()),
            splits: Vec::new(),
            var_states: Vec::new(),
            // The site's CRS settings and what its request-independent rules make of them
            // (see `fold`); empty for native-only policies: no allocation. TX names are
            // lowercase (CrsSettings::tx_seed, setvar): targets look them up so.
            tx: match policy.folded.as_deref() {
                Some(f) if shortcuts() => f.tx.clone(),
                _ => policy.tx_seed.iter().cloned().collect(),
            },
            disabled,
            removals,
            inbound: 0,
            outbound: 0,
            matches: Vec::new(),
            denied: false,
            allowed: false,
            detect_only: false,
            body_over_limit: false,
            caps: Vec::new(),
        }
    }

    fn eval_headers(&mut self, cx: Cx<'_>) -> Verdict {
        if cx.policy.mode == Mode::Off {
            return Verdict::allow();
        }
        self.run_phase(cx, Phase::RequestHeaders);
        self.verdict(cx)
    }

    fn eval_body(&mut self, cx: Cx<'_>, body: &[u8]) -> Verdict {
        if cx.policy.mode == Mode::Off {
            return Verdict::allow();
        }
        let mut body = body;
        if body.len() > cx.policy.inspect_body_limit {
            self.body_over_limit = true;
            if cx.policy.over_limit == OverLimit::Reject {
                self.denied = true;
                return self.verdict(cx);
            }
            body = &body[..cx.policy.inspect_body_limit];
        }
        request::decode_body(&mut self.vars, self.content_type.as_deref(), body);
        let files_size: u64 = self
            .vars
            .ids(Variable::FilesSizes)
            .iter()
            .filter_map(|&id| {
                std::str::from_utf8(&self.vars.item(id).value)
                    .ok()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        self.vars
            .set(Variable::FilesCombinedSize, request::decimal(files_size));
        self.run_phase(cx, Phase::RequestBody);
        self.verdict(cx)
    }

    /// Phase 3: response status and headers. The verdict holds only this phase's matches and
    /// blocks on the outbound score (or a `deny`).
    fn eval_response_headers(
        &mut self,
        cx: Cx<'_>,
        status: u16,
        headers: &[(&str, &[u8])],
    ) -> Verdict {
        if cx.policy.mode == Mode::Off || self.allowed {
            return Verdict::allow();
        }
        let start = self.matches.len();
        self.vars.add_response_headers(status, headers);
        self.run_phase(cx, Phase::ResponseHeaders);
        self.response_verdict(cx, start)
    }

    /// Phase 4: the response body (decompressed, capped by the caller).
    fn eval_response_body(&mut self, cx: Cx<'_>, body: &[u8]) -> Verdict {
        if cx.policy.mode == Mode::Off || self.allowed {
            return Verdict::allow();
        }
        let start = self.matches.len();
        self.vars.set_response_body(body);
        self.run_phase(cx, Phase::ResponseBody);
        self.response_verdict(cx, start)
    }

    fn response_verdict(&self, cx: Cx<'_>, start: usize) -> Verdict {
        let p = cx.policy;
        let new = &self.matches[start.min(self.matches.len())..];
        let over = self.denied || self.outbound >= p.outbound_threshold;
        let action = self.action(p, over, new.is_empty());
        Verdict {
            action,
            score: self.inbound,
            outbound_score: self.outbound,
            matches: new.to_vec(),
            body_over_limit: false,
        }
    }

    /// Block over the threshold in block mode (log in detect mode or after
    /// `ctl:ruleEngine=DetectionOnly`), unless an `allow` matched; otherwise allow when
    /// there is nothing to report, log when there is.
    fn action(&self, p: &SitePolicy, over: bool, nothing_to_report: bool) -> Action {
        if over && !self.allowed {
            if p.mode == Mode::Block && !self.detect_only {
                Action::Block
            } else {
                Action::Log
            }
        } else if nothing_to_report {
            Action::Allow
        } else {
            Action::Log
        }
    }

    fn verdict(&self, cx: Cx<'_>) -> Verdict {
        let p = cx.policy;
        let over = self.denied
            || self.inbound >= p.inbound_threshold
            || self.outbound >= p.outbound_threshold;
        let action = self.action(
            p,
            over,
            self.allowed || (self.matches.is_empty() && !self.body_over_limit),
        );
        Verdict {
            action,
            score: self.inbound,
            outbound_score: self.outbound,
            matches: self.matches.clone(),
            body_over_limit: self.body_over_limit,
        }
    }

    fn run_phase(&mut self, cx: Cx<'_>, phase: Phase) {
        let engine = cx.engine;
        let side = prefilter_side(phase);
        if self.cache.cands_side != side {
            self.reset_cands(side);
        }
        // Rules whose outcome the policy settled for every request (see [`fold`]).
        let fixed: &[fold::Fixed] = match cx.policy.folded.as_deref() {
            Some(f) if shortcuts() => &f.fixed,
            _ => &[],
        };
        let mut walk = RuleWalk::new(&engine.phase_rules[phase as usize - 1]);
        while let Some(ri) = walk.next_rule() {
            if self.allowed || (self.denied && self.enforcing(cx)) {
                break;
            }
            if self.disabled[ri] {
                continue;
            }
            let rule = &engine.rules[ri];
            let matched = match fixed.get(ri).map(|f| f.skips(self.removals.none_for(ri))) {
                Some(Some(skips)) => skips,
                _ => !self.rule_cannot_match(cx, ri, rule) && self.eval_chain(cx, ri, rule),
            };
            if matched {
                walk.matched(engine, ri);
            }
        }
    }

    /// Whether chain head `ri` and its links all match, without running any action (for
    /// chains whose links set nothing, see [`fold`]).
    fn chain_matches(&mut self, cx: Cx<'_>, ri: usize, rule: &Rule) -> bool {
        if self.rule_cannot_match(cx, ri, rule) {
            return false;
        }
        let Some(mut prev) = self.eval_rule(cx, ri, rule, &[]) else {
            return false;
        };
        let mut link = rule.chain.as_deref();
        while let Some(l) = link {
            match self.eval_rule(cx, ri, l, &prev) {
                Some(h) => prev = h,
                None => return false,
            }
            link = l.chain.as_deref();
        }
        true
    }

    /// Evaluates chain head `ri` and its links; when the whole chain matches, applies its
    /// actions and returns true. (The caller has tried [`Self::rule_cannot_match`].)
    #[inline(always)]
    fn eval_chain(&mut self, cx: Cx<'_>, ri: usize, rule: &Rule) -> bool {
        let Some(hits) = self.eval_rule(cx, ri, rule, &[]) else {
            return false;
        };
        // As in ModSecurity, each link's non-disruptive actions (capture, setvar, ctl) run
        // once per matched value as soon as that link matches, so later links see them;
        // scoring setvars sit on the last link and so apply only when the whole chain
        // matches.
        self.on_match(cx, rule, rule, &hits);
        // Chained links: each sees the previous link's hits as MATCHED_VAR(S).
        let mut all_hits = vec![hits];
        let mut link = rule.chain.as_deref();
        while let Some(l) = link {
            let prev = all_hits.last().map(Vec::as_slice).unwrap_or(&[]);
            match self.eval_rule(cx, ri, l, prev) {
                Some(h) => {
                    self.on_match(cx, rule, l, &h);
                    all_hits.push(h);
                }
                None => return false,
            }
            link = l.chain.as_deref();
        }
        self.apply_actions(cx, rule, &all_hits);
        true
    }

    /// The setvar and ctl actions of one matched rule or chain link (`head` names the rule
    /// for macros such as `%{rule.id}`).
    fn link_actions(&mut self, cx: Cx<'_>, head: &Rule, l: &Rule, hits: &[Hit]) {
        let rule = head;
        {
            for sv in &l.actions.set_vars {
                let value = self.expand(&sv.value, rule, hits.last());
                let key = if sv.name.contains("%{") {
                    self.expand(&sv.name, rule, hits.last())
                } else {
                    sv.name.clone()
                }
                .to_ascii_lowercase();
                match sv.op {
                    SetVarOp::Set => {
                        self.tx.insert(key, value.into_bytes());
                    }
                    SetVarOp::Delete => {
                        self.tx.remove(&key);
                    }
                    SetVarOp::Add | SetVarOp::Sub => {
                        let cur: i64 = self
                            .tx
                            .get(&key)
                            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
                            .unwrap_or(0);
                        let d: i64 = value.trim().parse().unwrap_or(0);
                        let n = if sv.op == SetVarOp::Add {
                            cur.saturating_add(d)
                        } else {
                            cur.saturating_sub(d)
                        };
                        self.tx.insert(key, n.to_string().into_bytes());
                    }
                }
            }
            self.apply_ctl(cx, &l.actions.ctl);
        }
    }

    /// The disruptive action and the match record of a rule whose whole chain matched.
    fn apply_actions(&mut self, _cx: Cx<'_>, rule: &Rule, all_hits: &[Vec<Hit>]) {
        let score = match rule.actions.disruptive {
            Disruptive::Block => rule.actions.score,
            _ => 0,
        };
        match rule.actions.disruptive {
            Disruptive::Block => {
                if rule.phase.is_inbound() {
                    self.inbound = self.inbound.saturating_add(score);
                } else {
                    self.outbound = self.outbound.saturating_add(score);
                }
            }
            Disruptive::Deny => self.denied = true,
            Disruptive::Allow => self.allowed = true,
            Disruptive::Log | Disruptive::Pass => {}
        }
        if rule.actions.disruptive == Disruptive::Pass {
            return;
        }
        // Report the head's first hit (the attack value), with the head's transformations.
        let first = all_hits.first().and_then(|h| h.first());
        self.matches.push(RuleMatch {
            id: rule.id,
            msg: rule.msg.clone(),
            severity: rule.severity,
            tags: rule.tags.clone(),
            phase: rule.phase,
            target: first.map(|h| h.name.clone()).unwrap_or_default(),
            value: first.map(|h| truncate_value(&h.value)).unwrap_or_default(),
            transformations: rule.transforms.iter().map(|t| t.name()).collect(),
            operator: rule.operator.name(),
            score,
            data: if rule.logdata.is_empty() {
                String::new()
            } else {
                let d = self.expand(&rule.logdata, rule, first);
                truncate_value(d.as_bytes())
            },
        });
    }

    /// Applies `ctl:` actions to this transaction only.
    fn apply_ctl(&mut self, cx: Cx<'_>, ctls: &[Ctl]) {
        let engine = cx.engine;
        for c in ctls {
            match c {
                Ctl::RuleRemoveById(id) => {
                    if let Some(i) = engine.rule_index(*id) {
                        self.disabled[i] = true;
                    }
                }
                Ctl::RuleRemoveByTag(tag) => {
                    for &i in engine.rules_tagged(tag) {
                        self.disabled[i] = true;
                    }
                }
                Ctl::RuleRemoveTargetById(id, ex) => {
                    if let Some(i) = engine.rule_index(*id) {
                        self.removals.add(&[i], ex, engine.rules.len());
                    }
                }
                Ctl::RuleEngineOff => self.allowed = true,
                Ctl::RuleEngineDetectOnly => self.detect_only = true,
                Ctl::RuleRemoveTargetByTag(tag, ex) => {
                    self.removals
                        .add(engine.rules_tagged(tag), ex, engine.rules.len());
                }
                Ctl::RequestBodyProcessor(ct) => self.content_type = Some((*ct).to_owned()),
            }
        }
    }

    /// Per matched value of a rule or link: its captures become TX:0-9 (with `capture`),
    /// then its setvar and ctl actions run with that value as MATCHED_VAR.
    fn on_match(&mut self, cx: Cx<'_>, head: &Rule, l: &Rule, hits: &[Hit]) {
        let acts = &l.actions;
        if !acts.capture && acts.set_vars.is_empty() && acts.ctl.is_empty() {
            return;
        }
        for h in hits {
            if acts.capture {
                const KEYS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
                for k in KEYS {
                    self.tx.remove(k);
                }
                for (k, c) in KEYS.iter().zip(&h.caps) {
                    self.tx.insert((*k).to_owned(), c.clone());
                }
            }
            self.link_actions(cx, head, l, std::slice::from_ref(h));
        }
    }

    /// Expands `%{tx.name}`, `%{matched_var}`, `%{matched_var_name}`, `%{rule.id}`.
    fn expand(&self, s: &str, rule: &Rule, hit: Option<&Hit>) -> String {
        if !s.contains("%{") {
            return s.to_owned();
        }
        let mut out = String::with_capacity(s.len() + 16);
        let mut rest = s;
        // Macro names are short: lowercased on the stack (CRS expands a dozen per request).
        let mut buf = [0u8; 64];
        while let Some(start) = rest.find("%{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let raw = &after[..end];
            let owned;
            let name: &str = if raw.len() <= buf.len() {
                let lower = &mut buf[..raw.len()];
                lower.copy_from_slice(raw.as_bytes());
                lower.make_ascii_lowercase();
                // ASCII lowercasing keeps UTF-8 valid.
                std::str::from_utf8(lower).unwrap_or(raw)
            } else {
                owned = raw.to_ascii_lowercase();
                &owned
            };
            if let Some(k) = name.strip_prefix("tx.") {
                if let Some(v) = self.tx.get(k) {
                    out.push_str(&String::from_utf8_lossy(v));
                }
            } else {
                match name {
                    "matched_var" => {
                        if let Some(h) = hit {
                            out.push_str(&String::from_utf8_lossy(&h.value));
                        }
                    }
                    "matched_var_name" => {
                        if let Some(h) = hit {
                            out.push_str(&h.name);
                        }
                    }
                    "rule.id" => out.push_str(itoa::Buffer::new().format(rule.id)),
                    "rule.msg" => out.push_str(&rule.msg),
                    "rule.severity" => out.push_str(&rule.severity.to_string()),
                    _ => out.push_str(&self.variable_text(name)),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Evaluates one rule (or chain link) over its targets; returns the hits when it matches.
    fn eval_rule(&mut self, cx: Cx<'_>, ri: usize, rule: &Rule, prev: &[Hit]) -> Option<Vec<Hit>> {
        let mut hits = Vec::new();
        // Decided once per rule for all its targets.
        let check_excl = !rule.targets.exclusions.is_empty() || !self.removals.none_for(ri);
        // Rule-level part of eval_item's prefilter fast path: plain members the prefilter
        // rules out are skipped without a call.
        let engine = cx.engine;
        let skip_plain = match &engine.prefilters[self.cache.cands_side as usize] {
            Some(pf)
                if shortcuts()
                    && !rule.actions.multi_match
                    && engine.chain_keeps_plain[rule.chain_id]
                    && pf.filtered.get(ri).copied().unwrap_or(false)
                    && std::ptr::eq(rule, &engine.rules[ri]) =>
            {
                Some(pf)
            }
            _ => None,
        };
        // The operator cannot match a plain value, and the transformations leave plain
        // values plain: plain members are skipped outright.
        let never_plain = shortcuts()
            && rule.operator.plain_impossible
            && !rule.actions.multi_match
            && engine.chain_keeps_plain[rule.chain_id];
        self.grow_cache();
        for target in &rule.targets.targets {
            // Fast path for decoded request variables: walk the member ids in place (no
            // per-target allocation), the common case of every rule.
            if !target.count && is_item_variable(target.variable) {
                let var = target.variable;
                let select = var.is_collection() && !matches!(target.selector, Selector::All);
                // Plain members are often most of a variable (decoded Chinese arguments):
                // when none of them can match, only the others are visited, in order.
                let vi = var.index();
                let all = self.vars.ids(var).len();
                if all == 0 {
                    continue;
                }
                // (A few members are cheaper to check one by one.)
                let only_non_plain = all >= SPLIT_MIN_MEMBERS
                    && (never_plain
                        || skip_plain.is_some_and(|pf| {
                            // No plain members: no candidates at all.
                            let s = self.split(Some(pf), engine.rules.len(), var);
                            !has_bit(&s.plain_cands, ri)
                        }));
                let n = if only_non_plain {
                    self.split(None, engine.rules.len(), var).non_plain.len()
                } else {
                    all
                };
                for k in 0..n {
                    let id = if only_non_plain {
                        self.splits[vi].non_plain[k]
                    } else {
                        self.vars.ids(var)[k]
                    };
                    if never_plain && self.item_plain(id) {
                        continue;
                    }
                    if let Some(pf) = skip_plain {
                        if self.item_stable(id) {
                            let slot = self.cands_slot(pf, engine.rules.len(), id, Src::Raw);
                            if !self.is_cand(slot, ri) {
                                continue;
                            }
                        }
                    }
                    if select || check_excl {
                        let key = &self.vars.item(id).key;
                        if (select && !target.selector.selects(key))
                            || (check_excl && self.excluded(ri, rule, var, key))
                        {
                            continue;
                        }
                    }
                    if let Some((value, caps)) = self.eval_item(cx, ri, rule, id) {
                        let key = &self.vars.item(id).key;
                        let name = if key.is_empty() {
                            var.name().to_owned()
                        } else {
                            member_name(var.name(), key)
                        };
                        hits.push(Hit { name, value, caps });
                        if !rule.actions.multi_match && rule.chain.is_none() && hits.len() >= 8 {
                            return Some(hits);
                        }
                    }
                }
                continue;
            }
            let values = self.collect(ri, rule, target, prev);
            for (name, src) in values {
                let matched = match src {
                    Source::Item(id) => self.eval_item(cx, ri, rule, id),
                    Source::Owned(v) => self.eval_raw(rule, &v),
                    Source::Borrowed(v) => self.eval_raw(rule, v),
                };
                if let Some((value, caps)) = matched {
                    let name = match name {
                        Name::Text(t) => t,
                        Name::Tx(k) => member_name("TX", &k),
                        Name::Member(v, id) => {
                            let key = &self.vars.item(id).key;
                            if key.is_empty() {
                                v.name().to_owned()
                            } else {
                                member_name(v.name(), key)
                            }
                        }
                    };
                    hits.push(Hit { name, value, caps });
                    if !rule.actions.multi_match && rule.chain.is_none() && hits.len() >= 8 {
                        return Some(hits);
                    }
                }
            }
        }
        if hits.is_empty() {
            None
        } else {
            Some(hits)
        }
    }

    fn eval_raw(&mut self, rule: &Rule, v: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let v = &v[..v.len().min(VALUE_INSPECT_LIMIT)];
        if rule.actions.multi_match {
            let mut caps = std::mem::take(&mut self.caps);
            let mut cur = v.to_vec();
            let mut out = None;
            for step in 0..=rule.transforms.len() {
                if step > 0 {
                    cur = rule.transforms[step - 1].apply(&cur).into_owned();
                }
                if self.op_eval(rule, &cur, &mut caps) {
                    out = Some((cur.clone(), caps.clone()));
                    break;
                }
            }
            self.caps = caps;
            return out;
        }
        let t = transform::apply_chain(&rule.transforms, v);
        let mut caps = std::mem::take(&mut self.caps);
        let ok = self.op_eval(rule, &t, &mut caps);
        let out = if ok {
            Some((t.into_owned(), caps.clone()))
        } else {
            None
        };
        self.caps = caps;
        out
    }

    /// Makes sure the cache covers every decoded item (items are only ever appended). Called
    /// for every rule target: the check is inlined, the growth is not.
    #[inline(always)]
    fn grow_cache(&mut self) {
        if self.cache.class.len() < self.vars.items.len() {
            self.grow_cache_to();
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_cache_to(&mut self) {
        let items = self.vars.items.len();
        self.cache.row.resize(items, 0);
        self.cache.memo_raw.resize(items, 0);
        self.cache.raw_cands.resize(items, 0);
        self.cache.class.resize(items, 0);
    }

    /// Forgets the prefilter candidates: they were computed with the other side's prefilter.
    #[cold]
    fn reset_cands(&mut self, side: u8) {
        self.cache.raw_cands.fill(0);
        self.cache.owned_cands.fill(0);
        self.cache.cands.clear();
        for s in &mut self.splits {
            s.cands_len = usize::MAX;
        }
        // Their candidate slots pointed into the cleared `cands`: recompute them all.
        for st in &mut self.var_states {
            *st = VarState::default();
        }
        self.cache.cands_side = side;
    }

    /// Whether chain head `ri` has no hit to find, decided from its variables as wholes
    /// (most rules, for an ordinary request): each is empty, or holds only plain members
    /// and the operator cannot match a plain value, or holds only stable members and none
    /// of their raw values holds one of the rule's prefilter literals. These are
    /// [`Self::eval_rule`]'s own per-member shortcuts (the transformations keep such values
    /// as they are up to ASCII case), taken once per variable instead of once per rule and
    /// member; a variable they do not settle sends the rule to `eval_rule`.
    fn rule_cannot_match(&mut self, cx: Cx<'_>, ri: usize, rule: &Rule) -> bool {
        let engine = cx.engine;
        let Some(vars) = &engine.rule_item_vars[ri] else {
            return false;
        };
        if !shortcuts() {
            return false;
        }
        let side = &engine.prefilters[self.cache.cands_side as usize];
        let filtered = side
            .as_ref()
            .is_some_and(|pf| pf.filtered.get(ri).copied().unwrap_or(false));
        let never_plain = rule.operator.plain_impossible;
        if !filtered && !never_plain {
            return false;
        }
        self.grow_cache();
        for &var in vars.iter() {
            let st = self.var_state(side.as_ref(), engine.rules.len(), var);
            let settled = st.len == 0
                || (never_plain && st.all_plain)
                || (filtered && st.cands != 0 && !self.is_cand(st.cands, ri));
            if !settled {
                return false;
            }
        }
        true
    }

    /// The [`VarState`] of `var`, brought up to date with the values decoded so far.
    #[inline]
    fn var_state(&mut self, pf: Option<&Prefilter>, rules: usize, var: Variable) -> VarState {
        let stamp = self.vars.items.len() + 1;
        match self.var_states.get(var.index()) {
            Some(st) if st.stamp == stamp => *st,
            _ => self.update_var_state(pf, rules, var, stamp),
        }
    }

    #[inline(never)]
    fn update_var_state(
        &mut self,
        pf: Option<&Prefilter>,
        rules: usize,
        var: Variable,
        stamp: usize,
    ) -> VarState {
        let ids = self.vars.ids(var);
        let (n, last) = (ids.len(), ids.last().map_or(0, |&id| id + 1));
        let vi = var.index();
        if let Some(st) = self.var_states.get_mut(vi) {
            if st.len == n && st.last == last {
                // Other variables grew: this one is as it was.
                st.stamp = stamp;
                return *st;
            }
        }
        let mut st = VarState {
            stamp,
            len: n,
            last,
            all_plain: true,
            cands: 0,
        };
        let mut all_stable = true;
        for k in 0..n {
            match self.item_class(self.vars.ids(var)[k]) {
                PLAIN => {}
                STABLE => st.all_plain = false,
                _ => {
                    st.all_plain = false;
                    all_stable = false;
                    break;
                }
            }
        }
        if let (true, Some(pf), true) = (all_stable, pf, n > 0) {
            st.cands = self.cands_slot(pf, rules, self.vars.ids(var)[0], Src::Raw);
            if n > 1 {
                let mut union = self.cache.cands[st.cands as usize - 1].clone();
                for k in 1..n {
                    let slot = self.cands_slot(pf, rules, self.vars.ids(var)[k], Src::Raw);
                    for (w, c) in union.iter_mut().zip(&self.cache.cands[slot as usize - 1]) {
                        *w |= c;
                    }
                }
                self.cache.cands.push(union);
                st.cands = self.cache.cands.len() as u32;
            }
        }
        if self.var_states.len() <= vi {
            self.var_states.resize(vi + 1, VarState::default());
        }
        self.var_states[vi] = st;
        st
    }

    /// Whether item `id` is plain (computed once per item).
    fn item_plain(&mut self, id: u32) -> bool {
        self.item_class(id) == PLAIN
    }

    /// Whether item `id` is stable (see [`value_class`]; plain values are stable too).
    fn item_stable(&mut self, id: u32) -> bool {
        self.item_class(id) != UNSTABLE
    }

    #[inline]
    fn item_class(&mut self, id: u32) -> u8 {
        match self.cache.class[id as usize] {
            0 => self.compute_item_class(id),
            c => c,
        }
    }

    #[inline(never)]
    fn compute_item_class(&mut self, id: u32) -> u8 {
        let c = value_class(self.raw(id));
        self.cache.class[id as usize] = c;
        c
    }

    /// The members of `var` split by plainness (and, with `pf`, the plain members'
    /// candidates), brought up to date with the members decoded so far.
    #[inline]
    fn split(&mut self, pf: Option<&Prefilter>, rules: usize, var: Variable) -> &Split {
        let vi = var.index();
        let n = self.vars.ids(var).len();
        let current = self
            .splits
            .get(vi)
            .is_some_and(|s| s.len == n && (pf.is_none() || s.cands_len == n));
        if !current {
            self.update_split(pf, rules, var);
        }
        &self.splits[vi]
    }

    #[cold]
    #[inline(never)]
    fn update_split(&mut self, pf: Option<&Prefilter>, rules: usize, var: Variable) {
        let vi = var.index();
        if self.splits.len() <= vi {
            self.splits.resize_with(vi + 1, Split::default);
        }
        let n = self.vars.ids(var).len();
        let mut split = std::mem::take(&mut self.splits[vi]);
        if split.len != n {
            split.non_plain.clear();
            for k in 0..n {
                let id = self.vars.ids(var)[k];
                if !self.item_plain(id) {
                    split.non_plain.push(id);
                }
            }
            split.len = n;
            split.cands_len = usize::MAX;
        }
        if let Some(pf) = pf {
            if split.cands_len != n {
                split.plain_cands.clear();
                split.plain_cands.resize(rules.div_ceil(64), 0);
                for k in 0..n {
                    let id = self.vars.ids(var)[k];
                    if self.item_plain(id) {
                        let slot = self.cands_slot(pf, rules, id, Src::Raw) as usize - 1;
                        for (w, c) in split.plain_cands.iter_mut().zip(&self.cache.cands[slot]) {
                            *w |= c;
                        }
                    }
                }
                split.cands_len = n;
            }
        }
        self.splits[vi] = split;
    }

    /// Whether rule `ri` is among the prefilter candidates in `slot` (of [`Self::cands_slot`]).
    fn is_cand(&self, slot: u32, ri: usize) -> bool {
        has_bit(&self.cache.cands[slot as usize - 1], ri)
    }

    /// Prefilter candidates (slot into `cache.cands`) of a byte string, computed once.
    fn cands_slot(&mut self, pf: &Prefilter, rules: usize, id: u32, src: Src) -> u32 {
        let known = match src {
            Src::Raw => self.cache.raw_cands[id as usize],
            Src::Owned(n) => self.cache.owned_cands.get(n).copied().unwrap_or(0),
        };
        if known != 0 {
            return known;
        }
        let mut lower = std::mem::take(&mut self.cache.lower);
        let value = match src {
            Src::Raw => self.raw(id),
            Src::Owned(n) => &self.cache.owned[n],
        };
        let mut c = vec![0u64; rules.div_ceil(64)];
        pf.scan(value, &mut lower, |p| {
            for &r in &pf.pattern_rules[p] {
                c[r as usize / 64] |= 1 << (r % 64);
            }
        });
        self.cache.lower = lower;
        self.cache.cands.push(c);
        let slot = self.cache.cands.len() as u32;
        match src {
            Src::Raw => self.cache.raw_cands[id as usize] = slot,
            Src::Owned(n) => {
                if self.cache.owned_cands.len() <= n {
                    self.cache.owned_cands.resize(n + 1, 0);
                }
                self.cache.owned_cands[n] = slot;
            }
        }
        slot
    }

    /// The raw value of an item, capped at the inspection limit.
    fn raw(&self, id: u32) -> &[u8] {
        let v = &self.vars.items[id as usize].value;
        &v[..v.len().min(VALUE_INSPECT_LIMIT)]
    }

    /// The value of item `id` after trie node `node` (which must have been computed).
    fn node_value(&self, cx: Cx<'_>, id: u32, node: Option<u32>) -> &[u8] {
        match self.source(cx, id, node) {
            Src::Raw => self.raw(id),
            Src::Owned(n) => &self.cache.owned[n],
        }
    }

    /// Where the bytes of item `id` after `node` live.
    fn source(&self, cx: Cx<'_>, id: u32, node: Option<u32>) -> Src {
        let width = cx.engine.nodes.len();
        let base = match self.cache.row.get(id as usize) {
            Some(&r) if r > 0 => (r as usize - 1) * width,
            // No row: nothing was computed for this item.
            _ => return Src::Raw,
        };
        let mut cur = node;
        while let Some(k) = cur {
            match self.cache.slots.get(base + k as usize).copied() {
                Some(n) if n >= 2 => return Src::Owned(n as usize - 2),
                Some(1) => cur = cx.engine.nodes[k as usize].0,
                // Not computed: callers always compute first; fall back to the raw value.
                _ => break,
            }
        }
        Src::Raw
    }

    /// Computes (once per request) the value of item `id` after trie node `k`.
    fn compute_node(&mut self, cx: Cx<'_>, id: u32, k: u32) {
        let width = cx.engine.nodes.len();
        let row = match self.cache.row[id as usize] {
            0 => {
                let r = self.cache.slots.len() / width;
                self.cache.slots.resize(self.cache.slots.len() + width, 0);
                self.cache.row[id as usize] = r as u32 + 1;
                r
            }
            r => r as usize - 1,
        };
        let slot = row * width + k as usize;
        if self.cache.slots[slot] != 0 {
            return;
        }
        let (parent, t) = cx.engine.nodes[k as usize];
        if let Some(p) = parent {
            self.compute_node(cx, id, p);
        }
        // A plain (or stable) value stays so along a plain-keeping path, and an identity-on-plain
        // transformation returns it unchanged: no need to scan it.
        if t.identity_on_plain()
            && cx.engine.node_keeps_plain[k as usize]
            && shortcuts()
            && self.item_stable(id)
        {
            self.cache.slots[slot] = 1;
            return;
        }
        let src = self.source(cx, id, parent);
        let head = match src {
            Src::Raw => self.cache.memo_raw[id as usize],
            Src::Owned(n) => self.cache.memo_owned[n],
        };
        let mut e = head;
        while e != 0 {
            let (mt, v, next) = self.cache.memo[e as usize - 1];
            if mt == t {
                self.cache.slots[slot] = v;
                return;
            }
            e = next;
        }
        let bytes = match src {
            Src::Raw => self.raw(id),
            Src::Owned(n) => &self.cache.owned[n],
        };
        let out = match t.apply(bytes) {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(v) => Some(v),
        };
        let v = match out {
            None => 1,
            Some(v) => {
                let case_of = match t {
                    Transform::Lowercase | Transform::Uppercase => Some(self.case_root(src)),
                    _ => None,
                };
                self.cache.owned.push(v);
                self.cache.owned_case_of.push(case_of);
                self.cache.memo_owned.push(0);
                self.cache.owned.len() as u32 + 1
            }
        };
        self.cache.slots[slot] = v;
        self.cache.memo.push((t, v, head));
        let entry = self.cache.memo.len() as u32;
        match src {
            Src::Raw => self.cache.memo_raw[id as usize] = entry,
            Src::Owned(n) => self.cache.memo_owned[n] = entry,
        }
    }

    /// Follows case-only transformations back to the first byte string with the same
    /// case-insensitive content.
    fn case_root(&self, mut src: Src) -> Src {
        while let Src::Owned(n) = src {
            match self.cache.owned_case_of.get(n).copied().flatten() {
                Some(prev) => src = prev,
                None => break,
            }
        }
        src
    }

    fn eval_item(
        &mut self,
        cx: Cx<'_>,
        ri: usize,
        rule: &Rule,
        id: u32,
    ) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let engine = cx.engine;
        let cid = rule.chain_id;
        self.grow_cache();
        let node = engine.chain_nodes[cid];
        // The prefilter knows the literals of rule heads only, not of chained links.
        let is_head = std::ptr::eq(rule, &engine.rules[ri]);
        let filtered = match &engine.prefilters[self.cache.cands_side as usize] {
            Some(pf) if is_head && !rule.actions.multi_match && shortcuts() => {
                pf.filtered.get(ri).copied().unwrap_or(false).then_some(pf)
            }
            _ => None,
        };
        // Fast path: a plain value comes out of a plain-keeping chain unchanged up to ASCII
        // case, so the (case-insensitive) prefilter on the raw value decides without
        // computing the transformations.
        if let Some(pf) = filtered {
            if engine.chain_keeps_plain[cid] && self.item_stable(id) {
                let slot = self.cands_slot(pf, engine.rules.len(), id, Src::Raw);
                if !self.is_cand(slot, ri) {
                    return None;
                }
            }
        }
        // A plain or stable value through an identity-on-plain chain is the raw value: nothing to
        // compute (uncomputed slots read as the raw value).
        let identity = engine.chain_identity_on_plain[cid] && shortcuts() && self.item_stable(id);
        if let (Some(k), false) = (node, identity) {
            self.compute_node(cx, id, k);
        }
        if rule.actions.multi_match {
            return self.eval_multi(cx, rule, id, node);
        }
        if let Some(pf) = filtered {
            // The prefilter is ASCII case-insensitive: a lowercased copy scans the same.
            let src = self.case_root(self.source(cx, id, node));
            let slot = self.cands_slot(pf, engine.rules.len(), id, src);
            if !self.is_cand(slot, ri) {
                return None;
            }
        }
        let mut caps = std::mem::take(&mut self.caps);
        let value = self.node_value(cx, id, node);
        let out = if self.op_eval(rule, value, &mut caps) {
            Some((value.to_vec(), caps.clone()))
        } else {
            None
        };
        self.caps = caps;
        out
    }

    /// `multiMatch`: the operator runs on the raw value and after every transformation
    /// step that changed it (all computed through the trie cache), as ModSecurity does; the
    /// first match wins. A step that left the bytes as they were would give the same answer.
    fn eval_multi(
        &mut self,
        cx: Cx<'_>,
        rule: &Rule,
        id: u32,
        node: Option<u32>,
    ) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut path = vec![None];
        let mut cur = node;
        while let Some(k) = cur {
            path.insert(1, Some(k));
            cur = cx.engine.nodes[k as usize].0;
        }
        let mut caps = std::mem::take(&mut self.caps);
        let mut out = None;
        let mut last = None;
        for n in path {
            let src = self.source(cx, id, n);
            if last == Some(src) {
                continue;
            }
            last = Some(src);
            let value = self.node_value(cx, id, n);
            if self.op_eval(rule, value, &mut caps) {
                out = Some((value.to_vec(), caps.clone()));
                break;
            }
        }
        self.caps = caps;
        out
    }

    /// Runs a rule's operator on a transformed value, expanding a macro argument first.
    fn op_eval(&self, rule: &Rule, value: &[u8], caps: &mut Vec<Vec<u8>>) -> bool {
        match rule.operator.macro_template() {
            Some(t) => {
                caps.clear();
                let arg = self.expand(t, rule, None);
                rule.operator.eval_macro(value, arg.as_bytes())
            }
            None => rule
                .operator
                .eval(value, Some(self.client_ip), caps, rule.actions.capture),
        }
    }

    /// Whether a `deny` ends evaluation: only when it is enforced (block mode, not
    /// detection-only). Otherwise evaluation goes on, as ModSecurity's DetectionOnly does.
    fn enforcing(&self, cx: Cx<'_>) -> bool {
        cx.policy.mode == Mode::Block && !self.detect_only
    }

    /// A request variable for macro expansion: `remote_addr`, `request_line`,
    /// `request_headers.host` (first member with that key), `args._method`.
    fn variable_text(&self, name: &str) -> String {
        let (var, key) = match name.split_once('.') {
            Some((v, k)) => (v, Some(k)),
            None => (name, None),
        };
        let Some(var) = Variable::parse(var) else {
            return String::new();
        };
        self.vars
            .ids(var)
            .iter()
            .map(|&id| self.vars.item(id))
            .find(|it| key.is_none_or(|k| it.key.eq_ignore_ascii_case(k)))
            .map(|it| String::from_utf8_lossy(&it.value).into_owned())
            .unwrap_or_default()
    }

    fn excluded(&self, ri: usize, rule: &Rule, var: Variable, key: &str) -> bool {
        rule.targets.exclusions.iter().any(|e| e.excludes(var, key))
            || self.removals.excludes(ri, var, key)
    }

    /// The values a target selects, with display names (`ARGS:q`). The variables handled
    /// specially here are the ones [`is_item_variable`] excludes from `eval_rule`'s fast path.
    fn collect<'p>(
        &self,
        ri: usize,
        rule: &Rule,
        target: &Target,
        prev: &'p [Hit],
    ) -> Vec<(Name, Source<'p>)> {
        let var = target.variable;
        let mut out: Vec<(Name, Source<'p>)> = Vec::new();
        match var {
            // One named TX variable (most TX targets): a lookup, names being lowercase.
            Variable::Tx if tx_key(&target.selector).is_some() => {
                let mut buf = [0u8; 64];
                let key = tx_key(&target.selector).map_or("", |k| {
                    let lower = &mut buf[..k.len()];
                    lower.copy_from_slice(k.as_bytes());
                    lower.make_ascii_lowercase();
                    std::str::from_utf8(lower).unwrap_or(k)
                });
                if let Some((k, v)) = self.tx.get_key_value(key) {
                    if !self.excluded(ri, rule, var, k) {
                        out.push((Name::Tx(k.clone()), Source::Owned(v.clone())));
                    }
                }
            }
            Variable::Tx => {
                let mut keys: Vec<&String> = self
                    .tx
                    .keys()
                    .filter(|k| target.selector.selects(k))
                    .collect();
                keys.sort();
                for k in keys {
                    if !self.excluded(ri, rule, var, k) {
                        out.push((Name::Tx(k.clone()), Source::Owned(self.tx[k].clone())));
                    }
                }
            }
            Variable::MatchedVar => {
                if let Some(h) = prev.last() {
                    out.push((Name::Text(h.name.clone()), Source::Borrowed(&h.value)));
                }
            }
            Variable::MatchedVarName => {
                if let Some(h) = prev.last() {
                    out.push((
                        Name::Text(h.name.clone()),
                        Source::Owned(h.name.clone().into_bytes()),
                    ));
                }
            }
            Variable::MatchedVars => {
                for h in prev.iter().filter(|h| target.selector.selects(&h.name)) {
                    out.push((Name::Text(h.name.clone()), Source::Borrowed(&h.value)));
                }
            }
            Variable::MatchedVarsNames => {
                for h in prev.iter().filter(|h| target.selector.selects(&h.name)) {
                    out.push((
                        Name::Text(h.name.clone()),
                        Source::Owned(h.name.clone().into_bytes()),
                    ));
                }
            }
            _ => {
                for &id in self.vars.ids(var) {
                    let key = &self.vars.item(id).key;
                    if var.is_collection()
                        && !matches!(target.selector, Selector::All)
                        && !target.selector.selects(key)
                    {
                        continue;
                    }
                    if self.excluded(ri, rule, var, key) {
                        continue;
                    }
                    out.push((Name::Member(var, id), Source::Item(id)));
                }
            }
        }
        if target.count {
            let n = out.len();
            let mut name = String::with_capacity(1 + var.name().len());
            name.push('&');
            name.push_str(var.name());
            return vec![(Name::Text(name), Source::Owned(request::decimal(n as u64)))];
        }
        out
    }
}

/// Per-request evaluation: the decoded request, transformation cache, TX variables, scores
/// and matches, bound to an engine and a site policy.
///
/// `E`/`P` are `Arc<Engine>`/`Arc<SitePolicy>` (the default: `'static` and `Send`, so the
/// proxy can keep it in its per-request context between phase 1 and phase 2) or plain
/// references (see [`Engine::transaction`]).
pub struct Transaction<E = Arc<Engine>, P = Arc<SitePolicy>> {
    engine: E,
    policy: P,
    st: TxState,
}

impl<E: Deref<Target = Engine>, P: Deref<Target = SitePolicy>> Transaction<E, P> {
    /// Starts a transaction: decodes the request line, headers, query and cookies once.
    pub fn new(engine: E, policy: P, req: &Request<'_>) -> Self {
        let st = TxState::new(&engine, &policy, req);
        Transaction { engine, policy, st }
    }

    /// Phase 1: request line, headers, query, cookies. Call before reading the body; a
    /// `Block` verdict means the body need not be read.
    pub fn eval_headers(&mut self) -> Verdict {
        let cx = Cx {
            engine: &self.engine,
            policy: &self.policy,
        };
        self.st.eval_headers(cx)
    }

    /// Phase 2: decodes the body (up to the site's inspection limit; pass `limit + 1` bytes
    /// or more to signal an over-limit body) and evaluates the body rules. The verdict
    /// covers the whole request (phase 1 matches included).
    pub fn eval_body(&mut self, body: &[u8]) -> Verdict {
        let cx = Cx {
            engine: &self.engine,
            policy: &self.policy,
        };
        self.st.eval_body(cx, body)
    }

    /// Phase 3: the response status and headers. Call after the request phases; the verdict
    /// holds this phase's matches only and blocks when the outbound score reaches the site's
    /// threshold.
    pub fn eval_response_headers(&mut self, status: u16, headers: &[(&str, &[u8])]) -> Verdict {
        let cx = Cx {
            engine: &self.engine,
            policy: &self.policy,
        };
        self.st.eval_response_headers(cx, status, headers)
    }

    /// Phase 4: the response body (decompressed and capped at the site's response inspection
    /// limit by the caller).
    pub fn eval_response_body(&mut self, body: &[u8]) -> Verdict {
        let cx = Cx {
            engine: &self.engine,
            policy: &self.policy,
        };
        self.st.eval_response_body(cx, body)
    }

    /// The site policy this transaction runs under.
    pub fn policy(&self) -> &SitePolicy {
        &self.policy
    }

    /// The decoded variables (for explain and tests).
    pub fn vars(&self) -> &Vars {
        &self.st.vars
    }
}

pub(crate) mod fold;
#[cfg(test)]
mod tests;
