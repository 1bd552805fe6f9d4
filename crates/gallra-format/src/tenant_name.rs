//! Tenant names: which strings may name a tenant, and the one mapping
//! between a name and its path component on a store (`tenants/<component>`,
//! docs/FORMAT.md section 12).
//!
//! The component is the name with every byte outside a safe ASCII set
//! written as `%XX`. The set is exactly the bytes object_store 0.14 leaves
//! alone in a path part, so the objects earlier versions wrote (through
//! object_store's own encoding) are found where they are, and every store
//! (a local file system, S3, Azure Blob, memory) holds only ASCII it takes
//! verbatim: no store's handling of `?`, `#`, UTF-8 or Unicode
//! normalisation can change a name. Plain names (letters, digits, `.`, `-`,
//! `_`) are their own component.

use std::borrow::Cow;

/// The longest name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 200;
/// The longest component: a file system's limit on one file name.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// The ASCII characters besides letters and digits a name may hold.
/// (`/`, `\`, `*` and `%` are not among them: a path separator, one that
/// Azure turns into `/`, a glob, and the escape character.)
const ASCII_PUNCTUATION: &str = " !\"#$&'()+,-.:;<=>?@[]^_`{|}~";

/// Whether object_store would percent-encode this byte in a path part
/// (its `INVALID` set), or it is not ASCII.
fn escaped(b: u8) -> bool {
    !(0x20..0x7f).contains(&b) || b"/\\{^}%`]\">[~<#|*?".contains(&b)
}

/// The path component a tenant's objects live under.
pub fn component(name: &str) -> Cow<'_, str> {
    // object_store's rule for the two names a file system reserves.
    match name {
        "." => return Cow::Borrowed("%2E"),
        ".." => return Cow::Borrowed("%2E%2E"),
        _ => {}
    }
    if !name.bytes().any(escaped) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if escaped(b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    Cow::Owned(out)
}

/// The tenant name whose component this is, or `None` if gallra never
/// writes this component (bad or lowercase escapes, an escape of a byte
/// that needs none, a byte that needs one, not UTF-8): the inverse of
/// [`component`], so that one name has one component and back.
pub fn from_component(component_text: &str) -> Option<String> {
    let bytes = component_text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            };
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (component(&name) == component_text).then_some(name)
}

/// Folders a `{tenant}` pattern passes over without a word of failure:
/// a file system's `lost+found`, and hidden folders (`.well-known`,
/// `.snapshot`, `.zfs`, `.Trash-1000`), which are never a customer's.
pub fn is_system_folder(name: &str) -> bool {
    name == "lost+found" || name.starts_with('.')
}

/// The name in Unicode NFC, the form keyboards and most systems write:
/// a folder name in NFD (as macOS writes `å`: `a` and a combining ring)
/// is then the same tenant, not a second one.
pub fn nfc(name: &str) -> Cow<'_, str> {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(name)
}

/// Whether `name` may name a tenant; the reason names the name and the
/// rule it breaks.
pub fn check(name: &str) -> Result<(), String> {
    let refuse = |why: String| Err(format!("tenant name {name:?} is not usable: {why}"));
    if name.is_empty() {
        return refuse("it is empty".into());
    }
    if name.starts_with('.') {
        return refuse("it starts with '.'".into());
    }
    if name == "lost+found" {
        return refuse("it is a file system's folder, not a customer's".into());
    }
    if nfc(name) != name {
        return refuse(format!(
            "it is not in Unicode NFC; write it as {:?}",
            nfc(name)
        ));
    }
    for c in name.chars() {
        let ok = if c.is_ascii() {
            c.is_ascii_alphanumeric() || ASCII_PUNCTUATION.contains(c)
        } else {
            // Letters and digits of any script. Not other symbols, spaces,
            // or invisible format characters (U+202E turns text around):
            // two tenants must never look alike in a listing or an audit.
            c.is_alphanumeric()
        };
        if !ok {
            let shown = if c.is_ascii_graphic() {
                format!("'{c}'")
            } else {
                format!("U+{:04X}", u32::from(c))
            };
            return refuse(format!(
                "it holds {shown}; a tenant name holds letters and digits of any script, spaces and ASCII punctuation except '/', '\\', '*' and '%'"
            ));
        }
    }
    if name.len() > MAX_NAME_BYTES {
        return refuse(format!(
            "it is {} bytes of UTF-8, more than {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    let on_store = component(name).len();
    if on_store > MAX_COMPONENT_BYTES {
        return refuse(format!(
            "its store folder name is {on_store} bytes (each non-ASCII byte takes 3), more than {MAX_COMPONENT_BYTES}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::{Path as ObjPath, PathPart};
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_their_own_component_and_others_are_escaped() {
        for plain in ["acme", "example.com", "web_01", "a-b", "Kund42"] {
            assert_eq!(component(plain), plain);
        }
        assert_eq!(component("kundå"), "kund%C3%A5");
        assert_eq!(component("åkeri.se"), "%C3%A5keri.se");
        assert_eq!(component("a?b"), "a%3Fb");
        assert_eq!(component("c#d"), "c%23d");
        assert_eq!(component("a b+c"), "a b+c");
        assert_eq!(from_component("kund%C3%A5").as_deref(), Some("kundå"));
        for never_written in ["kund%c3%a5", "a%41", "a%", "a%4", "%FF", "a?b", "%2e"] {
            assert_eq!(from_component(never_written), None, "{never_written}");
        }
    }

    #[test]
    fn the_rule_says_what_is_wrong() {
        for good in [
            "acme",
            "kundå",
            "åkeri.se",
            "a?b",
            "c#d",
            "Ærø",
            "東京",
            "x y",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        let bad = |name: &str, says: &str| {
            let e = check(name).unwrap_err();
            assert!(e.contains(says) && e.contains("tenant name"), "{name}: {e}");
        };
        bad("", "empty");
        bad(".hidden", "'.'");
        bad("lost+found", "file system");
        bad("a/b", "'/'");
        bad("a*", "'*'");
        bad("50%", "'%'");
        bad("tab\there", "U+0009");
        bad("rtl\u{202E}fdp.exe", "U+202E");
        bad("zero\u{200B}width", "U+200B");
        bad("nbsp\u{A0}x", "U+00A0");
        bad("kunda\u{30A}", "NFC");
        bad(&"a".repeat(201), "201 bytes");
        bad(&"å".repeat(43), "258 bytes");
        assert_eq!(check(&"å".repeat(42)), Ok(()));
        assert_eq!(nfc("kunda\u{30A}"), "kundå");
    }

    #[test]
    fn names_the_config_accepts() {
        assert!(check("acme").is_ok());
        assert!(check("example.com").is_ok());
        assert!(check("..").is_err());
        assert!(check("a/b").is_err());
        assert!(check("").is_err());
    }

    /// Characters a strategy draws names from: ASCII, Swedish and other
    /// letters, and some that are escaped or refused.
    fn name_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => proptest::char::range(' ', '~'),
            2 => proptest::sample::select(vec!['å', 'ä', 'ö', 'Å', 'Ä', 'Ö', 'é', 'ß', 'ø', 'ж', '東', '٣']),
            1 => any::<char>(),
        ]
    }

    proptest! {
        #[test]
        fn every_name_maps_to_one_component_and_back(
            chars in proptest::collection::vec(name_char(), 1..40)
        ) {
            let name: String = chars.into_iter().collect();
            let c = component(&name);
            let back = from_component(&c);
            prop_assert_eq!(back.as_deref(), Some(name.as_str()));
            // What object_store 0.14 made of the name, so that what it
            // wrote is found; and it takes the component verbatim in a path.
            let by_object_store = PathPart::from(name.as_str());
            prop_assert_eq!(by_object_store.as_ref(), c.as_ref());
            let path = format!("tenants/{c}/key");
            let parsed = ObjPath::parse(&path).unwrap();
            prop_assert_eq!(parsed.as_ref(), path.as_str());
            prop_assert!(c.is_ascii());
            // "." and ".." are the two names a file system reserves: escaped
            // although every byte of them is plain.
            let reserved = name == "." || name == "..";
            if !reserved && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                prop_assert_eq!(c.as_ref(), name.as_str());
            }
        }

        #[test]
        fn a_component_names_at_most_one_tenant(text in "[a-zA-Z0-9%?#åC3A5.]{0,12}") {
            if let Some(name) = from_component(&text) {
                let back = component(&name);
                prop_assert_eq!(back.as_ref(), text.as_str());
            }
        }

        #[test]
        fn an_accepted_name_is_in_nfc_and_fits_on_every_store(
            chars in proptest::collection::vec(name_char(), 1..120)
        ) {
            let name: String = chars.into_iter().collect();
            if check(&name).is_ok() {
                let normal = nfc(&name);
                prop_assert_eq!(normal.as_ref(), name.as_str());
                prop_assert!(component(&name).len() <= MAX_COMPONENT_BYTES);
                prop_assert!(!name.contains(['/', '\\', '*', '%']));
            }
        }
    }
}
