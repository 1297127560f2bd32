//! The architecture rules of issue #20 as a test: the house is done when these pass.
//!
//! Each rule is one `#[test]` over the crate's own `src/` and fails with every violation listed
//! (`file:line name …`), so the message is the to-do list. The rules are read from the tokens, not
//! the text: a small lexer below skips comments, strings, raw strings, char literals and
//! lifetimes, and items under `#[cfg(test)]` are dropped before any rule looks (a unit test may
//! use the mock or be long; the production path may not). No parser dependency: the rules need
//! only tokens, brace matching and `use` paths, and a lexer is fast (the whole tree in well under
//! a second).
//!
//! The checker is a set of functions over a directory, so the fixture tests at the end feed it
//! small synthetic trees: each rule is shown to pass on a clean tree and to catch what it is
//! meant to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// The rules, applied to this crate's src/.
// ---------------------------------------------------------------------------------------------

/// Functions may not be longer than this (issue #20: "no god functions").
const MAX_FN_LINES: usize = 150;
/// Files exempt from the length rule: generated code and a test suite (paths relative to src/).
const LENGTH_EXEMPT: &[&str] = &["pfwssdk/generated.rs", "store/suite.rs"];
/// `lib.rs` exposes a curated surface, not every module.
const MAX_PUB_MODS: usize = 10;
/// The top-level modules a production request passes through; none of them may import `mock`.
const PRODUCTION_PATH: &[&str] = &[
    "net",
    "gateway",
    "server",
    "engine",
    "store",
    "providers",
    "config",
    "core",
    "telemetry",
];

/// This crate's src/, lexed once for all the rules (libtest runs them in one process).
fn crate_tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        Tree::load(&src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()))
    })
}

/// Fails with `what` and the violations, one a line, unless there are none.
fn assert_none(what: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{what}:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn no_function_over_150_lines() {
    let v = long_functions(crate_tree(), MAX_FN_LINES, LENGTH_EXEMPT);
    assert_none(
        &format!(
            "{} function(s) over 150 lines (file:line name length)",
            v.len()
        ),
        &v,
    );
}

#[test]
fn lib_exports_at_most_ten_modules() {
    let v = too_many_pub_mods(crate_tree(), MAX_PUB_MODS);
    assert_none("src/lib.rs exports more than ten `pub mod`s", &v);
}

#[test]
fn top_level_modules_form_no_cycle() {
    let v = module_cycles(crate_tree());
    assert_none(
        "cycles between top-level modules (edge: first reference)",
        &v,
    );
}

#[test]
fn production_path_never_imports_mock() {
    let v = mock_imports(crate_tree(), PRODUCTION_PATH);
    assert_none(
        &format!(
            "{} reference(s) to crate::mock on the production path",
            v.len()
        ),
        &v,
    );
}

#[test]
fn exactly_one_accept_loop() {
    let v = accept_calls(crate_tree());
    assert_none("not exactly one `.accept()` on a listener in src/", &v);
}

#[test]
fn no_outcome_carried_as_a_string() {
    let v = stringly_outcomes(crate_tree());
    assert_none(&format!("{} outcome(s) carried as strings", v.len()), &v);
}

// ---------------------------------------------------------------------------------------------
// Lexer: just enough of Rust's token grammar to never mistake text for code.
// ---------------------------------------------------------------------------------------------

/// One token; literals other than strings keep no value (no rule needs one).
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier or keyword (`r#` stripped from raw identifiers).
    Ident(String),
    /// One punctuation character (`::` is two `:`).
    Punct(char),
    /// A string literal of any kind, its contents as written (escapes not processed).
    Str(String),
    /// A char, byte or number literal.
    Lit,
    /// A lifetime or loop label.
    Lifetime,
}

/// A token and the 1-based line it starts on.
#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The lexer's cursor over one file.
struct Lexer {
    s: Vec<char>,
    i: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn peek(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    /// Advances one char, counting lines.
    fn bump(&mut self) {
        if self.peek(0) == Some('\n') {
            self.line += 1;
        }
        self.i += 1;
    }

    fn push(&mut self, tok: Tok, line: usize) {
        self.out.push(Token { tok, line });
    }

    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// `/* … */`, nested as Rust nests them.
    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == '/' && self.peek(1) == Some('*') {
                depth += 1;
                self.bump();
            } else if c == '*' && self.peek(1) == Some('/') {
                depth -= 1;
                self.bump();
                if depth == 0 {
                    self.bump();
                    return;
                }
            }
            self.bump();
        }
    }

    /// A cooked string from its opening quote; backslash escapes the next char.
    fn string(&mut self, line: usize) {
        self.bump();
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            self.bump();
            match c {
                '"' => break,
                '\\' => {
                    text.push(c);
                    if let Some(n) = self.peek(0) {
                        text.push(n);
                        self.bump();
                    }
                }
                _ => text.push(c),
            }
        }
        self.push(Tok::Str(text), line);
    }

    /// A raw string from its first `#` or quote: ends at a quote followed by as many `#`.
    fn raw_string(&mut self, line: usize) {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            hashes += 1;
            self.bump();
        }
        self.bump(); // the opening quote
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            if c == '"' && (1..=hashes).all(|k| self.peek(k) == Some('#')) {
                for _ in 0..=hashes {
                    self.bump();
                }
                break;
            }
            text.push(c);
            self.bump();
        }
        self.push(Tok::Str(text), line);
    }

    /// From a `'`: a char literal (`'a'`, `'\n'`, `'\u{1F980}'`) or a lifetime/label (`'a`).
    fn quote(&mut self, line: usize) {
        match (self.peek(1), self.peek(2)) {
            (Some('\\'), _) => {
                self.bump();
                self.bump();
                self.bump(); // the escaped char: `'\''` ends at the next quote
                while self.peek(0).is_some_and(|c| c != '\'') {
                    self.bump();
                }
                self.bump();
                self.push(Tok::Lit, line);
            }
            (Some(_), Some('\'')) => {
                for _ in 0..3 {
                    self.bump();
                }
                self.push(Tok::Lit, line);
            }
            (Some(c), _) if is_ident_start(c) => {
                self.bump();
                while self.peek(0).is_some_and(is_ident_char) {
                    self.bump();
                }
                self.push(Tok::Lifetime, line);
            }
            _ => {
                self.bump();
                self.push(Tok::Punct('\''), line);
            }
        }
    }

    /// An identifier, or the prefix of a byte/C/raw string, byte char or raw identifier.
    fn word(&mut self, line: usize) {
        let start = self.i;
        while self.peek(0).is_some_and(is_ident_char) {
            self.bump();
        }
        let word: String = self.s[start..self.i].iter().collect();
        let next = self.peek(0);
        let raw_open = next == Some('"') || (next == Some('#') && self.raw_quote_follows());
        match word.as_str() {
            "b" | "c" if next == Some('"') => self.string(line),
            "b" if next == Some('\'') => self.quote(line),
            "r" | "br" | "cr" if raw_open => self.raw_string(line),
            "r" if next == Some('#') => {
                self.bump();
                let start = self.i;
                while self.peek(0).is_some_and(is_ident_char) {
                    self.bump();
                }
                let word = self.s[start..self.i].iter().collect();
                self.push(Tok::Ident(word), line);
            }
            _ => self.push(Tok::Ident(word), line),
        }
    }

    /// At a `#` after a raw-string prefix: do the hashes end in a quote?
    fn raw_quote_follows(&self) -> bool {
        let mut k = 0;
        while self.peek(k) == Some('#') {
            k += 1;
        }
        self.peek(k) == Some('"')
    }

    /// A number: digits, letters (suffixes, hex, exponents) and a `.` followed by a digit.
    fn number(&mut self, line: usize) {
        while let Some(c) = self.peek(0) {
            let fraction = c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit());
            if !(is_ident_char(c) || fraction) {
                break;
            }
            self.bump();
        }
        self.push(Tok::Lit, line);
    }
}

/// The tokens of `source`, comments dropped.
fn lex(source: &str) -> Vec<Token> {
    let mut lx = Lexer {
        s: source.chars().collect(),
        i: 0,
        line: 1,
        out: Vec::new(),
    };
    while let Some(c) = lx.peek(0) {
        let line = lx.line;
        match c {
            _ if c.is_whitespace() => lx.bump(),
            '/' if lx.peek(1) == Some('/') => lx.line_comment(),
            '/' if lx.peek(1) == Some('*') => lx.block_comment(),
            '"' => lx.string(line),
            '\'' => lx.quote(line),
            _ if c.is_ascii_digit() => lx.number(line),
            _ if is_ident_start(c) => lx.word(line),
            _ => {
                lx.bump();
                lx.push(Tok::Punct(c), line);
            }
        }
    }
    lx.out
}

// ---------------------------------------------------------------------------------------------
// Items under #[cfg(test)]: found from attributes and dropped.
// ---------------------------------------------------------------------------------------------

fn is_punct(t: Option<&Token>, c: char) -> bool {
    t.is_some_and(|t| t.tok == Tok::Punct(c))
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

/// The index of the bracket closing the one at `open` (or the end of the tokens).
fn matching(toks: &[Token], open: usize) -> usize {
    let (o, c) = match toks[open].tok {
        Tok::Punct('(') => ('(', ')'),
        Tok::Punct('[') => ('[', ']'),
        _ => ('{', '}'),
    };
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if t.tok == Tok::Punct(o) {
            depth += 1;
        } else if t.tok == Tok::Punct(c) {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    toks.len() - 1
}

/// Whether a `cfg` predicate holds only under test: `test`, an `all(…)` with such a part, or an
/// `any(…)` whose every part is such.
fn cfg_test_only(p: &[Token]) -> bool {
    match ident(p.first()) {
        Some("test") => p.len() == 1,
        Some(op @ ("all" | "any")) if is_punct(p.get(1), '(') => {
            let inner = &p[2..matching(p, 1)];
            let parts = split_commas(inner);
            if op == "all" {
                parts.iter().any(|q| cfg_test_only(q))
            } else {
                !parts.is_empty() && parts.iter().all(|q| cfg_test_only(q))
            }
        }
        _ => false,
    }
}

/// `toks` split at the commas outside brackets (empty parts dropped).
fn split_commas(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (k, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                parts.push(&toks[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts.retain(|p| !p.is_empty());
    parts
}

/// If an attribute starts at `k` (`#[…]` or `#![…]`): its end, whether it is inner, and whether it
/// is `cfg(<test only>)`.
fn attribute_at(toks: &[Token], k: usize) -> Option<(usize, bool, bool)> {
    if !is_punct(toks.get(k), '#') {
        return None;
    }
    let inner = is_punct(toks.get(k + 1), '!');
    let open = k + 1 + usize::from(inner);
    if !is_punct(toks.get(open), '[') {
        return None;
    }
    let close = matching(toks, open);
    let body = &toks[open + 1..close];
    let test = ident(body.first()) == Some("cfg")
        && is_punct(body.get(1), '(')
        && cfg_test_only(&body[2..body.len().saturating_sub(1)]);
    Some((close, inner, test))
}

/// The last token of the item starting at `k`: its first `;` or its first top-level `{…}` block;
/// for a field, variant or match arm (no item keyword first), also its `,`; never past the closing
/// bracket of the list it is in.
fn item_end(toks: &[Token], k: usize) -> usize {
    const ITEMS: &[&str] = &[
        "fn",
        "impl",
        "mod",
        "struct",
        "enum",
        "union",
        "use",
        "const",
        "static",
        "type",
        "trait",
        "macro_rules",
        "unsafe",
        "async",
        "extern",
        "let",
    ];
    let mut j = k;
    if ident(toks.get(j)) == Some("pub") {
        j += 1;
        if is_punct(toks.get(j), '(') {
            j = matching(toks, j) + 1;
        }
    }
    let is_item = ident(toks.get(j)).is_some_and(|w| ITEMS.contains(&w));
    while j < toks.len() {
        match toks[j].tok {
            Tok::Punct(';') => return j,
            Tok::Punct(',') if !is_item => return j,
            Tok::Punct('{') => return matching(toks, j),
            Tok::Punct('(' | '[') => j = matching(toks, j),
            Tok::Punct('}' | ')' | ']') => return j.saturating_sub(1),
            _ => {}
        }
        j += 1;
    }
    toks.len().saturating_sub(1)
}

/// What stripping `#[cfg(test)]` left of one file.
struct Stripped {
    tokens: Vec<Token>,
    /// The whole file is test-only (`#![cfg(test)]`).
    test_file: bool,
    /// Out-of-line test modules declared here: (name, `#[path]` if given).
    test_mods: Vec<(String, Option<String>)>,
}

/// Drops every item under a test-only `cfg` and notes the out-of-line test modules.
fn strip_test_items(toks: Vec<Token>) -> Stripped {
    let mut out = Stripped {
        tokens: Vec::with_capacity(toks.len()),
        test_file: false,
        test_mods: Vec::new(),
    };
    let mut k = 0;
    while k < toks.len() {
        let Some((close, inner, test)) = attribute_at(&toks, k) else {
            out.tokens.push(toks[k].clone());
            k += 1;
            continue;
        };
        if inner {
            out.test_file |= test;
            out.tokens.extend_from_slice(&toks[k..=close]);
            k = close + 1;
            continue;
        }
        // Gather this item's attributes; the item is dropped if any is test-only.
        let (start, mut j, mut any_test) = (k, close + 1, test);
        let mut path = path_attribute(&toks[k..=close]);
        while let Some((c, _, t)) = attribute_at(&toks, j) {
            any_test |= t;
            path = path.or(path_attribute(&toks[j..=c]));
            j = c + 1;
        }
        if !any_test {
            out.tokens.extend_from_slice(&toks[start..j]);
            k = j;
            continue;
        }
        let end = item_end(&toks, j);
        let item = &toks[j..=end];
        if let Some(m) = item.iter().position(|t| ident(Some(t)) == Some("mod")) {
            if let (Some(name), true) = (ident(item.get(m + 1)), is_punct(item.last(), ';')) {
                out.test_mods.push((name.to_string(), path));
            }
        }
        k = end + 1;
    }
    out
}

/// The file named by `#[path = "…"]`, if this attribute is one.
fn path_attribute(attr: &[Token]) -> Option<String> {
    let body: Vec<&Tok> = attr.iter().map(|t| &t.tok).collect();
    match body.as_slice() {
        [_, _, Tok::Ident(p), Tok::Punct('='), Tok::Str(s), _] if p == "path" => Some(s.clone()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The tree: every .rs file under a src/ directory, test items removed.
// ---------------------------------------------------------------------------------------------

/// One source file after stripping.
struct SourceFile {
    /// Path relative to src/, with `/` separators (`server/mod.rs`).
    rel: String,
    /// The module path within the crate (`["server"]` for `server/mod.rs`; empty for the roots).
    module: Vec<String>,
    tokens: Vec<Token>,
}

impl SourceFile {
    /// The top-level module this file belongs to (`None` for lib.rs and main.rs).
    fn top(&self) -> Option<&str> {
        self.module.first().map(String::as_str)
    }

    /// Whether this is a crate root (lib.rs or the binary's main.rs).
    fn is_root(&self) -> bool {
        self.rel == "lib.rs" || self.rel == "main.rs"
    }

    fn at(&self, t: &Token) -> String {
        format!("src/{}:{}", self.rel, t.line)
    }
}

/// A src/ directory, lexed.
struct Tree {
    files: Vec<SourceFile>,
    /// Top-level module names (from `src/<name>.rs` and `src/<name>/`).
    tops: BTreeSet<String>,
}

impl Tree {
    /// Reads and lexes every `.rs` file under `src`, leaving out out-of-line test modules' files.
    fn load(src: &Path) -> std::io::Result<Tree> {
        let mut paths = Vec::new();
        collect_rs(src, &mut paths)?;
        paths.sort();
        let mut files = Vec::new();
        let mut test_files = BTreeSet::new();
        for path in paths {
            let rel_path = path.strip_prefix(src).unwrap_or(&path);
            let rel = rel_path
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let stripped = strip_test_items(lex(&std::fs::read_to_string(&path)?));
            if stripped.test_file {
                test_files.insert(rel.clone());
            }
            for (name, explicit) in &stripped.test_mods {
                test_files.extend(test_module_files(&rel, name, explicit.as_deref()));
            }
            let module = module_path(&rel);
            files.push(SourceFile {
                rel,
                module,
                tokens: stripped.tokens,
            });
        }
        files.retain(|f| !test_files.contains(&f.rel));
        let tops = files
            .iter()
            .filter_map(|f| f.top().map(str::to_string))
            .collect();
        Ok(Tree { files, tops })
    }

    fn file(&self, rel: &str) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.rel == rel)
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `a/b/mod.rs` → `[a, b]`, `a/c.rs` → `[a, c]`, `lib.rs` → `[]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    let is_root = parts.is_empty() && (stem == "lib" || stem == "main");
    if stem != "mod" && !is_root {
        parts.push(stem.to_string());
    }
    parts
}

/// The candidate files (relative to src/) of out-of-line module `name` declared in `rel`.
fn test_module_files(rel: &str, name: &str, explicit: Option<&str>) -> Vec<String> {
    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    let join = |d: &str, f: &str| {
        if d.is_empty() {
            f.to_string()
        } else {
            format!("{d}/{f}")
        }
    };
    if let Some(p) = explicit {
        return vec![join(dir, p)];
    }
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let base = if matches!(file, "mod.rs" | "lib.rs" | "main.rs") {
        dir.to_string()
    } else {
        join(dir, file.trim_end_matches(".rs"))
    };
    vec![
        join(&base, &format!("{name}.rs")),
        join(&base, &format!("{name}/mod.rs")),
    ]
}

// ---------------------------------------------------------------------------------------------
// Rule a: function length.
// ---------------------------------------------------------------------------------------------

/// Every `fn` with a body longer than `max` lines (from the `fn` line to its closing brace), as
/// `file:line name length`; files in `exempt` (relative to src/) are skipped.
fn long_functions(tree: &Tree, max: usize, exempt: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in tree
        .files
        .iter()
        .filter(|f| !exempt.contains(&f.rel.as_str()))
    {
        let toks = &f.tokens;
        for k in 0..toks.len() {
            let (Some("fn"), Some(name)) = (ident(toks.get(k)), ident(toks.get(k + 1))) else {
                continue;
            };
            let Some(open) = body_start(toks, k + 2) else {
                continue;
            };
            let lines = toks[matching(toks, open)].line - toks[k].line + 1;
            if lines > max {
                out.push(format!("{} {name} {lines} lines", f.at(&toks[k])));
            }
        }
    }
    out
}

/// The `{` opening a function's body, scanning its signature from `k`; `None` for a declaration.
fn body_start(toks: &[Token], mut k: usize) -> Option<usize> {
    while k < toks.len() {
        match toks[k].tok {
            Tok::Punct('{') => return Some(k),
            Tok::Punct(';') => return None,
            Tok::Punct('(' | '[') => k = matching(toks, k),
            _ => {}
        }
        k += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Rule b: lib.rs's public modules.
// ---------------------------------------------------------------------------------------------

/// The `pub mod`s of lib.rs (at its top level), listed if there are more than `max`.
fn too_many_pub_mods(tree: &Tree, max: usize) -> Vec<String> {
    let Some(lib) = tree.file("lib.rs") else {
        return Vec::new();
    };
    let mut mods = Vec::new();
    let mut depth = 0usize;
    for (k, t) in lib.tokens.iter().enumerate() {
        match t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            Tok::Ident(ref s) if s == "pub" && depth == 0 => {
                let toks = &lib.tokens;
                if let (Some("mod"), Some(name)) = (ident(toks.get(k + 1)), ident(toks.get(k + 2)))
                {
                    mods.push(format!("{} pub mod {name}", lib.at(t)));
                }
            }
            _ => {}
        }
    }
    if mods.len() <= max {
        return Vec::new();
    }
    mods.insert(0, format!("{} `pub mod`s, at most {max}:", mods.len()));
    mods
}

// ---------------------------------------------------------------------------------------------
// References between top-level modules (rules c and d).
// ---------------------------------------------------------------------------------------------

/// One reference from a file to another top-level module.
struct Ref<'t> {
    file: &'t SourceFile,
    line: usize,
    from: String,
    to: String,
}

/// Every reference in a non-root file to a top-level module other than its own: `crate::x`,
/// `$crate::x`, `crate::{x, y::…}`, `super::…::x` climbing to the crate root, and `crate::Name`
/// where lib.rs re-exports `Name` from `x`.
fn references(tree: &Tree) -> Vec<Ref<'_>> {
    let reexports = tree
        .file("lib.rs")
        .map(|lib| reexports(lib, &tree.tops))
        .unwrap_or_default();
    let mut out = Vec::new();
    for f in tree.files.iter().filter(|f| !f.is_root()) {
        let Some(from) = f.top() else { continue };
        let toks = &f.tokens;
        let mut inline_mods = Vec::new(); // one flag per open `{`: was it `mod name {`?
        for k in 0..toks.len() {
            match toks[k].tok {
                Tok::Punct('{') => {
                    let is_mod = k >= 2 && ident(toks.get(k - 2)) == Some("mod");
                    inline_mods.push(is_mod);
                    continue;
                }
                Tok::Punct('}') => {
                    inline_mods.pop();
                    continue;
                }
                _ => {}
            }
            let depth = f.module.len() + inline_mods.iter().filter(|m| **m).count();
            let Some(after) = root_path_after(toks, k, depth) else {
                continue;
            };
            for name in first_segments(toks, after) {
                let to = if tree.tops.contains(&name) {
                    Some(name)
                } else {
                    reexports.get(&name).cloned()
                };
                if let Some(to) = to.filter(|to| to != from) {
                    out.push(Ref {
                        file: f,
                        line: toks[k].line,
                        from: from.to_string(),
                        to,
                    });
                }
            }
        }
    }
    out
}

/// If a path starting at `k` names the crate root (`crate::` or `super::` × `depth`): the index
/// of the token after the root's `::`.
fn root_path_after(toks: &[Token], k: usize, depth: usize) -> Option<usize> {
    let colons = |j: usize| is_punct(toks.get(j), ':') && is_punct(toks.get(j + 1), ':');
    match ident(toks.get(k))? {
        "crate" if colons(k + 1) => Some(k + 3),
        "super" if !(k >= 2 && colons(k - 2)) => {
            let mut j = k;
            let mut climbed = 0;
            while ident(toks.get(j)) == Some("super") && colons(j + 1) {
                climbed += 1;
                j += 3;
            }
            (climbed == depth && depth > 0).then_some(j)
        }
        _ => None,
    }
}

/// The first segment of the path at `k`, or of each path of a `{…}` group there.
fn first_segments(toks: &[Token], k: usize) -> Vec<String> {
    if is_punct(toks.get(k), '{') {
        let inner = &toks[k + 1..matching(toks, k)];
        return split_commas(inner)
            .into_iter()
            .filter_map(|p| ident(p.first()).map(str::to_string))
            .filter(|n| n != "self")
            .collect();
    }
    ident(toks.get(k)).map(str::to_string).into_iter().collect()
}

/// Names lib.rs brings into the crate root with `use` (re-exports), mapped to their module.
fn reexports(lib: &SourceFile, tops: &BTreeSet<String>) -> HashMap<String, String> {
    let toks = &lib.tokens;
    let mut map = HashMap::new();
    for (k, _) in toks
        .iter()
        .enumerate()
        .filter(|(_, t)| ident(Some(t)) == Some("use"))
    {
        let mut j = k + 1;
        while matches!(ident(toks.get(j)), Some("crate" | "self")) || is_punct(toks.get(j), ':') {
            j += 1;
        }
        let Some(module) = ident(toks.get(j)).filter(|m| tops.contains(*m)) else {
            continue;
        };
        let end = (j..toks.len())
            .find(|&e| is_punct(toks.get(e), ';'))
            .unwrap_or(toks.len());
        for e in j + 1..end {
            let leaf = matches!(
                toks.get(e + 1).map(|t| &t.tok),
                Some(Tok::Punct(',' | '}' | ';'))
            );
            if let (Some(name), true) = (ident(toks.get(e)), leaf) {
                if name != "self" {
                    map.insert(name.to_string(), module.to_string());
                }
            }
        }
    }
    map
}

// ---------------------------------------------------------------------------------------------
// Rule c: no cycle between top-level modules.
// ---------------------------------------------------------------------------------------------

/// Each cycle of the top-level module graph: per strongly connected component, one shortest cycle
/// through its first member, then every edge inside the component with its first reference (the
/// edges one could cut).
fn module_cycles(tree: &Tree) -> Vec<String> {
    let mut edges: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    for r in references(tree) {
        let at = format!("src/{}:{}", r.file.rel, r.line);
        edges.entry((r.from, r.to)).or_insert((at, 0)).1 += 1;
    }
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.as_str()).or_default().push(to.as_str());
        graph.entry(to.as_str()).or_default();
    }
    let mut out = Vec::new();
    for scc in strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
    {
        let cycle = shortest_cycle(&graph, &scc);
        out.push(format!("cycle: {}", cycle.join(" → ")));
        for ((from, to), (at, n)) in &edges {
            if scc.contains(&from.as_str()) && scc.contains(&to.as_str()) {
                out.push(format!("    {from} → {to}: {at} ({n} reference(s))"));
            }
        }
    }
    out
}

/// Tarjan's algorithm; components in discovery order, members sorted.
fn strongly_connected<'g>(graph: &BTreeMap<&'g str, Vec<&'g str>>) -> Vec<Vec<&'g str>> {
    struct State<'g> {
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(v: &'g str, g: &BTreeMap<&'g str, Vec<&'g str>>, s: &mut State<'g>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lv = s.low[v].min(s.low[w]);
                s.low.insert(v, lv);
            } else if s.on_stack.contains(w) {
                let lv = s.low[v].min(s.index[w]);
                s.low.insert(v, lv);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            comp.sort_unstable();
            s.out.push(comp);
        }
    }
    let mut s = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}

/// A shortest cycle through the first member of `scc`, staying inside it (breadth first).
fn shortest_cycle<'g>(graph: &BTreeMap<&'g str, Vec<&'g str>>, scc: &[&'g str]) -> Vec<&'g str> {
    let start = scc[0];
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in graph.get(v).into_iter().flatten() {
            if w == start {
                let (mut path, mut at) = (vec![v], v);
                while at != start {
                    at = parent[at];
                    path.push(at);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if scc.contains(&w) && !parent.contains_key(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    scc.to_vec()
}

// ---------------------------------------------------------------------------------------------
// Rules d, e, f.
// ---------------------------------------------------------------------------------------------

/// Every reference to `mock` from a file of the `production` top-level modules.
fn mock_imports(tree: &Tree, production: &[&str]) -> Vec<String> {
    references(tree)
        .into_iter()
        .filter(|r| r.to == "mock" && production.contains(&r.from.as_str()))
        .map(|r| format!("src/{}:{} {} → mock", r.file.rel, r.line, r.from))
        .collect()
}

/// Every `.accept()` (no arguments: a listener's, not an acceptor's), listed unless exactly one.
fn accept_calls(tree: &Tree) -> Vec<String> {
    let mut calls = Vec::new();
    for f in &tree.files {
        let t = &f.tokens;
        for k in 0..t.len() {
            if is_punct(t.get(k), '.')
                && ident(t.get(k + 1)) == Some("accept")
                && is_punct(t.get(k + 2), '(')
                && is_punct(t.get(k + 3), ')')
            {
                calls.push(format!("{} .accept()", f.at(&t[k])));
            }
        }
    }
    if calls.len() == 1 {
        return Vec::new();
    }
    calls.insert(
        0,
        format!("{} accept call(s), expected exactly one:", calls.len()),
    );
    calls
}

/// Every `Failed(String)` / `Unavailable(String)` (the type possibly path-qualified) and every
/// `starts_with("false")`.
fn stringly_outcomes(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for f in &tree.files {
        let t = &f.tokens;
        for k in 0..t.len() {
            let name = ident(t.get(k));
            if !is_punct(t.get(k + 1), '(') {
                continue;
            }
            if let Some(v @ ("Failed" | "Unavailable")) = name {
                let mut j = k + 2;
                while ident(t.get(j)).is_some() && is_punct(t.get(j + 1), ':') {
                    j += 3; // `std::string::` …
                }
                if ident(t.get(j)) == Some("String") && is_punct(t.get(j + 1), ')') {
                    out.push(format!("{} {v}(String)", f.at(&t[k])));
                }
            }
            let is_false =
                matches!(t.get(k + 2).map(|x| &x.tok), Some(Tok::Str(s)) if s == "false");
            if name == Some("starts_with") && is_false && is_punct(t.get(k + 3), ')') {
                out.push(format!("{} starts_with(\"false\")", f.at(&t[k])));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The checker's own tests, on synthetic trees.
// ---------------------------------------------------------------------------------------------

/// A src/ directory of `files` (path relative to src/, contents) in a fresh temp dir.
fn fixture(tag: &str, files: &[(&str, &str)]) -> Tree {
    let src = crate::cli::temp_dir(&format!("arch-{tag}")).join("src");
    for (rel, text) in files {
        let path = src.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let tree = Tree::load(&src).unwrap();
    std::fs::remove_dir_all(src.parent().unwrap()).unwrap();
    tree
}

/// A function `name` of `lines` lines from `fn` to its closing brace.
fn fn_of(name: &str, lines: usize) -> String {
    format!(
        "fn {name}() {{\n{}}}\n",
        "    let _x = 1;\n".repeat(lines - 2)
    )
}

/// A tree that follows every rule, with the traps the lexer must not fall into.
fn clean_files() -> Vec<(&'static str, String)> {
    let tricky = r####"
        //! fn not_code() { crate::mock::x(); listener.accept() }
        /* /* nested */ fn still_comment() { crate::mock } */
        const S: &str = "fn in_string() { crate::mock::x(); }"; // Failed(String)
        const R: &str = r#"a "quoted" { brace "#;
        const B: &[u8] = br##"raw "# bytes { "##;
        const C: char = '{';
        const Q: char = '\'';
        const E: char = '\u{7B}';
        const Y: u8 = b'}';
        fn lifetimes<'a>(x: &'a str) -> &'a str { 'outer: loop { break 'outer x; } }
        fn r#match() -> f64 { 1.0e3 + 0..1 .len() as f64 }
        pub(crate) fn ok() -> bool { "true".starts_with("false ") }
    "####;
    vec![
        (
            "lib.rs",
            "pub mod core;\npub mod engine;\npub mod gateway;\npub mod mock;\nmod net;\n\
             pub use engine::Engine;\n#[cfg(test)]\npub mod a;\npub(crate) mod tricky;"
                .to_string(),
        ),
        ("core.rs", "pub fn now() {}".to_string()),
        ("tricky.rs", tricky.to_string()),
        (
            "engine/mod.rs",
            "use crate::core::now;\npub struct Engine;\nmod family;".to_string(),
        ),
        (
            "engine/family.rs",
            "use super::super::core;\nenum V { Failed(Kind) }".to_string(),
        ),
        (
            "gateway/mod.rs",
            format!(
                "use crate::{{core, Engine}};\n{}\n\
                 #[cfg(test)]\nmod tests {{ use crate::mock; {} }}\n\
                 #[cfg(all(test, unix))] mod more;\n\
                 struct S {{ #[cfg(test)] probe: u8, x: u8 }}\nenum E {{ A, #[cfg(test)] B }}\n\
                 #[cfg(test)] impl<A, B> S {{ fn f() {{}} }}\nfn after_cfg_fields() {{}}",
                fn_of("at_the_limit", 150),
                fn_of("long_test", 400)
            ),
        ),
        (
            "gateway/more.rs",
            "use crate::mock::Mock; fn f() { l.accept(); l.accept(); }".to_string(),
        ),
        (
            "net/listener.rs",
            "async fn run() { let (s, _) = listener.accept().await; }".to_string(),
        ),
        (
            "mock/mod.rs",
            "use crate::gateway::Service;\nuse crate::engine::{self, Engine};\n\
             fn ntlm() { a.accept(token) }"
                .to_string(),
        ),
    ]
}

fn clean_tree(tag: &str) -> Tree {
    let files = clean_files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    fixture(tag, &refs)
}

/// `clean_files` with `rel` replaced (or added).
fn dirty_tree(tag: &str, rel: &str, text: &str) -> Tree {
    let mut files = clean_files();
    files.retain(|(p, _)| *p != rel);
    let mut refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    refs.push((rel, text));
    fixture(tag, &refs)
}

#[test]
fn checker_passes_a_clean_tree() {
    let t = clean_tree("clean");
    assert_eq!(
        long_functions(&t, MAX_FN_LINES, LENGTH_EXEMPT),
        Vec::<String>::new()
    );
    assert_eq!(too_many_pub_mods(&t, 4), Vec::<String>::new());
    assert_eq!(module_cycles(&t), Vec::<String>::new());
    assert_eq!(mock_imports(&t, PRODUCTION_PATH), Vec::<String>::new());
    assert_eq!(accept_calls(&t), Vec::<String>::new());
    assert_eq!(stringly_outcomes(&t), Vec::<String>::new());
    // The test-only out-of-line module's file was left out; the graph still saw the real edges.
    assert!(t.file("gateway/more.rs").is_none());
    let gateway = t.file("gateway/mod.rs").unwrap();
    let idents: Vec<&str> = gateway
        .tokens
        .iter()
        .filter_map(|t| ident(Some(t)))
        .collect();
    for gone in ["tests", "long_test", "more", "probe", "B", "impl"] {
        assert!(!idents.contains(&gone), "{gone} survived: {idents:?}");
    }
    for kept in ["at_the_limit", "x", "A", "after_cfg_fields"] {
        assert!(idents.contains(&kept), "{kept} lost: {idents:?}");
    }
    let refs = references(&t);
    let edges: BTreeSet<(&str, &str)> = refs.iter().map(|r| (&*r.from, &*r.to)).collect();
    let want = BTreeSet::from([
        ("engine", "core"),
        ("gateway", "core"),
        ("gateway", "engine"),
        ("mock", "engine"),
        ("mock", "gateway"),
    ]);
    assert_eq!(edges, want);
}

#[test]
fn lexer_skips_comments_strings_chars_and_lifetimes() {
    let toks = lex(&clean_files()[2].1);
    let idents: Vec<&str> = toks.iter().filter_map(|t| ident(Some(t))).collect();
    for hidden in [
        "not_code",
        "still_comment",
        "in_string",
        "quoted",
        "bytes",
        "mock",
    ] {
        assert!(
            !idents.contains(&hidden),
            "{hidden} leaked out of a comment or string: {idents:?}"
        );
    }
    assert!(idents.contains(&"lifetimes") && idents.contains(&"match") && idents.contains(&"ok"));
    let braces = |c| toks.iter().filter(|t| t.tok == Tok::Punct(c)).count();
    assert_eq!(braces('{'), braces('}'));
    assert_eq!(toks.iter().filter(|t| t.tok == Tok::Lifetime).count(), 5);
    let last = toks.last().unwrap();
    assert_eq!((last.line, &last.tok), (13, &Tok::Punct('}')));
}

#[test]
fn checker_finds_a_long_function() {
    let t = dirty_tree(
        "long",
        "engine/family.rs",
        &format!("\n{}", fn_of("god", 151)),
    );
    assert_eq!(
        long_functions(&t, MAX_FN_LINES, LENGTH_EXEMPT),
        ["src/engine/family.rs:2 god 151 lines"]
    );
    assert_eq!(
        long_functions(&t, MAX_FN_LINES, &["engine/family.rs"]),
        Vec::<String>::new()
    );
}

#[test]
fn checker_finds_too_many_pub_mods() {
    let t = clean_tree("pubmods");
    let v = too_many_pub_mods(&t, 3);
    assert_eq!(v.len(), 5, "{v:?}");
    assert_eq!(v[0], "4 `pub mod`s, at most 3:");
    assert_eq!(v[4], "src/lib.rs:4 pub mod mock");
}

#[test]
fn checker_finds_a_cycle() {
    let t = dirty_tree(
        "cycle",
        "core.rs",
        "mod inner { use super::super::gateway::X; }",
    );
    let v = module_cycles(&t);
    assert_eq!(v[0], "cycle: core → gateway → core", "{v:?}");
    assert!(
        v.contains(&"    core → gateway: src/core.rs:1 (1 reference(s))".to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&"    engine → core: src/engine/family.rs:1 (2 reference(s))".to_string()),
        "{v:?}"
    );
    assert_eq!(v.len(), 5, "{v:?}");
}

#[test]
fn checker_finds_a_mock_import_on_the_production_path() {
    let t = dirty_tree(
        "mock",
        "net/listener.rs",
        "fn f() { listener.accept(); }\nuse crate::{core, mock::Layer};",
    );
    assert_eq!(
        mock_imports(&t, PRODUCTION_PATH),
        ["src/net/listener.rs:2 net → mock"]
    );
}

#[test]
fn checker_counts_accept_loops() {
    let two = "fn f() { a.accept(); }\nfn g() { b.accept().await; }";
    let t = dirty_tree("accept2", "net/listener.rs", two);
    let v = accept_calls(&t);
    assert_eq!(
        v,
        [
            "2 accept call(s), expected exactly one:",
            "src/net/listener.rs:1 .accept()",
            "src/net/listener.rs:2 .accept()"
        ]
    );
    let t = dirty_tree("accept0", "net/listener.rs", "fn f() {}");
    assert_eq!(
        accept_calls(&t),
        ["0 accept call(s), expected exactly one:"]
    );
}

#[test]
fn checker_finds_outcomes_as_strings() {
    let text = "enum E { Failed(String), Unavailable(std::string::String) }\n\
                fn f(o: &str) -> bool { o.starts_with(\"false\") }";
    let t = dirty_tree("strings", "engine/family.rs", text);
    let v = stringly_outcomes(&t);
    let want = [
        "src/engine/family.rs:1 Failed(String)",
        "src/engine/family.rs:1 Unavailable(String)",
        "src/engine/family.rs:2 starts_with(\"false\")",
    ];
    assert_eq!(v, want);
}
