//! Numbers and text as people read them, in tables, reports and messages.

/// "512 B", "1.5 MiB", "2.0 GiB".
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", units[u]),
    }
}

/// "1 day", "30 days": a period of whole days, as a bucket rule or a lock
/// states it.
pub fn days(n: u32) -> String {
    match n {
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

/// "45s", "12m 5s", "3h 20m", "2d 4h": an age read at a glance.
pub fn human_age(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// The first `digits` characters of a hex id (all of it if shorter).
pub fn short_hex(hex: &str, digits: usize) -> &str {
    hex.get(..digits).unwrap_or(hex)
}

/// Text that a tenant controls (file names, symlink targets, messages that
/// quote them) made safe for a terminal and for tools that read our output
/// line by line: control characters (C0, DEL, C1), and the Unicode ones
/// that reorder or hide text, become visible escapes (`\n`, `\x1b`,
/// `\u{202e}`), and a backslash is doubled so that an escape in a name
/// cannot pass for one of ours. Plain text comes back borrowed. JSON
/// output never goes through this: it keeps names exact.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    }
    if !text.chars().any(|c| c == '\\' || hidden(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && hidden(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Text made safe for one Markdown table cell.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Text made safe inside HTML elements and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_ages_and_escapes_read_as_meant() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
        let age = |s| human_age(jiff::SignedDuration::from_secs(s));
        assert_eq!(age(45), "45s");
        assert_eq!(age(12 * 60 + 5), "12m 5s");
        assert_eq!(age(3 * 3600 + 20 * 60), "3h 20m");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(age(-5), "0s");
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
        assert_eq!(
            html_escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn control_characters_in_names_cannot_forge_lines_or_reach_the_terminal() {
        assert!(matches!(
            escape_control("plain/name.txt"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_control("evil\n-0644 /etc/shadow"),
            "evil\\n-0644 /etc/shadow"
        );
        assert_eq!(
            escape_control("a\x1b[2J\x07\x7f\r\tb"),
            "a\\x1b[2J\\x07\\x7f\\r\\tb"
        );
        assert_eq!(escape_control("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape_control("txt.\u{202e}exe"), "txt.\\u{202e}exe");
        // A name that spells an escape stays distinguishable from one.
        assert_eq!(escape_control("a\\nb"), "a\\\\nb");
        assert_eq!(escape_control("åäö ✓"), "åäö ✓");
    }
}
