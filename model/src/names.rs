//! What a resource id and a list of sites may look like, shared by the node
//! (which refuses bad ones) and the client (which refuses them before
//! sending anything).

use std::collections::HashSet;

/// The longest resource id accepted, in bytes: ids travel in URLs, name
/// CouchDB documents and appear in every reply, and a longer one is a
/// mistake or an attack.
pub const MAX_RESOURCE_ID_LEN: usize = 200;

/// The most sites one request may name. Every site of a resource gets a
/// replication, a liveness probe and a reply per operation; a resource on
/// more sites than this is beyond what one resource document is meant for.
pub const MAX_SITES: usize = 64;

/// The longest site name, as for a DNS name (RFC 1035: 253 characters in
/// all, 63 per dot-separated label).
pub const MAX_SITE_NAME_LEN: usize = 253;
const MAX_SITE_LABEL_LEN: usize = 63;

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
    // Checked first, and the id not echoed: it may be megabytes long.
    if id.len() > MAX_RESOURCE_ID_LEN {
        return Err(format!(
            "the resource id is {} bytes long; the limit is {MAX_RESOURCE_ID_LEN}",
            id.len()
        ));
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

/// Why `site` cannot be a site name, or `Ok`.
///
/// A site name is host-name-like: ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter or a digit, in dot-separated labels of 1 to 63
/// characters, 253 in all. Site names are put in URL templates
/// (`http://{site}:5984/cheops`): nothing in one can add a port, a user, a
/// path or a fragment to the URL, so `{site}` stays a plain host.
pub fn check_site_name(site: &str) -> Result<(), String> {
    if site.is_empty() {
        return Err("a site name is empty".into());
    }
    // Not echoed: it may be megabytes long.
    if site.len() > MAX_SITE_NAME_LEN {
        return Err(format!(
            "a site name is {} bytes long; the limit is {MAX_SITE_NAME_LEN}",
            site.len()
        ));
    }
    if let Some(c) = site
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "site name {site:?} holds {c:?}: use only letters, digits, '-', '_' and '.', \
             as in a host name"
        ));
    }
    if !site.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "site name {site:?} must start with a letter or a digit"
        ));
    }
    if site
        .split('.')
        .any(|label| label.is_empty() || label.len() > MAX_SITE_LABEL_LEN)
    {
        return Err(format!(
            "site name {site:?} has an empty label or one longer than \
             {MAX_SITE_LABEL_LEN} characters"
        ));
    }
    Ok(())
}

/// Sites gathered from one or more `a & b&&c` values: names separated by
/// `&`, surrounding spaces ignored, empty names and repeats dropped, each
/// name checked by [`check_site_name`], at most [`MAX_SITES`] in all.
///
/// Linear in the size of the values: a form naming a million sites is
/// refused at the first bad name or once past the limit, never compared
/// pairwise.
#[derive(Debug, Clone, Default)]
pub struct SiteList {
    sites: Vec<String>,
    seen: HashSet<String>,
}

impl SiteList {
    /// Adds the sites of `value`, after those added before.
    pub fn add(&mut self, value: &str) -> Result<(), String> {
        for site in value.split('&').map(str::trim).filter(|s| !s.is_empty()) {
            if self.seen.contains(site) {
                continue;
            }
            check_site_name(site)?;
            if self.sites.len() == MAX_SITES {
                return Err(format!(
                    "more than {MAX_SITES} sites are named; a resource has at most {MAX_SITES}"
                ));
            }
            self.seen.insert(site.to_owned());
            self.sites.push(site.to_owned());
        }
        Ok(())
    }

    /// The sites, in the order first named.
    pub fn into_vec(self) -> Vec<String> {
        self.sites
    }
}

/// `a & b&&c & a` → `[a, b, c]`, as [`SiteList`] reads it.
pub fn split_sites(value: &str) -> Result<Vec<String>, String> {
    let mut sites = SiteList::default();
    sites.add(value)?;
    Ok(sites.into_vec())
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
        assert_eq!(split_sites(" a & b&&c & a").unwrap(), ["a", "b", "c"]);
        assert!(split_sites(" & ").unwrap().is_empty());
    }

    #[test]
    fn host_like_site_names_are_accepted() {
        let longest = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        assert_eq!(longest.len(), MAX_SITE_NAME_LEN);
        for site in [
            "site1",
            "site_2",
            "node-3.example.org",
            "10.0.0.2",
            &longest,
        ] {
            check_site_name(site).unwrap();
        }
    }

    #[test]
    fn site_names_that_could_change_a_url_are_refused() {
        let long_label = "a".repeat(MAX_SITE_LABEL_LEN + 1);
        let too_long = format!("{0}.{0}.{0}.{0}", "a".repeat(63));
        for site in [
            "127.0.0.1:45999",
            "h/x",
            "h#",
            "user@h",
            "h?q",
            "site 2",
            "h%2F",
            "-h",
            ".h",
            "h.",
            "a..b",
            "é",
            long_label.as_str(),
            too_long.as_str(),
        ] {
            assert!(check_site_name(site).is_err(), "{site:?}");
            assert!(split_sites(&format!("ok&{site}")).is_err(), "{site:?}");
        }
    }

    #[test]
    fn a_long_id_is_refused_without_being_echoed() {
        let id = "a".repeat(MAX_RESOURCE_ID_LEN + 1);
        let err = check_resource_id(&id).unwrap_err();
        assert!(err.contains(&MAX_RESOURCE_ID_LEN.to_string()), "{err}");
        assert!(!err.contains(&id), "{err}");
        check_resource_id(&id[1..]).unwrap();
    }

    #[test]
    fn at_most_max_sites_distinct_sites_and_repeats_are_free() {
        let names: Vec<String> = (0..MAX_SITES).map(|i| format!("s{i}")).collect();
        assert_eq!(split_sites(&names.join("&")).unwrap().len(), MAX_SITES);
        let err = split_sites(&format!("{}&one-more", names.join("&"))).unwrap_err();
        assert!(err.contains(&MAX_SITES.to_string()), "{err}");
        // A million repeats of one name is one site, read in linear time.
        let repeats = vec!["s"; 1_000_000].join("&");
        assert_eq!(split_sites(&repeats).unwrap(), ["s"]);
    }
}
