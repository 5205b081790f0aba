//! Configuration errors that point at the place in a file: `file:line:col: message`.
//!
//! A load collects every error it finds into [`ConfigErrors`] rather than stopping at the first,
//! so that ops staff can fix a broken file in one pass.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is the file as a whole (e.g. unreadable).
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Every problem of one load, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
}

/// A configuration file's path and text, used to turn byte spans into line:col.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn read(path: &Path) -> Result<SourceFile, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SourceFile {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => Err(ConfigError {
                file: path.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read file: {e}"),
            }),
        }
    }

    /// 1-based (line, column) of a byte offset; columns count characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }

    /// An error at a span of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// An error about the file as a whole (line 1).
    pub fn error_at_start(&self, message: impl Into<String>) -> ConfigError {
        self.error(0..0, message)
    }

    /// Parses the text as TOML into `T`, turning a parse error into a located error.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str::<T>(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            self.error(span, e.message().trim().to_string())
        })
    }

    /// Path `p` from the config relative to this file's directory (absolute paths stay as they are).
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars() {
        let f = SourceFile {
            path: "x.toml".into(),
            text: "a = 1\nbé = 2\nc".into(),
        };
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // "bé" is 3 bytes; offset of " = 2" is 6 + 3.
        assert_eq!(f.line_col(9), (2, 3));
        assert_eq!(f.line_col(999), (3, 2));
    }

    #[test]
    fn parse_error_has_location() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let f = SourceFile {
            path: "x.toml".into(),
            text: "a = 1\nb = 2\n".into(),
        };
        let e = f.parse::<T>().unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
