//! Verdicts: baseline features against current features under a policy.
//!
//! Owns [`compare`], which lists every [`Indicator`] with its evidence, scores them and says
//! whether the page is tampered. Strong indicators (new external domain, hidden links, spam
//! keywords, injected redirect, changed title, "hacked by" / replaced page) score at or above
//! the default threshold on their own; meta changes and moderate content changes only add up.
//! Everything the baseline already had is not reported, so a page's own legitimate oddities do
//! not fire.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::features::Features;
use super::html::url_host;
use super::keywords::Category;
use super::policy::CheckPolicy;

/// Named kinds of tampering evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndicatorKind {
    /// A script/iframe/object/link/form domain not in the baseline nor the allow list.
    NewExternalDomain,
    /// Links inside hidden blocks that the baseline did not have.
    HiddenLinks,
    /// Gambling, porn, gaming or fraud keywords beyond the baseline's count.
    Keywords,
    /// A meta refresh or script location change to another domain.
    Redirect,
    /// `<title>` changed.
    TitleChanged,
    /// Meta keywords or description changed.
    MetaChanged,
    /// The page was replaced wholesale ("hacked by", or almost no text in common).
    Replaced,
    /// Text outside dynamic regions changed beyond the threshold.
    ContentChanged,
}

impl IndicatorKind {
    /// Score contribution (0..=100).
    pub fn weight(self) -> u32 {
        match self {
            Self::NewExternalDomain => 60,
            Self::HiddenLinks => 80,
            Self::Keywords => 60,
            Self::Redirect => 80,
            Self::TitleChanged => 50,
            Self::MetaChanged => 30,
            Self::Replaced => 100,
            Self::ContentChanged => 40,
        }
    }
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    /// What kind.
    pub kind: IndicatorKind,
    /// Human-readable evidence (URLs, words, before/after).
    pub evidence: String,
}

/// The outcome of comparing a page with its baseline.
#[must_use]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Score reached the policy's threshold.
    pub tampered: bool,
    /// Sum of indicator weights (each kind counted once), capped at 100.
    pub score: u32,
    /// Estimated text similarity outside dynamic regions (1.0 = same).
    pub similarity: f64,
    /// Evidence, strongest first.
    pub indicators: Vec<Indicator>,
}

impl Verdict {
    /// Whether an indicator of `kind` is present.
    pub fn has(&self, kind: IndicatorKind) -> bool {
        self.indicators.iter().any(|i| i.kind == kind)
    }

    /// The verdict as JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail; fall back to a marker.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{\"error\":\"serialize\"}".into())
    }
}

const MAX_EVIDENCE_ITEMS: usize = 10;

fn list<T: AsRef<str>>(items: &[T]) -> String {
    let mut s = items
        .iter()
        .take(MAX_EVIDENCE_ITEMS)
        .map(|i| i.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_EVIDENCE_ITEMS {
        s.push_str(&format!(" (+{} more)", items.len() - MAX_EVIDENCE_ITEMS));
    }
    s
}

/// Compares `current` with `baseline` under `policy`.
pub fn compare(baseline: &Features, current: &Features, policy: &CheckPolicy) -> Verdict {
    let mut ind = Vec::new();
    let allowed = |host: &str| policy.allowed_domains.allows(host);

    // New external domains (any kind the baseline had counts as known).
    let known: HashSet<&str> = baseline
        .external
        .iter()
        .map(|r| r.domain.as_str())
        .collect();
    let mut seen = HashSet::new();
    for r in &current.external {
        if !known.contains(r.domain.as_str())
            && !allowed(&r.domain)
            && seen.insert(r.domain.as_str())
        {
            ind.push(Indicator {
                kind: IndicatorKind::NewExternalDomain,
                evidence: format!("{} {} (domain {})", r.kind.as_str(), r.url, r.domain),
            });
        }
    }

    // Hidden links.
    let known: HashSet<&str> = baseline
        .hidden_links
        .iter()
        .map(|l| l.href.as_str())
        .collect();
    let new_hidden: Vec<String> = current
        .hidden_links
        .iter()
        .filter(|l| !known.contains(l.href.as_str()))
        .map(|l| format!("{} ({})", l.href, l.reason))
        .collect();
    if !new_hidden.is_empty() {
        ind.push(Indicator {
            kind: IndicatorKind::HiddenLinks,
            evidence: format!(
                "{} link(s) in hidden blocks: {}",
                new_hidden.len(),
                list(&new_hidden)
            ),
        });
    }

    // Keywords beyond the baseline's count.
    let mut words = Vec::new();
    let mut defacement = Vec::new();
    for (word, hit) in &current.keywords {
        let before = baseline.keywords.get(word).map_or(0, |h| h.count);
        if hit.count > before {
            let item = format!("{word} ×{} ({})", hit.count - before, hit.category.as_str());
            if hit.category == Category::Defacement {
                defacement.push(item);
            } else {
                words.push(item);
            }
        }
    }
    if !words.is_empty() {
        ind.push(Indicator {
            kind: IndicatorKind::Keywords,
            evidence: list(&words),
        });
    }

    // Redirects to other domains.
    let external_target = |t: &str| url_host(t).is_some_and(|h| !allowed(&h));
    for (targets, before, what) in [
        (
            &current.meta_refresh,
            &baseline.meta_refresh,
            "meta refresh",
        ),
        (
            &current.script_redirects,
            &baseline.script_redirects,
            "script location change",
        ),
    ] {
        for t in targets {
            if !before.contains(t) && external_target(t) {
                ind.push(Indicator {
                    kind: IndicatorKind::Redirect,
                    evidence: format!("{what} to {t}"),
                });
            }
        }
    }

    if current.title != baseline.title {
        ind.push(Indicator {
            kind: IndicatorKind::TitleChanged,
            evidence: format!("title {:?} -> {:?}", baseline.title, current.title),
        });
    }
    for (name, b, c) in [
        ("keywords", &baseline.meta_keywords, &current.meta_keywords),
        (
            "description",
            &baseline.meta_description,
            &current.meta_description,
        ),
    ] {
        if b != c {
            ind.push(Indicator {
                kind: IndicatorKind::MetaChanged,
                evidence: format!("meta {name} {b:?} -> {c:?}"),
            });
        }
    }

    let similarity = if current.fingerprint == baseline.fingerprint {
        1.0
    } else {
        baseline.sketch.similarity(&current.sketch)
    };
    let t = &policy.thresholds;
    if !defacement.is_empty() {
        ind.push(Indicator {
            kind: IndicatorKind::Replaced,
            evidence: format!("defacement signature: {}", list(&defacement)),
        });
    }
    if similarity < t.replaced_similarity {
        ind.push(Indicator {
            kind: IndicatorKind::Replaced,
            evidence: format!(
                "text similarity {similarity:.2} below {:.2} ({} -> {} tokens)",
                t.replaced_similarity, baseline.sketch.tokens, current.sketch.tokens
            ),
        });
    } else if similarity < t.content_similarity {
        ind.push(Indicator {
            kind: IndicatorKind::ContentChanged,
            evidence: format!(
                "text similarity {similarity:.2} below {:.2} ({} -> {} tokens)",
                t.content_similarity, baseline.sketch.tokens, current.sketch.tokens
            ),
        });
    }

    ind.sort_by_key(|i| std::cmp::Reverse(i.kind.weight()));
    let kinds: HashSet<IndicatorKind> = ind.iter().map(|i| i.kind).collect();
    let score = kinds.iter().map(|k| k.weight()).sum::<u32>().min(100);
    Verdict {
        tampered: score >= t.score,
        score,
        similarity,
        indicators: ind,
    }
}
