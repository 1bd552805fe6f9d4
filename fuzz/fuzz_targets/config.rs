//! agent.toml is operator input: any text gives a config or a one-line error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = gallra::config::Config::parse(text, std::path::Path::new("/fuzz/agent.toml")) {
        assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    }
});
