//! `<FILL: what>` placeholders: the values `pfgate init` leaves for the administrator. A
//! configuration holding one is not complete; `check-config` and `serve` name each by its key.

use std::path::Path;

use super::ConfigProblem;

/// The marker of a value still to fill in.
pub const PLACEHOLDER: &str = "<FILL:";

/// Files named by keys ending in `_file` are searched for placeholders up to this size (secret,
/// password and users files are small; a larger file is not one `init` wrote).
const MAX_SCANNED_FILE: u64 = 1024 * 1024;

/// Every placeholder left in the configuration at `path`: values holding `<FILL:`, and files
/// named by `*_file` keys that hold one. Each as a problem naming its key.
pub fn placeholders(path: &Path) -> Vec<ConfigProblem> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut found = Vec::new();
    walk(
        &toml::Value::Table(table),
        String::new(),
        &mut |key, value| {
            let reason = if let Some(at) = value.find(PLACEHOLDER) {
                Some(format!("still to fill: {}", placeholder_text(&value[at..])))
            } else if key.ends_with("_file") {
                file_placeholder(&base.join(value)).map(|p| {
                    format!(
                        "{value} still holds a placeholder: {}",
                        placeholder_text(&p)
                    )
                })
            } else {
                None
            };
            if let Some(reason) = reason {
                found.push(ConfigProblem {
                    file: path.to_path_buf(),
                    key: key.to_string(),
                    reason,
                });
            }
        },
    );
    found
}

/// Calls `f` with the dotted key of every string value (array items share their array's key).
fn walk(value: &toml::Value, key: String, f: &mut dyn FnMut(&str, &str)) {
    let join = |k: &str| {
        if key.is_empty() {
            k.to_string()
        } else {
            format!("{key}.{k}")
        }
    };
    match value {
        toml::Value::String(s) => f(&key, s),
        toml::Value::Table(t) => {
            for (k, v) in t {
                walk(v, join(k), f);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let k = if matches!(v, toml::Value::Table(_)) {
                    format!("{key}[{i}]")
                } else {
                    key.clone()
                };
                walk(v, k, f);
            }
        }
        _ => {}
    }
}

/// The placeholder in a small text file, if any (from the marker on).
fn file_placeholder(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SCANNED_FILE {
        return None;
    }
    // A secret file's contents: wiped from memory once searched.
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).ok()?);
    let text = String::from_utf8_lossy(&bytes);
    text.find(PLACEHOLDER).map(|at| text[at..].to_string())
}

/// `<FILL: what>` → `what` (up to the closing `>` that ends the marker, else the line).
fn placeholder_text(from_marker: &str) -> String {
    let inner = from_marker.trim_start_matches(PLACEHOLDER);
    let line = inner.lines().next().unwrap_or("");
    let end = line.rfind('>').unwrap_or(line.len());
    line[..end].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placeholders are found in values at any depth (array-of-tables items by index) and in the
    /// files `*_file` keys name (relative to the configuration); a filled file or a value without
    /// the marker is not reported, nor a file under another key.
    #[test]
    fn placeholders_are_found_by_key_in_values_and_named_files() {
        let dir = std::env::temp_dir().join(format!("pfgate-init-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.secret"), "<FILL: the secret>\n").unwrap();
        std::fs::write(dir.join("b.secret"), "filled\n").unwrap();
        let config = dir.join("pfgate.toml");
        std::fs::write(
            &config,
            "[auth]\n[[auth.principals]]\nname = \"ok\"\n[[auth.principals]]\n\
             name = \"<FILL: who>\"\nallow = [\"<FILL: group>\"]\n\
             [providers.x]\nsecret_file = \"a.secret\"\nother_file = \"b.secret\"\n\
             tls_cert = \"a.secret\"\n",
        )
        .unwrap();
        let found: Vec<(String, String)> = placeholders(&config)
            .into_iter()
            .map(|p| (p.key, p.reason))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "auth.principals[1].allow".to_string(),
                    "still to fill: group".to_string()
                ),
                (
                    "auth.principals[1].name".to_string(),
                    "still to fill: who".to_string()
                ),
                (
                    "providers.x.secret_file".to_string(),
                    "a.secret still holds a placeholder: the secret".to_string()
                ),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn placeholder_text_is_the_description() {
        assert_eq!(
            placeholder_text("<FILL: a thing, e.g. <x>>\nmore"),
            "a thing, e.g. <x>"
        );
        assert_eq!(placeholder_text("<FILL: open"), "open");
    }
}
