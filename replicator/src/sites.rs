//! Where each site's CouchDB and Cheops API are: an explicit map for the
//! sites we know, URL templates for the others.

use std::collections::BTreeMap;

/// The URLs of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteUrls {
    /// The site's Cheops database, credentials included, as a replication
    /// target (`http://admin:password@host:5984/cheops`).
    pub couch: String,
    /// The site's Cheops API (`http://host:8079`), for `/show` fan-out.
    pub api: String,
}

/// Resolves site names to URLs. `{site}` in a template is replaced by the
/// site's name; the defaults are the original's (`http://{site}:5984/cheops`
/// and `http://{site}:8079`).
#[derive(Debug, Clone)]
pub struct Sites {
    known: BTreeMap<String, SiteUrls>,
    couch_template: String,
    api_template: String,
}

impl Default for Sites {
    fn default() -> Self {
        Sites {
            known: BTreeMap::new(),
            couch_template: "http://{site}:5984/cheops".to_owned(),
            api_template: "http://{site}:8079".to_owned(),
        }
    }
}

impl Sites {
    pub fn new(couch_template: impl Into<String>, api_template: impl Into<String>) -> Self {
        Sites {
            known: BTreeMap::new(),
            couch_template: couch_template.into(),
            api_template: api_template.into(),
        }
    }

    /// Adds (or replaces) an explicit entry for `site`.
    pub fn insert(&mut self, site: impl Into<String>, urls: SiteUrls) {
        self.known.insert(site.into(), urls);
    }

    pub fn urls(&self, site: &str) -> SiteUrls {
        self.known.get(site).cloned().unwrap_or_else(|| SiteUrls {
            couch: self.couch_template.replace("{site}", site),
            api: self.api_template.replace("{site}", site),
        })
    }

    pub fn couch_url(&self, site: &str) -> String {
        self.urls(site).couch
    }

    pub fn api_url(&self, site: &str) -> String {
        self.urls(site).api
    }

    /// The sites given explicitly (by `--peer` or a peers file).
    pub fn known(&self) -> impl Iterator<Item = &str> {
        self.known.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sites_win_over_templates() {
        let mut sites = Sites::new(
            "http://u:p@{site}.example:5984/cheops",
            "http://{site}.example:8079",
        );
        sites.insert(
            "site1",
            SiteUrls {
                couch: "http://127.0.0.1:6001/cheops".into(),
                api: "http://127.0.0.1:7001".into(),
            },
        );
        assert_eq!(sites.api_url("site1"), "http://127.0.0.1:7001");
        assert_eq!(
            sites.couch_url("site2"),
            "http://u:p@site2.example:5984/cheops"
        );
        assert_eq!(Sites::default().api_url("s"), "http://s:8079");
    }
}
