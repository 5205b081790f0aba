//! Rules whose outcome does not depend on the request, settled once per site policy.
//!
//! CRS starts every transaction with dozens of rules that only read and write TX: defaults
//! for unset settings (`&TX:x "@eq 0"` → `setvar:tx.x=...`), the score variables, the
//! paranoia level. And every rule file is fenced by `TX:DETECTION_PARANOIA_LEVEL "@lt N"`
//! rules whose only effect is a `skipAfter`. With the site's settings known, their results are
//! the same for every request, so [`fold`] works them out when the policy is compiled:
//!
//! - *applied* rules: phase 1's request-independent rules ([`is_static`]) run once, in order,
//!   and every transaction starts with the TX they leave ([`Folded::tx`]). A request-dependent
//!   rule before one of them is stepped over only when neither can affect the other (see
//!   [`Barrier`]); the first that cannot be stepped over ends the applied rules;
//! - *fixed* rules later on: a request-independent rule that sets nothing, whose TX inputs no
//!   rule that still runs per request can write, always or never matches; the walk then
//!   takes (or does not take) its skip without evaluating it.
//!
//! The engine uses the fold only with its shortcuts on; the tests that compare every verdict
//! with and without the shortcuts therefore check the fold too.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use super::{Cx, RuleWalk, TxState};
use crate::waf::model::{Ctl, Disruptive, Phase, Rule, Selector, Variable};
use crate::waf::operator::OpKind;
use crate::waf::policy::SitePolicy;
use crate::waf::request::Request;
use crate::waf::Engine;

/// The outcome of a rule for every request of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fixed {
    /// Depends on the request: evaluated.
    Evaluate,
    /// Never matches: passed over (evaluated after all when a `ctl` or an exclusion removed
    /// one of its targets for this request).
    NeverMatches,
    /// Always matches and does nothing but skip: its skip is taken without evaluating it
    /// (evaluated after all when one of its targets was removed for this request).
    Matches,
    /// Applied when the policy was compiled (its TX is in [`Folded::tx`]); passed over.
    Applied,
    /// Applied when the policy was compiled, and it matched and skips: its skip is taken.
    AppliedSkips,
}

impl Fixed {
    /// `Some(take the rule's skip)` when the walk need not evaluate the rule; `None` when it
    /// must. `untouched`: no target of the rule was removed for this request.
    #[inline]
    pub(crate) fn skips(self, untouched: bool) -> Option<bool> {
        match self {
            Fixed::Evaluate => None,
            Fixed::NeverMatches if untouched => Some(false),
            Fixed::Matches if untouched => Some(true),
            Fixed::NeverMatches | Fixed::Matches => None,
            Fixed::Applied => Some(false),
            Fixed::AppliedSkips => Some(true),
        }
    }
}

/// What a site policy settles before any request (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Folded {
    /// TX after the applied rules: every transaction starts with a clone of it.
    pub(crate) tx: HashMap<String, Vec<u8>, foldhash::quality::RandomState>,
    /// Per rule index.
    pub(crate) fixed: Vec<Fixed>,
}

#[cfg(test)]
impl Folded {
    /// How many rules are settled as `kind`.
    pub(crate) fn count(&self, kind: Fixed) -> usize {
        self.fixed.iter().filter(|&&f| f == kind).count()
    }
}

/// The `%{...}` macro names of a text, lowercased.
fn macro_names(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split("%{")
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap_or("").to_ascii_lowercase())
}

/// A macro whose value does not depend on the request: a TX variable or the rule's own text.
fn static_macro(name: &str) -> bool {
    name.starts_with("tx.") || matches!(name, "rule.id" | "rule.msg" | "rule.severity")
}

/// A SecAction: REQUEST_METHOD (present in every request) matched unconditionally, so it
/// matches whatever the request.
fn is_sec_action(l: &Rule) -> bool {
    matches!(l.operator.kind, OpKind::UnconditionalMatch)
        && !l.operator.negate
        && l.targets.targets.iter().all(|t| {
            t.variable == Variable::RequestMethod && !t.count && matches!(t.selector, Selector::All)
        })
}

/// Whether one rule or chain link reads nothing but TX and constants: TX targets only (or a
/// SecAction), an operator that looks at its value alone, macros of TX and the rule only, no
/// capture and no `ctl`.
fn static_link(l: &Rule) -> bool {
    (l.targets.targets.iter().all(|t| t.variable == Variable::Tx) || is_sec_action(l))
        && !matches!(l.operator.kind, OpKind::IpMatch(_))
        && l.operator
            .macro_template()
            .is_none_or(|t| macro_names(t).all(|m| static_macro(&m)))
        && l.actions.set_vars.iter().all(|sv| {
            macro_names(&sv.name)
                .chain(macro_names(&sv.value))
                .all(|m| static_macro(&m))
        })
        && !l.actions.capture
        && l.actions.ctl.is_empty()
}

/// Whether a chain's outcome and effects depend on nothing but TX and constants.
fn is_static(rule: &Rule) -> bool {
    links(rule).all(static_link)
}

/// Whether no link of a chain sets a variable.
fn sets_nothing(rule: &Rule) -> bool {
    links(rule).all(|l| l.actions.set_vars.is_empty())
}

/// A chain head and its links.
fn links(rule: &Rule) -> impl Iterator<Item = &Rule> {
    std::iter::successors(Some(rule), |r| r.chain.as_deref())
}

/// TX names (lowercase): exact ones, name prefixes (a name built with a macro,
/// `tx.rfi_parameter_%{MATCHED_VAR_NAME}`), or every name.
#[derive(Debug, Default)]
struct Names {
    exact: HashSet<String>,
    prefixes: Vec<String>,
    all: bool,
}

impl Names {
    fn add(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        match name.split_once("%{") {
            Some((prefix, _)) => self.prefixes.push(prefix.to_owned()),
            None => {
                self.exact.insert(name);
            }
        }
    }

    fn is_empty(&self) -> bool {
        !self.all && self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether some name could be in both sets.
    fn meets(&self, other: &Names) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        if self.all || other.all {
            return true;
        }
        let covers = |a: &Names, name: &str| {
            a.exact.contains(name) || a.prefixes.iter().any(|p| name.starts_with(p.as_str()))
        };
        self.exact.iter().any(|n| covers(other, n))
            || other.exact.iter().any(|n| covers(self, n))
            || self.prefixes.iter().any(|p| {
                other
                    .prefixes
                    .iter()
                    .any(|q| p.starts_with(q.as_str()) || q.starts_with(p.as_str()))
            })
    }
}

/// The TX names a chain writes (setvar, capture into TX:0-9).
fn tx_writes(rule: &Rule) -> Names {
    let mut w = Names::default();
    for l in links(rule) {
        for sv in &l.actions.set_vars {
            w.add(&sv.name);
        }
        if l.actions.capture {
            w.exact.extend((0..10).map(|d| d.to_string()));
        }
    }
    w
}

/// The TX names a chain reads: TX targets, and `%{tx.x}` macros anywhere.
fn tx_reads(rule: &Rule) -> Names {
    let mut r = Names::default();
    for l in links(rule) {
        for t in l
            .targets
            .targets
            .iter()
            .filter(|t| t.variable == Variable::Tx)
        {
            match &t.selector {
                Selector::Key(k) => {
                    r.exact.insert(k.to_ascii_lowercase());
                }
                Selector::All | Selector::Regex(_) => r.all = true,
            }
        }
        let texts = l
            .operator
            .macro_template()
            .into_iter()
            .chain(
                l.actions
                    .set_vars
                    .iter()
                    .flat_map(|sv| [&*sv.name, &*sv.value]),
            )
            .chain([&*l.logdata]);
        for text in texts {
            for m in macro_names(text) {
                if let Some(k) = m.strip_prefix("tx.") {
                    r.add(k);
                }
            }
        }
    }
    r
}

/// What the request-dependent rules stepped over so far can do: an applied rule after them
/// must neither read nor write what they write, nor write what they read, nor be named by
/// their `ctl`s (it runs before them, at compile time, instead of after them).
#[derive(Debug, Default)]
struct Barrier {
    reads: Names,
    writes: Names,
    ctl_ids: HashSet<u32>,
    ctl_tags: Vec<String>,
}

impl Barrier {
    /// Adds a request-dependent rule; `false` when nothing after it can be applied early
    /// (it may skip or stop evaluation).
    fn add(&mut self, rule: &Rule) -> bool {
        let stops = !matches!(
            rule.actions.disruptive,
            Disruptive::Pass | Disruptive::Block | Disruptive::Log
        );
        if stops || rule.actions.skip > 0 || rule.actions.skip_after.is_some() {
            return false;
        }
        for l in links(rule) {
            for c in &l.actions.ctl {
                match c {
                    Ctl::RuleRemoveById(id) | Ctl::RuleRemoveTargetById(id, _) => {
                        self.ctl_ids.insert(*id);
                    }
                    Ctl::RuleRemoveByTag(t) | Ctl::RuleRemoveTargetByTag(t, _) => {
                        self.ctl_tags.push(t.clone())
                    }
                    Ctl::RequestBodyProcessor(_) | Ctl::RuleEngineDetectOnly => {}
                    Ctl::RuleEngineOff => return false,
                }
            }
        }
        let (r, w) = (tx_reads(rule), tx_writes(rule));
        self.reads.all |= r.all;
        self.reads.exact.extend(r.exact);
        self.reads.prefixes.extend(r.prefixes);
        self.writes.all |= w.all;
        self.writes.exact.extend(w.exact);
        self.writes.prefixes.extend(w.prefixes);
        true
    }

    /// Whether `rule` could see or change what the stepped-over rules do.
    fn conflicts(&self, rule: &Rule) -> bool {
        let (r, w) = (tx_reads(rule), tx_writes(rule));
        self.ctl_ids.contains(&rule.id)
            || self.ctl_tags.iter().any(|t| rule.has_tag(t))
            || r.meets(&self.writes)
            || w.meets(&self.writes)
            || w.meets(&self.reads)
    }
}

/// Settles what `policy` can settle before any request of `engine`; `None` when nothing is.
pub(crate) fn fold(engine: &Engine, policy: &SitePolicy) -> Option<Folded> {
    let n = engine.rules.len();
    // Rules that path-scoped exclusions turn off or narrow for some requests only.
    let mut scoped = vec![false; n];
    for ex in &policy.exclusions {
        for &ri in &ex.rules {
            if let Some(s) = scoped.get_mut(ri) {
                *s = true;
            }
        }
    }
    let foldable: Vec<bool> = engine
        .rules
        .iter()
        .zip(&scoped)
        .map(|(r, &s)| !s && is_static(r))
        .collect();
    let disabled = |ri: usize| policy.disabled.get(ri).copied().unwrap_or(false);
    let headers: [(&str, &[u8]); 0] = [];
    let req = Request {
        method: "GET",
        uri: "/",
        version: "HTTP/1.1",
        headers: &headers,
        client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        body: None,
        content_type: None,
    };
    // Built from the policy without a fold: it starts from the site's seeds.
    let mut st = TxState::new(engine, policy, &req);
    let cx = Cx { engine, policy };
    st.reset_cands(super::prefilter_side(Phase::RequestHeaders));
    let mut fixed = vec![Fixed::Evaluate; n];

    // Phase 1 in order, as `run_phase` walks it: request-independent rules are applied,
    // request-dependent ones stepped over while they allow it.
    let mut walk = RuleWalk::new(&engine.phase_rules[Phase::RequestHeaders as usize - 1]);
    let mut barrier = Barrier::default();
    while let Some(ri) = walk.next_rule() {
        if disabled(ri) {
            continue;
        }
        let rule = &engine.rules[ri];
        let applicable = foldable[ri]
            && !barrier.conflicts(rule)
            && (rule.actions.disruptive == Disruptive::Pass
                || (sets_nothing(rule) && !st.chain_matches(cx, ri, rule)));
        if !applicable {
            if barrier.add(rule) {
                continue;
            }
            break;
        }
        let matched = !st.rule_cannot_match(cx, ri, rule) && st.eval_chain(cx, ri, rule);
        let skips = rule.actions.skip > 0 || engine.skip_after[ri].is_some();
        fixed[ri] = if matched && skips {
            Fixed::AppliedSkips
        } else {
            Fixed::Applied
        };
        if matched {
            walk.matched(engine, ri);
        }
    }
    // Applied rules pass and score nothing: they leave nothing but TX behind.
    if st.inbound != 0 || st.outbound != 0 || !st.matches.is_empty() || st.denied || st.allowed {
        return None;
    }

    // What the rules that still run per request may write.
    let mut writes = Names::default();
    for (ri, rule) in engine.rules.iter().enumerate() {
        if fixed[ri] == Fixed::Evaluate && !disabled(ri) {
            let w = tx_writes(rule);
            writes.exact.extend(w.exact);
            writes.prefixes.extend(w.prefixes);
        }
    }
    for (ri, rule) in engine.rules.iter().enumerate() {
        if fixed[ri] != Fixed::Evaluate || !foldable[ri] || !sets_nothing(rule) {
            continue;
        }
        if tx_reads(rule).meets(&writes) {
            continue;
        }
        // Its inputs hold what the applied rules left for every request: evaluate it on them.
        let side = super::prefilter_side(rule.phase);
        if st.cache.cands_side != side {
            st.reset_cands(side);
        }
        fixed[ri] = if !st.chain_matches(cx, ri, rule) {
            Fixed::NeverMatches
        } else if rule.actions.disruptive == Disruptive::Pass {
            // It does nothing but skip (no setvar, capture or ctl; it records nothing).
            Fixed::Matches
        } else {
            Fixed::Evaluate
        };
    }
    if fixed.iter().all(|&f| f == Fixed::Evaluate) {
        return None;
    }
    Some(Folded { tx: st.tx, fixed })
}
