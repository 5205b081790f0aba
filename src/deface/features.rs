//! The features of one page that verdicts compare, and the text similarity sketch.
//!
//! Owns [`Features`] (serializable: stored as the baseline fingerprint JSON) and
//! [`TextSketch`], a bottom-k sketch of the page's text shingles that estimates the Jaccard
//! similarity of two pages' text outside dynamic regions in O(k).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::keywords::KeywordHit;

/// Version of the feature format; baselines with another version are re-extracted.
pub const FEATURES_VERSION: u32 = 1;

/// Shingle length in tokens (a CJK character or an ASCII word is one token).
const SHINGLE: usize = 4;
/// Sketch size.
pub const SKETCH_K: usize = 512;

/// Kinds of element that load or submit to another origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    /// `<script src>`.
    Script,
    /// `<iframe src>` / `<frame src>`.
    Iframe,
    /// `<object data>` / `<embed src>`.
    Object,
    /// `<link href>`.
    Link,
    /// `<form action>`.
    Form,
}

impl RefKind {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::Iframe => "iframe",
            Self::Object => "object",
            Self::Link => "link",
            Self::Form => "form",
        }
    }
}

/// One external reference (first URL seen per kind and domain).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub struct ExternalRef {
    /// Element kind.
    pub kind: RefKind,
    /// Lower-case host.
    pub domain: String,
    /// The URL as written (entity-decoded, truncated).
    pub url: String,
}

/// A link inside a hidden block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct HiddenLink {
    /// The link target.
    pub href: String,
    /// Why the block is hidden (`display:none`, `off-screen position`, ...).
    pub reason: String,
}

/// Everything a verdict compares about one page.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Features {
    /// Format version.
    pub version: u32,
    /// `<title>`, whitespace collapsed.
    pub title: String,
    /// `<meta name="keywords">`.
    pub meta_keywords: String,
    /// `<meta name="description">`.
    pub meta_description: String,
    /// External script/iframe/object/link/form references.
    pub external: BTreeSet<ExternalRef>,
    /// Links inside hidden blocks.
    pub hidden_links: Vec<HiddenLink>,
    /// `<meta http-equiv="refresh">` targets.
    pub meta_refresh: Vec<String>,
    /// Location changes in inline scripts (`location.href = "..."`, `location.replace(...)`).
    pub script_redirects: Vec<String>,
    /// Keyword hits in the whole page (dynamic regions included).
    pub keywords: BTreeMap<String, KeywordHit>,
    /// Text sketch outside dynamic regions.
    pub sketch: TextSketch,
    /// SHA-256 (hex) of the normalized text and structure outside dynamic regions.
    pub fingerprint: String,
    /// Some collection hit its cap (evidence is partial).
    pub truncated: bool,
}

/// Bottom-k sketch of a text's shingle hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TextSketch {
    /// The smallest `SKETCH_K` distinct shingle hashes, ascending.
    pub hashes: Vec<u64>,
    /// Number of tokens in the text.
    pub tokens: usize,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn feed_char(mut h: u64, c: char) -> u64 {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Final avalanche (FNV's low bits are weak for ordering).
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x9fff | 0xf900..=0xfaff | 0x20000..=0x2fa1f | 0x3040..=0x30ff | 0xac00..=0xd7af)
}

/// Calls `f` with the hash of each token of `text`: each CJK character alone, runs of other
/// letters and digits together (lower-cased); punctuation and whitespace separate tokens.
/// Hashes are stable across processes and versions of this crate (baselines store them).
pub fn for_each_token(text: &str, mut f: impl FnMut(u64)) {
    let mut word: Option<u64> = None;
    for c in text.chars() {
        if is_cjk(c) {
            if let Some(w) = word.take() {
                f(mix(w));
            }
            f(mix(feed_char(FNV_OFFSET, c)));
        } else if c.is_alphanumeric() {
            let mut w = word.unwrap_or(FNV_OFFSET);
            for lc in c.to_lowercase() {
                w = feed_char(w, lc);
            }
            word = Some(w);
        } else if let Some(w) = word.take() {
            f(mix(w));
        }
    }
    if let Some(w) = word {
        f(mix(w));
    }
}

impl TextSketch {
    /// Builds the sketch of `text`.
    pub fn of(text: &str) -> Self {
        let mut toks = Vec::new();
        for_each_token(text, |h| toks.push(h));
        let shingle = |w: &[u64]| {
            mix(w
                .iter()
                .fold(0u64, |h, t| (h.rotate_left(17) ^ t).wrapping_mul(FNV_PRIME)))
        };
        let mut hashes: Vec<u64> = if toks.len() < SHINGLE {
            if toks.is_empty() {
                Vec::new()
            } else {
                vec![shingle(&toks)]
            }
        } else {
            toks.windows(SHINGLE).map(shingle).collect()
        };
        hashes.sort_unstable();
        hashes.dedup();
        hashes.truncate(SKETCH_K);
        Self {
            hashes,
            tokens: toks.len(),
        }
    }

    /// Estimated Jaccard similarity (1.0 for two empty texts).
    pub fn similarity(&self, other: &Self) -> f64 {
        if self.hashes.is_empty() && other.hashes.is_empty() {
            return 1.0;
        }
        // Bottom-k of the union, from the two sorted lists; count those in both.
        let (a, b) = (&self.hashes, &other.hashes);
        let (mut i, mut j, mut union, mut both) = (0, 0, 0usize, 0usize);
        while union < SKETCH_K && (i < a.len() || j < b.len()) {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x == y => {
                    both += 1;
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x < y => i += 1,
                (Some(_), Some(_)) => j += 1,
                (Some(_), None) => i += 1,
                (None, Some(_)) => j += 1,
                (None, None) => break,
            }
            union += 1;
        }
        if union == 0 {
            1.0
        } else {
            both as f64 / union as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<u64> {
        let mut v = Vec::new();
        for_each_token(text, |h| v.push(h));
        v
    }

    #[test]
    fn tokenizes_mixed_text() {
        let t = tokens("政务公开 News-2024!");
        assert_eq!(t.len(), 6);
        assert_eq!(t[4], tokens("NEWS")[0]);
        assert_eq!(t[0], tokens("政")[0]);
        assert_ne!(t[4], t[5]);
    }

    #[test]
    fn similarity_behaves() {
        let base: String = (1..=40)
            .map(|i| {
                format!("第{i}条 关于做好第{i}季度安全生产与民生保障工作的通知 市政府办公室发布 ")
            })
            .collect();
        let same = TextSketch::of(&base);
        assert_eq!(same.similarity(&TextSketch::of(&base)), 1.0);
        let small_edit = base.replacen("安全生产", "防汛抗旱", 2);
        assert!(same.similarity(&TextSketch::of(&small_edit)) > 0.8);
        let other = TextSketch::of("Hacked by someone. Your security is low. Greetz to all.");
        assert!(same.similarity(&other) < 0.05);
        assert_eq!(TextSketch::of("").similarity(&TextSketch::of("")), 1.0);
    }
}
