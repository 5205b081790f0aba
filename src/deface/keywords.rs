//! Keyword lists for defacement detection.
//!
//! Owns the data-file format and the compiled matcher. The file is UTF-8 text: `[category]`
//! headers (`gambling`, `porn`, `gaming`, `fraud`, `defacement`), then one keyword or phrase per
//! line; `#` starts a comment. Matching is case-insensitive for ASCII, and a space in a phrase
//! matches any run of whitespace. The built-in list (`rulesets/deface-keywords.txt`) is compiled
//! in; security staff extend it with `keywords_file`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::KeywordsError;

/// The built-in keyword list.
pub const BUILTIN_KEYWORDS: &str = include_str!("../../rulesets/deface-keywords.txt");

/// Largest compiled matcher (bytes of regex program).
const MATCHER_SIZE_LIMIT: usize = 32 * 1024 * 1024;

/// Keyword categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Gambling (博彩).
    Gambling,
    /// Pornography (色情).
    Porn,
    /// Gaming / chess-and-cards (棋牌, 游戏).
    Gaming,
    /// Fraud (诈骗, 代开发票).
    Fraud,
    /// Defacement signatures ("hacked by").
    Defacement,
}

impl Category {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "gambling" => Self::Gambling,
            "porn" => Self::Porn,
            "gaming" => Self::Gaming,
            "fraud" => Self::Fraud,
            "defacement" => Self::Defacement,
            _ => return None,
        })
    }

    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gambling => "gambling",
            Self::Porn => "porn",
            Self::Gaming => "gaming",
            Self::Fraud => "fraud",
            Self::Defacement => "defacement",
        }
    }
}

/// Hits of one keyword in a page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct KeywordHit {
    /// Category of the keyword.
    pub category: Category,
    /// Occurrences.
    pub count: u32,
}

/// A compiled keyword matcher.
#[derive(Debug, Clone)]
pub struct Keywords {
    matcher: Option<Regex>,
    digest: String,
    /// Lower-cased, whitespace-collapsed keyword -> (keyword as written, category).
    by_key: HashMap<String, (String, Category)>,
}

fn collapse_key(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl Keywords {
    /// Parses one or more keyword files' contents (later files add to earlier ones).
    pub fn parse(texts: &[&str]) -> Result<Self, KeywordsError> {
        let mut by_key: HashMap<String, (String, Category)> = HashMap::new();
        for text in texts {
            let mut category = None;
            for (i, raw) in text.lines().enumerate() {
                let line = raw.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    category = Some(Category::parse(name).ok_or_else(|| {
                        KeywordsError::UnknownCategory {
                            line: i + 1,
                            name: name.to_owned(),
                        }
                    })?);
                    continue;
                }
                let Some(cat) = category else {
                    return Err(KeywordsError::NoCategory {
                        line: i + 1,
                        word: line.to_owned(),
                    });
                };
                by_key
                    .entry(collapse_key(line))
                    .or_insert_with(|| (line.to_owned(), cat));
            }
        }
        let mut keys: Vec<&String> = by_key.keys().collect();
        // Longest first, so a phrase wins over a keyword it contains.
        keys.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let matcher = if keys.is_empty() {
            None
        } else {
            let alternation = keys
                .iter()
                .map(|k| {
                    k.split(' ')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(r"\s+")
                })
                .collect::<Vec<_>>()
                .join("|");
            Some(
                regex::RegexBuilder::new(&format!("(?i:{alternation})"))
                    .size_limit(MATCHER_SIZE_LIMIT)
                    .build()
                    .map_err(|e| KeywordsError::Matcher(e.to_string()))?,
            )
        };
        let mut h = Sha256::new();
        let mut entries: Vec<(&String, &(String, Category))> = by_key.iter().collect();
        entries.sort();
        for (key, (_, cat)) in entries {
            h.update(key.as_bytes());
            h.update([0, *cat as u8]);
        }
        let digest = super::policy::hex(&h.finalize());
        Ok(Self {
            matcher,
            digest,
            by_key,
        })
    }

    /// SHA-256 (hex) of the keyword set: changes whenever a keyword or category changes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The built-in list alone.
    pub fn builtin() -> Result<Self, KeywordsError> {
        Self::parse(&[BUILTIN_KEYWORDS])
    }

    /// The built-in list plus a file.
    pub fn builtin_and_file(path: &Path) -> Result<Self, KeywordsError> {
        let extra = std::fs::read_to_string(path).map_err(|source| KeywordsError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&[BUILTIN_KEYWORDS, &extra])
    }

    /// Number of distinct keywords.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are no keywords.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Counts keyword hits in `text`, keyed by the keyword as written in the list.
    pub fn scan(&self, text: &str, into: &mut BTreeMap<String, KeywordHit>) {
        let Some(matcher) = &self.matcher else {
            return;
        };
        for m in matcher.find_iter(text) {
            let key = collapse_key(m.as_str());
            if let Some((word, category)) = self.by_key.get(&key) {
                let hit = into.entry(word.clone()).or_insert(KeywordHit {
                    category: *category,
                    count: 0,
                });
                hit.count = hit.count.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_parses_and_matches() {
        let k = Keywords::builtin().unwrap();
        assert!(k.len() > 30);
        let mut hits = BTreeMap::new();
        k.scan(
            "欢迎来到澳门赌场，百家乐 Online CASINO! Hacked   By x",
            &mut hits,
        );
        assert_eq!(hits["澳门赌场"].category, Category::Gambling);
        assert_eq!(hits["百家乐"].count, 1);
        assert_eq!(hits["online casino"].count, 1);
        assert!(!hits.contains_key("casino"));
        assert_eq!(hits["hacked by"].category, Category::Defacement);
        // The longer phrase wins over the shorter keyword inside it.
        assert!(!hits.contains_key("赌场"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = Keywords::parse(&["# c\n[gambling]\n博彩\n[weather]\n"]).unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        let err = Keywords::parse(&["casino\n"]).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(Keywords::parse(&[""]).unwrap().is_empty());
    }

    #[test]
    fn extra_file_extends_builtin() {
        let k = Keywords::parse(&[BUILTIN_KEYWORDS, "[fraud]\n代开发票 新词\n"]).unwrap();
        let mut hits = BTreeMap::new();
        k.scan("代开发票   新词", &mut hits);
        assert_eq!(hits["代开发票 新词"].category, Category::Fraud);
    }
}
