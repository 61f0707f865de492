//! Text into markup, in one place: the admin XML answers, the XSPF playlist and the listener page
//! all escape through [`xml`] (its rules are valid for HTML too). JSON has its one place as well:
//! every JSON document is built with serde_json, which escapes strings itself.
//!
//! What reaches markup comes from outside: titles (cleaned already, see `title::clean_title`), but
//! also user agents, the `Host` header and operator settings. XML 1.0 has no way to carry C0
//! control characters (not even as `&#1;`), so a single one makes the whole document unparsable
//! for the panels that read it; they are dropped here.

use std::borrow::Cow;

/// Escapes `s` for XML (and HTML) element content and attribute values. Characters XML 1.0
/// cannot hold (C0 controls other than tab, LF and CR; U+FFFE, U+FFFF) are dropped; tab, LF and
/// CR are written as character references so attribute-value normalisation keeps them.
pub fn xml(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_work) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if not_xml(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_work(c: char) -> bool {
    matches!(c, '&' | '<' | '>' | '"' | '\'' | '\t' | '\n' | '\r') || not_xml(c)
}

/// Not a `Char` of XML 1.0 (§2.2). Surrogates cannot occur in a Rust `str`.
fn not_xml(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            xml("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert!(matches!(xml("Zoë - Café"), Cow::Borrowed(_)));
    }

    #[test]
    fn characters_xml_cannot_hold_are_dropped() {
        assert_eq!(xml("a\u{0}b\u{1}c\u{1f}d\u{FFFE}\u{FFFF}e"), "abcde");
        assert_eq!(xml("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
        // DEL and C1 are XML 1.0 characters: kept.
        assert_eq!(xml("\u{7f}\u{85}"), "\u{7f}\u{85}");
    }

    #[test]
    fn every_output_parses_as_strict_xml() {
        let nasty: String = (0u32..0x100)
            .chain([0xFFFE, 0xFFFF, 0x2019])
            .filter_map(char::from_u32)
            .collect();
        let doc = format!("<r a=\"{0}\">{0}</r>", xml(&nasty));
        let parsed = roxmltree::Document::parse(&doc).expect("valid XML");
        let root = parsed.root_element();
        let keep = |c: &char| !not_xml(*c);
        let expected: String = nasty.chars().filter(keep).collect();
        assert_eq!(root.text(), Some(expected.as_str()));
        assert_eq!(root.attribute("a"), Some(expected.as_str()));
    }
}
