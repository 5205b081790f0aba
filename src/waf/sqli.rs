//! `@detectSQLi`: libinjection's SQL-injection verdict (the `libinjectionrs` crate), with the
//! work it does not need to do taken out of the per-request path.
//!
//! Two things are skipped, both without changing a verdict:
//!
//! - `libinjectionrs::detect_sqli` tokenises and folds the value a second time for the
//!   fingerprint it returns. Its verdict is that of one `SqliState::detect()`, so a value is
//!   tested with that alone and only a hit pays again, for the fingerprint (TX.0).
//! - A value libinjection reads as a single word (it starts like a word and holds no byte that
//!   ends one) has a one-letter fingerprint: the word's token type. The only one-letter
//!   fingerprint in libinjection's blacklist is `X` (an "evil" token, which a word never is), so
//!   such a value is never SQL injection. Spotting it takes one table lookup per byte, where the
//!   tokenizer tests every byte against its 30 delimiters (a 1 KB word costs it ~100k
//!   instructions). Tests below check the premise against the crate's own tables.

use libinjectionrs::sqli::sqli_data::{get_char_type, CharType};
use libinjectionrs::{SqliFlags, SqliState};

/// Bytes that end a word in libinjection's tokenizer (`parse_word`'s `strlencspn` set), plus
/// `.` and `` ` ``, after which it looks the word's prefix up again.
const WORD_BREAKS: &[u8] = b" []{}<>:\\?=@!#~+-*/&|^%(),';\t\n\x0B\x0C\r\"\xA0\x00.`";

/// `true` for the bytes of [`WORD_BREAKS`].
const BREAKS_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < WORD_BREAKS.len() {
        table[WORD_BREAKS[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether libinjection tokenises all of `value` as one word: its first byte starts a word
/// (letters, `_`, bytes 0x80-0xFF but 0xA0; the letters that may open a prefixed string, such
/// as `N'..'` or `X'..'`, fall back to a word when no quote follows, and a quote breaks a
/// word) and no later byte ends one.
fn is_one_word(value: &[u8]) -> bool {
    let Some(&first) = value.first() else {
        return false;
    };
    let starts_word = matches!(
        get_char_type(first),
        CharType::Word
            | CharType::BString
            | CharType::EString
            | CharType::NQString
            | CharType::QString
            | CharType::UString
            | CharType::XString
    );
    starts_word && !value.iter().any(|&b| BREAKS_WORD[b as usize])
}

/// libinjection's verdict on `value`. On a hit, `caps` receives the fingerprint (TX.0).
pub fn detect(value: &[u8], caps: &mut Vec<Vec<u8>>) -> bool {
    if is_one_word(value) {
        return false;
    }
    let hit = SqliState::new(value, SqliFlags::FLAG_NONE).detect();
    if hit {
        if let Some(fp) = libinjectionrs::detect_sqli(value).fingerprint {
            caps.push(fp.as_str().as_bytes().to_vec());
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;
    use libinjectionrs::sqli::sqli_data::SQL_KEYWORDS;

    /// What the crate says, with the fingerprint it returns on a hit.
    fn reference(value: &[u8]) -> (bool, Vec<Vec<u8>>) {
        let r = libinjectionrs::detect_sqli(value);
        let caps = match (&r.fingerprint, r.is_injection()) {
            (Some(fp), true) => vec![fp.as_str().as_bytes().to_vec()],
            _ => Vec::new(),
        };
        (r.is_injection(), caps)
    }

    fn assert_agrees(value: &[u8]) {
        let mut caps = Vec::new();
        let got = detect(value, &mut caps);
        let text = String::from_utf8_lossy(value);
        assert_eq!((got, caps), reference(value), "on {text:?}");
    }

    /// The premise of the one-word shortcut, read from the crate's own blacklist: no
    /// one-letter fingerprint but `X` is SQL injection, and a word's token type is never `X`.
    #[test]
    fn only_evil_has_a_one_letter_fingerprint() {
        let one_letter: Vec<&str> = SQL_KEYWORDS
            .iter()
            .filter(|k| k.token_type == b'F' && k.word.len() == 2)
            .map(|k| k.word)
            .collect();
        assert_eq!(one_letter, ["0X"]);
        assert!(SQL_KEYWORDS.iter().all(|k| k.token_type != b'X'));
    }

    /// Every keyword, function and operator libinjection knows, as it is, lowercased, and
    /// with a suffix, either takes the shortcut with the crate's verdict or is not a word.
    #[test]
    fn every_keyword_as_a_value_agrees() {
        let mut shortcut = 0;
        for k in SQL_KEYWORDS {
            let w = k.word.as_bytes();
            for v in [
                w.to_vec(),
                w.to_ascii_lowercase(),
                [w, b"_x1"].concat(),
                [b"a", w].concat(),
            ] {
                assert_agrees(&v);
                shortcut += usize::from(is_one_word(&v));
            }
        }
        assert!(
            shortcut > 1000,
            "{shortcut} keyword values took the shortcut"
        );
    }

    /// Random values of word bytes (with a sprinkling of every other byte, so that both
    /// sides of the shortcut are exercised) agree with the crate.
    #[test]
    fn random_values_agree() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let word_bytes: Vec<u8> = (0..=255u8).filter(|&b| !BREAKS_WORD[b as usize]).collect();
        let (mut words, mut total) = (0, 0);
        for _ in 0..20_000 {
            let len = 1 + (next() % 40) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| match next() % 50 {
                    0 => (next() % 256) as u8,
                    _ => word_bytes[(next() % word_bytes.len() as u64) as usize],
                })
                .collect();
            assert_agrees(&v);
            words += usize::from(is_one_word(&v));
            total += 1;
        }
        assert!(words > 1000 && total - words > 1000, "{words} of {total}");
    }

    #[test]
    fn attacks_still_hit_and_words_do_not() {
        let mut caps = Vec::new();
        assert!(detect(b"1' or '1'='1", &mut caps));
        assert_eq!(caps.len(), 1, "the fingerprint is captured");
        for v in [
            &b"union"[..],
            b"SELECT",
            b"sp_password",
            b"xp_cmdshell",
            b"a".repeat(1300).as_slice(),
        ] {
            assert!(is_one_word(v));
            assert!(!detect(v, &mut caps));
        }
        assert!(!is_one_word(b"1union"));
        assert!(!is_one_word(b"a.b"));
        assert!(!is_one_word(b""));
    }

    /// Strings of a fixture corpus: every JSON string, and the percent-decoded pieces of it
    /// split at `?`, `&`, `=` and `;` (what ARGS and cookies hold).
    fn corpus_values(path: &str) -> Vec<Vec<u8>> {
        fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let text = std::fs::read_to_string(path).expect("fixture corpus is readable");
        let mut found = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
            strings(&v, &mut found);
        }
        let mut values = Vec::new();
        for s in found {
            for piece in s.split(['?', '&', '=', ';']) {
                values.push(crate::waf::request::percent_decode(piece.as_bytes(), true).0);
            }
            values.push(s.into_bytes());
        }
        values
    }

    #[test]
    fn agrees_with_libinjection_on_both_corpora() {
        let (mut hits, mut total) = (0, 0);
        for path in [
            "tests/fixtures/waf/attacks.jsonl",
            "tests/fixtures/waf/benign.jsonl",
        ] {
            for v in corpus_values(path) {
                assert_agrees(&v);
                hits += usize::from(reference(&v).0);
                total += 1;
            }
        }
        // Both outcomes are exercised, so the comparison could fail either way.
        assert!(hits > 100 && total - hits > 1000, "{hits} hits of {total}");
    }
}
