//! Where each site's CouchDB and Cheops API are: an explicit map for the
//! sites we know, URL templates for the others when the operator set them.
//!
//! The CouchDB URL of a site carries credentials (replication targets must
//! authenticate), and this node probes and replicates to every site a
//! resource names. So a site resolves only to a URL the operator chose: an
//! entry of the peer map, or a template the operator set, whose `{site}` a
//! checked site name ([`cheops_model::check_site_name`]) can only fill with
//! a plain host name. Any other site does not resolve, and an operation
//! naming it is refused.

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

/// The URL templates for sites missing from the map; `{site}` stands for
/// the site's name, as in the original's `http://{site}:5984/cheops` and
/// `http://{site}:8079`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub couch: String,
    pub api: String,
}

/// Resolves site names to URLs.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    known: BTreeMap<String, SiteUrls>,
    templates: Option<Templates>,
}

impl Sites {
    /// No site known yet; `templates` resolves the others, if given.
    pub fn new(templates: Option<Templates>) -> Self {
        Sites {
            known: BTreeMap::new(),
            templates,
        }
    }

    /// Adds (or replaces) an explicit entry for `site`.
    pub fn insert(&mut self, site: impl Into<String>, urls: SiteUrls) {
        self.known.insert(site.into(), urls);
    }

    /// The URLs of `site`: its entry, else the templates filled with its
    /// name when the name is a valid site name; `None` when neither.
    pub fn urls(&self, site: &str) -> Option<SiteUrls> {
        if let Some(urls) = self.known.get(site) {
            return Some(urls.clone());
        }
        let templates = self.templates.as_ref()?;
        cheops_model::check_site_name(site).ok()?;
        Some(SiteUrls {
            couch: templates.couch.replace("{site}", site),
            api: templates.api.replace("{site}", site),
        })
    }

    pub fn couch_url(&self, site: &str) -> Option<String> {
        self.urls(site).map(|urls| urls.couch)
    }

    pub fn api_url(&self, site: &str) -> Option<String> {
        self.urls(site).map(|urls| urls.api)
    }

    /// The URLs of `site`, or why it cannot be reached: the message for a
    /// caller who named it.
    pub fn resolve(&self, site: &str) -> Result<SiteUrls, String> {
        cheops_model::check_site_name(site)?;
        self.urls(site).ok_or_else(|| {
            format!(
                "site {site:?} is not a known peer of this node: the operator gives peers with \
                 --peer or --peers-file (or sets --couchdb-template and --api-template to reach \
                 any site by its name)"
            )
        })
    }

    /// The sites given explicitly (by `--peer` or a peers file).
    pub fn known(&self) -> impl Iterator<Item = &str> {
        self.known.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templated() -> Sites {
        Sites::new(Some(Templates {
            couch: "http://u:p@{site}.example:5984/cheops".into(),
            api: "http://{site}.example:8079".into(),
        }))
    }

    #[test]
    fn known_sites_win_over_templates() {
        let mut sites = templated();
        sites.insert(
            "site1",
            SiteUrls {
                couch: "http://127.0.0.1:6001/cheops".into(),
                api: "http://127.0.0.1:7001".into(),
            },
        );
        assert_eq!(sites.api_url("site1").unwrap(), "http://127.0.0.1:7001");
        assert_eq!(
            sites.couch_url("site2").unwrap(),
            "http://u:p@site2.example:5984/cheops"
        );
    }

    #[test]
    fn without_templates_only_known_sites_resolve() {
        let mut sites = Sites::default();
        sites.insert(
            "site1",
            SiteUrls {
                couch: "http://127.0.0.1:6001/cheops".into(),
                api: "http://127.0.0.1:7001".into(),
            },
        );
        assert!(sites.resolve("site1").is_ok());
        let err = sites.resolve("site2").unwrap_err();
        assert!(err.contains("site2") && err.contains("--peer"), "{err}");
        assert_eq!(sites.couch_url("site2"), None);
    }

    #[test]
    fn a_template_never_takes_a_name_that_would_change_its_url() {
        let sites = templated();
        for site in ["127.0.0.1:45999/x#", "evil@h", "h/p", "h?q", "h#f", "a b"] {
            assert_eq!(sites.urls(site), None, "{site:?}");
            assert!(sites.resolve(site).is_err(), "{site:?}");
        }
    }
}
