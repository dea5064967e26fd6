//! The `env.config` format: `KEY=VALUE` lines, read and written losslessly.
//!
//! Accepted per line: blank lines; `#` comments; `KEY=value` with an optional
//! `export ` prefix; values bare (trimmed, ` #` starts a trailing comment),
//! in double quotes (escapes `\"`, `\\`, `\n`, `\t`, `\$`) or in single quotes
//! (literal). Keys are `[A-Za-z_][A-Za-z0-9_]*`. Anything else is an error
//! naming the file and line.
//!
//! Writing replaces the value of one key in place, keeping every other line,
//! comment and the order, and leaves the file mode 0600 (it holds secrets).
//! The new content is written to a temporary file in the same directory,
//! synced and renamed over the old one, so a crash never leaves half a file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ConfigError;

/// One assignment read from an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The key.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Assignment {
        key: String,
        value: String,
        text: String,
    },
    Other(String),
}

/// An env file held in memory with its comments and order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    lines: Vec<Line>,
}

impl EnvFile {
    /// Parse `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut lines = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = match parse_line(raw) {
                Ok(Some((key, value))) => Line::Assignment {
                    key,
                    value,
                    text: raw.to_owned(),
                },
                Ok(None) => Line::Other(raw.to_owned()),
                Err(reason) => {
                    return Err(ConfigError::Syntax {
                        path: path.to_owned(),
                        line: index + 1,
                        reason,
                    });
                }
            };
            lines.push(line);
        }
        Ok(EnvFile { lines })
    }

    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(text).map_err(|_| ConfigError::Syntax {
            path: path.to_owned(),
            line: 0,
            reason: "the file is not valid UTF-8".into(),
        })?;
        Self::parse(&text, path)
    }

    /// The assignments in file order (a later one of the same key wins).
    pub fn assignments(&self) -> Vec<Assignment> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(index, line)| match line {
                Line::Assignment { key, value, .. } => Some(Assignment {
                    key: key.clone(),
                    value: value.clone(),
                    line: index + 1,
                }),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// The effective value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|line| match line {
            Line::Assignment { key: k, value, .. } if k == key => Some(value.as_str()),
            _ => None,
        })
    }

    /// Set `key` to `value`: the last line assigning it is rewritten (keeping an
    /// `export ` prefix), or a line is appended.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if !is_valid_key(key) {
            return Err(ConfigError::InvalidKey(key.to_owned()));
        }
        let rendered = format!("{key}={}", quote(value));
        let existing = self
            .lines
            .iter_mut()
            .rev()
            .find(|line| matches!(line, Line::Assignment { key: k, .. } if k == key));
        match existing {
            Some(Line::Assignment {
                value: old, text, ..
            }) => {
                let export = text.trim_start().starts_with("export ");
                *text = if export {
                    format!("export {rendered}")
                } else {
                    rendered
                };
                *old = value.to_owned();
            }
            _ => self.lines.push(Line::Assignment {
                key: key.to_owned(),
                value: value.to_owned(),
                text: rendered,
            }),
        }
        Ok(())
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Assignment { text, .. } | Line::Other(text) => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    /// Write the file atomically with mode 0600.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        write_private_atomic(path, self.render().as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

/// Set one key in the env file at `path` (created when missing), keeping
/// everything else; the file ends up mode 0600.
pub fn set_key(path: &Path, key: &str, value: &str) -> Result<(), ConfigError> {
    let mut file = match fs::metadata(path) {
        Ok(_) => EnvFile::read(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => EnvFile::default(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    file.set(key, value)?;
    file.write(path)
}

/// Replace the file at `path` with `bytes`, atomically and owner-only
/// (0600): a temporary file in the same directory, written, synced and
/// renamed over the old one, then the directory synced. A crash leaves
/// either the old file or the new one, never half of either.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // create_new refuses anything already at the temporary path, a planted
    // symlink included; a leftover of a crashed writer with our pid goes first.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        out.set_permissions(fs::Permissions::from_mode(0o600))?;
        out.write_all(bytes)?;
        out.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(dir) = fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn quote(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@+,".contains(c));
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '$' => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map_or(line, str::trim_start);
    let (key, rest) = line
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE".to_owned())?;
    let key = key.trim_end();
    if !is_valid_key(key) {
        return Err(format!("invalid key {key:?}"));
    }
    let value = parse_value(rest.trim_start()).map_err(|e| format!("{key}: {e}"))?;
    Ok(Some((key.to_owned(), value)))
}

fn parse_value(text: &str) -> Result<String, String> {
    let (value, rest) = match text.chars().next() {
        Some('"') => {
            let mut value = String::new();
            let mut chars = text[1..].char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 2);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, c @ ('"' | '\\' | '$'))) => value.push(c),
                        Some((_, c)) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            let end = end.ok_or("unterminated double quote")?;
            (value, &text[end..])
        }
        Some('\'') => {
            let close = text[1..].find('\'').ok_or("unterminated single quote")?;
            (text[1..1 + close].to_owned(), &text[close + 2..])
        }
        _ => {
            let value = match text.find(" #").or_else(|| text.find("\t#")) {
                Some(i) => &text[..i],
                None => text,
            };
            return Ok(value.trim_end().to_owned());
        }
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(value)
    } else {
        Err(format!("unexpected text after the closing quote: {rest:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvFile, ConfigError> {
        EnvFile::parse(text, Path::new("env.config"))
    }

    #[test]
    fn parses_comments_exports_and_quotes() {
        let file = parse(
            "# OCG\n\nOCG_PORT=55010\nexport OCG_HOST = 127.0.0.1  # loopback\n\
             A=\"two words # not a comment\"\nB='lit $HOME \\n'\nC=\"esc \\\"q\\\" \\n\"\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(file.get("OCG_PORT"), Some("55010"));
        assert_eq!(file.get("OCG_HOST"), Some("127.0.0.1"));
        assert_eq!(file.get("A"), Some("two words # not a comment"));
        assert_eq!(file.get("B"), Some("lit $HOME \\n"));
        assert_eq!(file.get("C"), Some("esc \"q\" \n"));
        assert_eq!(file.get("EMPTY"), Some(""));
        assert_eq!(file.assignments()[0].line, 3);
    }

    #[test]
    fn later_assignment_wins() {
        let file = parse("K=1\nK=2\n").unwrap();
        assert_eq!(file.get("K"), Some("2"));
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (text, line) in [
            ("OK=1\nnot an assignment\n", 2),
            ("1KEY=x\n", 1),
            ("A=1\nB=2\nC=\"open\n", 3),
            ("D='x' trailing\n", 1),
        ] {
            match parse(text) {
                Err(ConfigError::Syntax {
                    line: got, path, ..
                }) => {
                    assert_eq!(got, line, "{text:?}");
                    assert_eq!(path, Path::new("env.config"));
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn set_keeps_comments_order_and_export() {
        let mut file = parse("# top\nexport A=1\n# mid\nB=2\n").unwrap();
        file.set("A", "new value").unwrap();
        file.set("C", "3").unwrap();
        assert_eq!(
            file.render(),
            "# top\nexport A=\"new value\"\n# mid\nB=2\nC=3\n"
        );
        let again = parse(&file.render()).unwrap();
        assert_eq!(again.get("A"), Some("new value"));
        assert_eq!(again.get("C"), Some("3"));
        assert!(matches!(
            file.set("bad key", "x"),
            Err(ConfigError::InvalidKey(_))
        ));
    }

    #[test]
    fn quoting_round_trips_awkward_values() {
        for value in [
            "",
            "a b",
            "q\"uote",
            "back\\slash",
            "new\nline",
            "$HOME",
            "#x",
        ] {
            let mut file = EnvFile::default();
            file.set("K", value).unwrap();
            assert_eq!(parse(&file.render()).unwrap().get("K"), Some(value));
        }
    }

    #[test]
    fn set_key_writes_0600_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.config");
        fs::write(&path, "# keep me\nOCG_PORT=1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        set_key(&path, "OCG_UI_TOKEN", "abc").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "# keep me\nOCG_PORT=1\nOCG_UI_TOKEN=abc\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        let fresh = dir.path().join("new.config");
        set_key(&fresh, "K", "v").unwrap();
        assert_eq!(fs::read_to_string(&fresh).unwrap(), "K=v\n");
    }
}
