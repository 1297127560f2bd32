//! The configuration loader: TOML text to validated settings, as `pfgate serve --config` and
//! `pfgate check-config` run it. Bad text must end in `ConfigErrors` that print, never a panic.
//! (The file is read from disk in `config::load`; this target starts from its text.)
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pfgate::config::{validate, FileConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    // A directory that does not exist: relative paths in the text resolve under it, so the
    // fuzzer does not read the working directory's files.
    match validate(Path::new("/nonexistent/pfgate-fuzz/pfgate.toml"), file) {
        Ok(settings) => {
            let _ = format!("{settings:?}");
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
