//! `cheops http`'s request items, as httpie writes them: `field=value`,
//! `field:=json`, `name==value`, `Header:value`, `@file` and
//! `field@file` (which makes the body a multipart form).

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
    // Every `field=value` and `field@file`, in order, for a multipart body.
    let mut parts: Vec<FormPart> = Vec::new();
    let mut json_fields = false;
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
        let found = [":=", "==", "=", ":", "@"]
            .iter()
            .filter_map(|sep| item.find(sep).map(|at| (at, *sep)))
            .min_by_key(|(at, sep)| (*at, std::cmp::Reverse(sep.len())));
        let Some((at, sep)) = found.filter(|(at, _)| *at > 0) else {
            return Err(format!(
                "{item:?} is no request item: field=value, field:=json, name==value, Header:value, @file or field@file"
            ));
        };
        let (name, value) = (&item[..at], &item[at + sep.len()..]);
        match sep {
            ":=" => {
                let json: Value = serde_json::from_str(value)
                    .map_err(|e| format!("{item:?}: not JSON after := ({e})"))?;
                fields.insert(name.to_owned(), json);
                json_fields = true;
            }
            "==" => query.push(format!("{}={}", encode(name), encode(value))),
            "=" => {
                fields.insert(name.to_owned(), Value::String(value.to_owned()));
                parts.push(FormPart {
                    name: name.to_owned(),
                    file_name: None,
                    content: value.as_bytes().to_vec(),
                });
            }
            "@" => parts.push(FormPart {
                name: name.to_owned(),
                file_name: Some(base_name(value)),
                content: read(value)?,
            }),
            _ => built
                .headers
                .push(format!("{name}: {}", value.trim_start())),
        }
    }
    if parts.iter().any(|p| p.file_name.is_some()) {
        if json_fields || built.body.is_some() {
            return Err(
                "a field@file makes the body a multipart form: it takes field=value and \
                 field@file items, no field:=json and no @file"
                    .into(),
            );
        }
        if has_content_type(&built.headers) {
            return Err("a field@file makes a multipart body, whose Content-Type (with its boundary) is set for you".into());
        }
        let (boundary, body) = multipart(&parts);
        built.body = Some(body);
        built.headers.push(format!(
            "Content-Type: multipart/form-data; boundary={boundary}"
        ));
    } else if !fields.is_empty() {
        if built.body.is_some() {
            return Err("a body from @file, and fields: give one or the other".into());
        }
        built.body = Some(Value::Object(fields).to_string().into_bytes());
        if !has_content_type(&built.headers) {
            built.headers.push("Content-Type: application/json".into());
        }
    }
    if !query.is_empty() {
        let join = if built.path.contains('?') { '&' } else { '?' };
        built.path = format!("{}{join}{}", built.path, query.join("&"));
    }
    Ok(built)
}

/// One part of a multipart body.
#[derive(Debug)]
struct FormPart {
    name: String,
    file_name: Option<String>,
    content: Vec<u8>,
}

fn has_content_type(headers: &[String]) -> bool {
    headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
}

/// The last component of a path, as the part's file name.
fn base_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

/// A `multipart/form-data` body of `parts` and its boundary: one found in
/// none of the parts.
fn multipart(parts: &[FormPart]) -> (String, Vec<u8>) {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new();
    let boundary = (0u64..)
        .map(|attempt| {
            let mut hasher = seed.build_hasher();
            hasher.write_u64(attempt);
            format!("cheops-{:016x}", hasher.finish())
        })
        .find(|boundary| {
            let needle = boundary.as_bytes();
            parts.iter().all(|p| {
                !p.content
                    .windows(needle.len())
                    .any(|window| window == needle)
            })
        })
        .unwrap_or_default();
    // Quotes and line breaks in names are escaped as browsers do.
    let quoted = |text: &str| {
        text.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            quoted(&part.name)
        );
        if let Some(file_name) = &part.file_name {
            disposition.push_str(&format!(
                "; filename=\"{}\"\r\nContent-Type: application/octet-stream",
                quoted(file_name)
            ));
        }
        body.extend_from_slice(format!("{disposition}\r\n\r\n").as_bytes());
        body.extend_from_slice(&part.content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (boundary, body)
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

    #[test]
    fn a_field_at_file_makes_a_multipart_form() {
        let built = build(
            "/upload",
            &items(&["title=My \"cv\"", "cv@docs/cv.pdf"]),
            |name| Ok(format!("%PDF {name}").into_bytes()),
        )
        .unwrap();
        let content_type = built.headers[0].clone();
        let boundary = content_type
            .strip_prefix("Content-Type: multipart/form-data; boundary=")
            .expect("a multipart content type");
        let body = String::from_utf8(built.body.unwrap()).unwrap();
        assert_eq!(
            body,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nMy \"cv\"\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n%PDF docs/cv.pdf\r\n--{boundary}--\r\n"
            )
        );
        // A field:=json, an @file body or a Content-Type of one's own cannot
        // go with a form; an address with @ after = stays a field.
        for bad in [
            &["f@a", "n:=1"][..],
            &["f@a", "@b"],
            &["f@a", "Content-Type:text/plain"],
        ] {
            assert!(
                build("/p", &items(bad), |_| Ok(Vec::new())).is_err(),
                "{bad:?}"
            );
        }
        let built = build("/p", &items(&["email=a@b.c"]), no_file).unwrap();
        assert_eq!(built.body.unwrap(), br#"{"email":"a@b.c"}"#);
    }

    #[test]
    fn the_boundary_is_in_no_part() {
        let parts = [FormPart {
            name: "f".into(),
            file_name: Some("f".into()),
            content: b"data".to_vec(),
        }];
        let (boundary, body) = multipart(&parts);
        assert!(boundary.starts_with("cheops-"));
        assert_eq!(
            body.windows(boundary.len())
                .filter(|w| *w == boundary.as_bytes())
                .count(),
            2
        );
    }
}
