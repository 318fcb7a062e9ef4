//! `cheops http`'s request items, as httpie writes them: `field=value`,
//! `field:=json`, `name==value`, `Header:value` and `@file`.

use serde_json::{Map, Value};

/// A request built from items.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Built {
    /// The path with the query parameters added.
    pub path: String,
    pub headers: Vec<String>,
    pub body: Option<Vec<u8>>,
}

/// Builds the request of `path` and `items`; `read` reads an `@file`.
pub(crate) fn build(
    path: &str,
    items: &[String],
    read: impl Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<Built, String> {
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} must start with /"));
    }
    let mut built = Built {
        path: path.to_owned(),
        ..Built::default()
    };
    let mut fields = Map::new();
    let mut query = Vec::new();
    for item in items {
        if let Some(file) = item.strip_prefix('@') {
            if built.body.is_some() {
                return Err("two bodies: give one @file".into());
            }
            built.body = Some(read(file)?);
            continue;
        }
        // The first separator from the left, the longer one where two start
        // at the same place.
        let found = [":=", "==", "=", ":"]
            .iter()
            .filter_map(|sep| item.find(sep).map(|at| (at, *sep)))
            .min_by_key(|(at, sep)| (*at, std::cmp::Reverse(sep.len())));
        let Some((at, sep)) = found.filter(|(at, _)| *at > 0) else {
            return Err(format!(
                "{item:?} is no request item: field=value, field:=json, name==value, Header:value or @file"
            ));
        };
        let (name, value) = (&item[..at], &item[at + sep.len()..]);
        match sep {
            ":=" => {
                let json: Value = serde_json::from_str(value)
                    .map_err(|e| format!("{item:?}: not JSON after := ({e})"))?;
                fields.insert(name.to_owned(), json);
            }
            "==" => query.push(format!("{}={}", encode(name), encode(value))),
            "=" => {
                fields.insert(name.to_owned(), Value::String(value.to_owned()));
            }
            _ => built
                .headers
                .push(format!("{name}: {}", value.trim_start())),
        }
    }
    if !fields.is_empty() {
        if built.body.is_some() {
            return Err("a body from @file, and fields: give one or the other".into());
        }
        built.body = Some(Value::Object(fields).to_string().into_bytes());
        let typed = built
            .headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"));
        if !typed {
            built.headers.push("Content-Type: application/json".into());
        }
    }
    if !query.is_empty() {
        let join = if built.path.contains('?') { '&' } else { '?' };
        built.path = format!("{}{join}{}", built.path, query.join("&"));
    }
    Ok(built)
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn no_file(_: &str) -> Result<Vec<u8>, String> {
        Err("no file".into())
    }

    #[test]
    fn fields_become_a_json_body_and_headers_headers() {
        let built = build(
            "/api/items",
            &items(&[
                "sku=A-42",
                "qty:=2",
                "tags:=[\"x\"]",
                "X-Trace:abc",
                "q==a b",
            ]),
            no_file,
        )
        .unwrap();
        assert_eq!(built.path, "/api/items?q=a%20b");
        assert_eq!(
            built.headers,
            ["X-Trace: abc", "Content-Type: application/json"]
        );
        let body: Value = serde_json::from_slice(&built.body.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"sku": "A-42", "qty": 2, "tags": ["x"]})
        );
    }

    #[test]
    fn a_file_is_the_body_and_bad_items_are_refused() {
        let built = build(
            "/p",
            &items(&["@page.html", "Content-Type:text/html"]),
            |name| Ok(format!("<{name}>").into_bytes()),
        )
        .unwrap();
        assert_eq!(built.body.unwrap(), b"<page.html>");
        assert_eq!(built.headers, ["Content-Type: text/html"]);
        for bad in [&["plain"][..], &["=x"], &["n:=nope"], &["@a", "f=1"]] {
            assert!(
                build("/p", &items(bad), |_| Ok(Vec::new())).is_err(),
                "{bad:?}"
            );
        }
        assert!(build("p", &[], no_file).is_err());
    }
}
