//! The hash that decides which configuration wins a merge.
//!
//! Sites must agree on the winner without talking to each other, so the port
//! hashes exactly the bytes the original hashed: BLAKE2b-256 of the config as
//! Go's `json.Encoder` writes it (compact, HTML-escaped, trailing newline).

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use cheops_model::ResourceConfig;

/// BLAKE2b-256 of the config's Go JSON encoding; compared byte-wise.
pub fn config_hash(config: &ResourceConfig) -> [u8; 32] {
    Blake2b::<U32>::digest(go_encode(config)).into()
}

/// `{"ResolutionMatrix":[{"Before":..,"After":..,"Result":..}]}` plus a
/// newline, with `null` for an empty matrix.
fn go_encode(config: &ResourceConfig) -> Vec<u8> {
    let mut out = String::from("{\"ResolutionMatrix\":");
    if config.resolution_matrix.is_empty() {
        out.push_str("null");
    } else {
        out.push('[');
        for (i, entry) in config.resolution_matrix.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"Before\":");
            push_go_string(&mut out, &entry.before);
            out.push_str(",\"After\":");
            push_go_string(&mut out, &entry.after);
            out.push_str(",\"Result\":");
            push_go_string(&mut out, entry.result.as_str());
            out.push('}');
        }
        out.push(']');
    }
    out.push_str("}\n");
    out.into_bytes()
}

/// A JSON string as Go's encoder writes it with HTML escaping on (Go 1.22+):
/// `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`, control characters as short
/// escapes where JSON has one and `\u00xx` otherwise.
fn push_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::{Resolution, ResolutionResult};

    #[test]
    fn encodes_like_go() {
        let config = ResourceConfig {
            resolution_matrix: vec![Resolution {
                before: "a<b>&\"c\"\n\u{1}".into(),
                after: "é\u{2028}".into(),
                result: ResolutionResult::TakeOne,
            }],
        };
        assert_eq!(
            String::from_utf8(go_encode(&config)).unwrap(),
            "{\"ResolutionMatrix\":[{\"Before\":\"a\\u003cb\\u003e\\u0026\\\"c\\\"\\n\\u0001\",\
             \"After\":\"é\\u2028\",\"Result\":\"take-one\"}]}\n"
        );
        assert_eq!(
            go_encode(&ResourceConfig::default()),
            b"{\"ResolutionMatrix\":null}\n"
        );
    }

    #[test]
    fn hash_is_blake2b_256() {
        // b2sum -l 256 of the line {"ResolutionMatrix":null}
        let hex: String = config_hash(&ResourceConfig::default())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, EMPTY_CONFIG_HASH);
    }

    const EMPTY_CONFIG_HASH: &str =
        "c80168ca9da62a72337958f422b39473e4b8d89d5db18a156049f7300bbc9919";
}
