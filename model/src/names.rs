//! What a resource id and a list of sites may look like, shared by the node
//! (which refuses bad ones) and the client (which refuses them before
//! sending anything).

/// Why `id` cannot be a resource id, or `Ok`.
///
/// Only RFC 3986 unreserved characters are allowed, which no URL escaping
/// ever touches, so the id the caller typed is the id stored; ids CouchDB
/// reserves (`_design`, `_all_docs`, …) and the dot segments URL libraries
/// rewrite are refused.
pub fn check_resource_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the resource id is empty".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(format!(
            "resource id {id:?} is not URL-safe ({c:?} is not allowed): \
             use only letters, digits, '-', '.', '_' and '~'"
        ));
    }
    if id.starts_with('_') {
        return Err(format!(
            "resource id {id:?} must not start with '_': CouchDB reserves such ids"
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("resource id {id:?} is not allowed"));
    }
    Ok(())
}

/// `a & b&&c & a` → `[a, b, c]`: names are separated by `&`, surrounding
/// spaces are ignored, empty names and repeats dropped.
pub fn split_sites(value: &str) -> Vec<String> {
    let mut sites: Vec<String> = Vec::new();
    for site in value.split('&').map(str::trim).filter(|s| !s.is_empty()) {
        if !sites.iter().any(|s| s == site) {
            sites.push(site.to_owned());
        }
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_ids_are_accepted() {
        for id in ["a", "my-deployment", "v1.2_x~y", "A9"] {
            check_resource_id(id).unwrap();
        }
    }

    #[test]
    fn ids_that_escaping_would_change_or_couchdb_reserves_are_refused() {
        for id in [
            "",
            "a%2Fb",
            "a%41",
            "a b",
            "a/b",
            "é",
            "a+b",
            "_design",
            "_all_docs",
            ".",
            "..",
        ] {
            assert!(check_resource_id(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn sites_are_split_on_ampersands_trimmed_and_deduplicated() {
        assert_eq!(split_sites(" a & b&&c & a"), ["a", "b", "c"]);
        assert!(split_sites(" & ").is_empty());
    }
}
