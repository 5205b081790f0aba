//! Error types of the defacement module.

use std::path::PathBuf;

/// The defacement configuration is invalid. `site` names the site file (`None` for the
/// global section) and `field` the offending field as a dotted path within it
/// (e.g. `deface.pages[0].dynamic_selectors[1]`).
#[derive(Debug, thiserror::Error)]
#[error("deface config{}: `{field}`: {reason}", site.as_ref().map(|s| format!(" of site `{s}`")).unwrap_or_default())]
pub struct ConfigError {
    /// The site, or `None` for the global section.
    pub site: Option<String>,
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            site: None,
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn in_site(mut self, site: &str) -> Self {
        self.site = Some(site.to_owned());
        self
    }
}

/// The keyword data file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeywordsError {
    /// Reading the file failed.
    #[error("keyword file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A section header names no known category.
    #[error("keyword file line {line}: unknown category `{name}` (use gambling, porn, gaming, fraud or defacement)")]
    UnknownCategory {
        /// 1-based line number.
        line: usize,
        /// The section name as written.
        name: String,
    },
    /// A keyword appears before any `[category]` header.
    #[error("keyword file line {line}: keyword `{word}` before any [category] header")]
    NoCategory {
        /// 1-based line number.
        line: usize,
        /// The keyword.
        word: String,
    },
    /// The keyword set does not compile into a matcher (too large).
    #[error("keyword matcher: {0}")]
    Matcher(String),
}

/// A response body could not be decoded within the size bound.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The decoded body exceeds the bound (nothing beyond the bound was kept).
    #[error("body is over the {limit}-byte inspection limit")]
    TooLarge {
        /// The bound in bytes.
        limit: usize,
    },
    /// A content coding we do not decode.
    #[error("unsupported content encoding `{0}`")]
    Unsupported(String),
    /// The compressed stream is corrupt.
    #[error("corrupt {encoding} stream: {source}")]
    Corrupt {
        /// The coding.
        encoding: &'static str,
        /// The decoder's error.
        source: std::io::Error,
    },
}

/// HTML could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Over the size bound.
    #[error("HTML is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// The HTML rewriter gave up (memory limit or parser ambiguity).
    #[error("HTML parser: {0}")]
    Parser(String),
}

/// The baseline store failed.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A file system operation failed.
    #[error("baseline store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored record is not valid JSON of the expected shape.
    #[error("baseline record {path}: {source}")]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The stored copy does not match its recorded hash.
    #[error("baseline copy {path} does not match its recorded hash")]
    HashMismatch {
        /// The copy file.
        path: PathBuf,
    },
    /// The page to approve could not be analysed.
    #[error("baseline features: {0}")]
    Extract(ExtractError),
    /// The stored copy is over the size bound once decompressed.
    #[error("baseline copy {path}: {source}")]
    Decode {
        /// The copy file.
        path: PathBuf,
        /// Why it did not decode.
        source: DecodeError,
    },
}
