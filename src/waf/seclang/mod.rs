//! The SecLang (ModSecurity rule language) front-end, so that the OWASP Core Rule Set runs
//! unmodified: [`lexer`] splits files into directives, [`actions`] and [`targets`] parse a
//! rule's action and variable lists, [`compile`] maps everything onto the shared rule model,
//! and [`crs`] loads a CRS installation (rules, data files, the site's exclusion files) next
//! to Egret's native rules in one [`Engine`].

pub mod actions;
pub mod compile;
pub mod crs;
pub mod lexer;
pub mod pcre;
pub mod regress;
pub mod targets;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use compile::{Compiled, Compiler, Settings};
pub use crs::{CrsConfig, CrsSettings};

use super::engine::Engine;
use super::load::LoadError;
use super::model::Rule;

/// Lexes one file's text, mapping errors to `file:line`.
pub fn lex_file(path: &Path, text: &str) -> Result<Vec<lexer::Directive>, LoadError> {
    lexer::lex(text).map_err(|e| LoadError {
        file: Some(path.to_owned()),
        line: e.line,
        col: 1,
        rule_id: None,
        message: e.message,
    })
}

/// Reads and lexes one file.
pub fn read_file(path: &Path) -> Result<Vec<lexer::Directive>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::io(path, &e))?;
    lex_file(path, &text)
}

/// Compiles SecLang files in order.
pub fn load_files(files: &[PathBuf]) -> Result<Compiled, Vec<LoadError>> {
    let mut c = Compiler::new();
    let mut errs = Vec::new();
    for f in files {
        match read_file(f) {
            Ok(d) => c.add_file(f, &d),
            Err(e) => errs.push(e),
        }
    }
    let out = c.finish();
    match out {
        Ok(x) if errs.is_empty() => Ok(x),
        Ok(_) => Err(errs),
        Err(mut e) => {
            errs.append(&mut e);
            Err(errs)
        }
    }
}

/// One engine from native rules followed by compiled SecLang rules (ids must not clash).
pub fn build_engine(
    native: Vec<Rule>,
    compiled: Compiled,
    files: Vec<PathBuf>,
) -> Result<Engine, Vec<LoadError>> {
    let offset = native.len();
    let mut rules = native;
    rules.extend(compiled.rules);
    let mut markers = HashMap::new();
    for (name, before) in compiled.markers {
        // The engine resumes after the rule a marker follows.
        if let Some(idx) = (offset + before).checked_sub(1) {
            markers.insert(name, idx);
        }
    }
    Engine::from_rules(rules, markers, files).map_err(|e| vec![e])
}
