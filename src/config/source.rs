//! Where in the file a problem is: line numbers, dotted key names, "did you mean", and the
//! resolution of secrets (inline, `*_file`, systemd credential) with their permission checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Secret};

/// The file being loaded and its text, to turn positions into line numbers.
pub(super) struct Context<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Context<'_> {
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_string();
        let line = e.span().map(|s| line_of(self.text, s.start));
        let mut key = e.span().and_then(|s| key_at(self.text, s.start));
        let mut reason = message.clone();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let unknown = rest.split('`').next().unwrap_or("").to_string();
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            reason = format!("unknown key `{unknown}`");
            if let Some(best) = did_you_mean(&unknown, &expected) {
                reason.push_str(&format!(", did you mean `{best}`?"));
            } else if !expected.is_empty() {
                reason.push_str(&format!(" (known keys here: {})", expected.join(", ")));
            }
            key = Some(with_section(self.text, e.span().map(|s| s.start), &unknown));
        } else if let Some(rest) = message.strip_prefix("missing field `") {
            let missing = rest.split('`').next().unwrap_or("").to_string();
            reason = "missing required key".into();
            key = Some(with_section(self.text, e.span().map(|s| s.start), &missing));
        } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
            reason = format!("wrong type or value: {message}");
        } else if message.starts_with("unknown variant") {
            reason = format!("not an allowed value: {message}");
        }
        ConfigError { file: self.file.to_path_buf(), line, key, reason }
    }

    /// An error about `key` in the first table named by `section` (e.g. `["http"]`).
    pub(super) fn error(&self, section: &[&str], key: &str, reason: String) -> ConfigError {
        self.error_at(section, 0, key, reason)
    }

    /// An error about `key` in the `index`-th `[[section]]` table.
    pub(super) fn error_at(&self, section: &[&str], index: usize, key: &str, reason: String) -> ConfigError {
        let line = find_key_line(self.text, section, index, key);
        let dotted = if section.is_empty() {
            key.to_string()
        } else if is_array_table(self.text, section) {
            format!("{}[{}].{}", section.join("."), index, key)
        } else {
            format!("{}.{}", section.join("."), key)
        };
        ConfigError { file: self.file.to_path_buf(), line, key: Some(dotted), reason }
    }

    /// Resolves a secret given inline, as `<key>_file`, or as `<key>_credential`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn secret(
        &self,
        section: &[&str],
        index: usize,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        credential: Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let given = inline.is_some() as u8 + file.is_some() as u8 + credential.is_some() as u8;
        if given > 1 {
            return Err(self.error_at(
                section,
                index,
                key,
                format!("give only one of `{key}`, `{key}_file` and `{key}_credential`"),
            ));
        }
        if let Some(value) = inline {
            return Ok(Some(Secret(value)));
        }
        if let Some(path) = file {
            let file_key = format!("{key}_file");
            return read_secret_file(&path, true)
                .map(|v| Some(Secret(v)))
                .map_err(|reason| self.error_at(section, index, &file_key, reason));
        }
        if let Some(name) = credential {
            let cred_key = format!("{key}_credential");
            let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                return Err(self.error_at(section, index, &cred_key, format!("credential {name:?} asked for, but $CREDENTIALS_DIRECTORY is not set (add LoadCredential={name}:/path to the systemd unit)")));
            };
            if name.contains('/') || name.is_empty() {
                return Err(self.error_at(section, index, &cred_key, format!("{name:?} is not a credential name")));
            }
            // systemd makes the credentials directory private to the service: no mode check.
            return read_secret_file(&Path::new(&dir).join(&name), false)
                .map(|v| Some(Secret(v)))
                .map_err(|reason| self.error_at(section, index, &cred_key, reason));
        }
        Ok(None)
    }

    /// A config file that holds secrets inline must not be readable by every user.
    pub(super) fn check_inline_secrets_are_private(&self, _config: &Config) -> Result<(), ConfigError> {
        let inline_keys = ["client_secret", "webhook_token", "pin", "auth_token", "password", "salt"];
        let Some((line, key)) = self.text.lines().enumerate().find_map(|(n, l)| {
            let k = l.split('=').next()?.trim();
            (l.contains('=') && !l.trim_start().starts_with('#') && inline_keys.contains(&k))
                .then(|| (n + 1, k.to_string()))
        }) else {
            return Ok(());
        };
        match std::fs::metadata(self.file) {
            Ok(meta) if meta.permissions().mode() & 0o004 != 0 => Err(ConfigError {
                file: self.file.to_path_buf(),
                line: Some(line),
                key: Some(key),
                reason: format!(
                    "insecure permissions: the file holds a secret and is readable by every user (mode {:o}); run `chmod 640 {}` or move the secret to a *_file",
                    meta.permissions().mode() & 0o777,
                    self.file.display()
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Reads a secret file: trims one trailing newline, refuses empty files and (when `check_mode`)
/// files that every user may read. Group read is allowed: the package installs secrets as
/// 0640 root:smshub.
fn read_secret_file(path: &Path, check_mode: bool) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if check_mode && mode & 0o007 != 0 {
        return Err(format!(
            "insecure permissions on secret file {} (mode {mode:o}, readable by every user): run `chmod 640 {}`",
            path.display(),
            path.display()
        ));
    }
    read_trimmed(path)
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(value.to_string())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len())).map(|s| s.matches('\n').count()).unwrap_or(0) + 1
}

/// The table header in force at `offset` (e.g. `modem` for `[[modem]]`), if any.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    before.lines().rev().find_map(|l| {
        let t = l.trim();
        t.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(|s| s.trim().to_string())
    })
}

fn with_section(text: &str, offset: Option<usize>, key: &str) -> String {
    match offset.and_then(|o| {
        // A span that starts at a header belongs to that header's table.
        let line_start = text.get(..o).map(|s| s.rfind('\n').map(|p| p + 1).unwrap_or(0)).unwrap_or(0);
        let line_end = text.get(o..).and_then(|s| s.find('\n')).map(|p| p + o).unwrap_or(text.len());
        let line = text.get(line_start..line_end).unwrap_or("").trim();
        if line.starts_with('[') { section_at(text, line_end) } else { section_at(text, o) }
    }) {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    }
}

/// The dotted key written on the line at `offset` (`modem.baud` for `baud = "x"` under `[[modem]]`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map(|p| p + 1).unwrap_or(0);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    Some(with_section(text, Some(offset), key.trim()))
}

fn is_array_table(text: &str, section: &[&str]) -> bool {
    let header = format!("[[{}]]", section.join("."));
    text.lines().any(|l| l.trim() == header)
}

/// The line where `key` is set inside the `index`-th `[section]`/`[[section]]` table, or the
/// table's header line when the key is absent.
fn find_key_line(text: &str, section: &[&str], index: usize, key: &str) -> Option<usize> {
    let name = section.join(".");
    let mut seen = 0usize;
    let mut in_section = section.is_empty();
    let mut header_line = None;
    for (n, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.starts_with('[') {
            let inner = t.trim_start_matches('[').trim_end_matches(']').trim();
            if inner == name {
                in_section = seen == index;
                if in_section {
                    header_line = Some(n + 1);
                }
                seen += 1;
            } else {
                in_section = false;
            }
            continue;
        }
        if in_section
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == key
        {
            return Some(n + 1);
        }
    }
    header_line
}

/// The closest known key, if it is close enough to be a typo.
fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("clinic_cod", "clinic_code"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(did_you_mean("poll_intervall_s", &["poll_interval_s", "name"]), Some("poll_interval_s"));
        assert_eq!(did_you_mean("zzz", &["poll_interval_s", "name"]), None);
    }

    #[test]
    fn key_lines_are_found_in_the_right_array_table() {
        let text = "[[modem]]\nname = \"a\"\n[[modem]]\nname = \"b\"\nbaud = 1\n";
        assert_eq!(find_key_line(text, &["modem"], 1, "baud"), Some(5));
        assert_eq!(find_key_line(text, &["modem"], 0, "baud"), Some(1));
    }
}
