//! The one design document, `_design/cheops`: every view and filter the
//! node queries, by name.
//!
//! A node of the Go original may share the database. It creates
//! `_design/cheops` only when missing (accepting 409) and then queries its
//! two views, `all-by-resourceid` and `last-reply`. So the design document is
//! merged, never replaced: this node writes its own views and filters, adds
//! the original's views when they are missing, and leaves everything else in
//! the document as it found it.

use serde_json::{json, Map, Value};

/// The design document's name: `_design/cheops`.
pub const DESIGN: &str = "cheops";
/// View of REPLY documents by `[ResourceId, Site]`, their value what a run
/// is: `{"RequestId", "ExecutionTime", "Rebuild"}`.
pub const REPLIES_VIEW: &str = "replies-by-resource-site";
/// View of REPLY and HISTORY documents by `[ResourceId, RequestId]`: a
/// reply's value is `{"Site", "ReadsHistory", "Status", "ExecutionTime",
/// "History"}` (`History`: it carries its operation), a history document's
/// `{"History": true}`. Queried with the block's unpruned requests as keys,
/// so that deciding what to prune, or what a block's cells show, costs what
/// those requests cost, not the history.
pub const REQUESTS_VIEW: &str = "by-resource-request";
/// View of RESOURCE documents by id, no value: the resources alone, read
/// with their documents.
pub const RESOURCES_VIEW: &str = "resources";
/// View of REPLY documents by `[Site, ResourceId]`, their value the
/// `ExecutionTime`, reduced to `{"Count", "Last"}`: how many times a site
/// ran a resource's operations and when last, whatever the history's size.
pub const RUNS_VIEW: &str = "runs-by-site";
/// Replication filter: documents whose Locations contain `query_params.site`,
/// but those whose `Origin` is `query_params.target` (`db/origin.rs`).
pub const SITE_FILTER: &str = "cheops/by-site";
/// Changes filter: the replies of the site `site` (by their content: the
/// original lets CouchDB choose their ids).
pub const REPLIES_OF_FILTER: &str = "cheops/replies-of";

/// View of HISTORY documents, and of replies carrying their operation, in
/// history order (see `node/history.rs`).
pub const HISTORY_VIEW: &str = "history-by-resource";

/// The views and filters this node owns: rewritten when they differ.
fn own_parts() -> [(&'static str, &'static str, Value); 7] {
    [
        (
            "views",
            REPLIES_VIEW,
            json!({
                "map": "function (doc) { if (doc.Type === 'REPLY') { emit([doc.ResourceId, doc.Site], {RequestId: doc.RequestId, ExecutionTime: doc.ExecutionTime, Rebuild: doc.Rebuild === true}); } }"
            }),
        ),
        (
            "views",
            REQUESTS_VIEW,
            json!({
                "map": "function (doc) { if (doc.Type === 'REPLY') { emit([doc.ResourceId, doc.RequestId], {Site: doc.Site, ReadsHistory: doc.ReadsHistory === true, Status: doc.Status, ExecutionTime: doc.ExecutionTime, History: !!doc.Operation}); } else if (doc.Type === 'HISTORY' && doc.Operation) { emit([doc.ResourceId, doc.Operation.RequestId], {History: true}); } }"
            }),
        ),
        (
            "views",
            RESOURCES_VIEW,
            json!({
                "map": "function (doc) { if (doc.Type === 'RESOURCE') { emit(doc._id, null); } }"
            }),
        ),
        (
            "views",
            RUNS_VIEW,
            json!({
                "map": "function (doc) { if (doc.Type === 'REPLY') { emit([doc.Site, doc.ResourceId], doc.ExecutionTime); } }",
                "reduce": RUNS_REDUCE
            }),
        ),
        (
            "filters",
            "by-site",
            // String(): PouchDB Server parses query values as JSON, so a
            // site named 123 would otherwise arrive as a number (an identity
            // that reads as a number then matches no `Origin`: it is only
            // sent back). `target`, the peer database's identity, is absent
            // while unknown: everything goes (`db/origin.rs`).
            json!("function (doc, req) { return !!doc.Locations && doc.Locations.indexOf(String(req.query.site)) >= 0 && !(req.query.target && doc.Origin === String(req.query.target)); }"),
        ),
        (
            "filters",
            "replies-of",
            json!("function (doc, req) { return doc.Type === 'REPLY' && doc.Site === String(req.query.site); }"),
        ),
        ("views", HISTORY_VIEW, history_view()),
    ]
}

/// The `runs-by-site` reduce: the count of runs and the greatest time,
/// compared as text (as the original compares them).
const RUNS_REDUCE: &str = "function (keys, values, rereduce) { var count = 0, last = ''; for (var i = 0; i < values.length; i++) { var v = rereduce ? values[i] : {Count: 1, Last: values[i]}; count += v.Count; if (v.Last > last) { last = v.Last; } } return {Count: count, Last: last}; }";

/// The `last-reply` reduce: the value with the greatest `Time`, compared as
/// text (as the original's does), with the operators every JavaScript
/// engine of CouchDB has.
const LAST_REPLY_REDUCE: &str = "function (keys, values, rereduce) { var last = values[0]; for (var i = 1; i < values.length; i++) { if (values[i].Time >= last.Time) { last = values[i]; } } return last; }";

/// Texts of the original's views that this node wrote and now writes
/// otherwise: rewritten when found. This one calls `localeCompare`, which
/// CouchDB's QuickJS engine lacks (the view then answers `null`).
const REPLACED_TEXTS: [(&str, &str); 1] = [(
    "last-reply",
    "function (keys, values, rereduce) { var last = values[0]; for (var i = 1; i < values.length; i++) { if (values[i].Time.localeCompare(last.Time) >= 0) { last = values[i]; } } return last; }",
)];

/// The Go original's views, with the same keys, values and reductions: added
/// when missing, never rewritten (a Go node may have written its own text),
/// but for texts this node wrote itself that it now writes otherwise.
fn original_views() -> [(&'static str, Value); 2] {
    [
        (
            // Per resource, its sites and the sites that replied to it;
            // queried with group_level=1 to count resources.
            "all-by-resourceid",
            json!({
                "map": "function (doc) { if (doc.Type === 'RESOURCE') { (doc.Locations || []).forEach(function (site) { emit([doc._id, site], null); }); } else if (doc.Type === 'REPLY') { emit([doc.ResourceId, doc.Site], null); } }",
                "reduce": "_count"
            }),
        ),
        (
            // A site's latest reply by execution time (the original keys it
            // by [Site, Id], Id being absent from replies).
            "last-reply",
            json!({
                "map": "function (doc) { if (doc.Type !== 'REPLY') { return; } emit([doc.Site, doc.Id], {Time: doc.ExecutionTime, RequestId: doc.RequestId, Sites: doc.Locations}); }",
                "reduce": LAST_REPLY_REDUCE
            }),
        ),
    ]
}

/// `current` (the stored design document, if any) with this node's parts
/// written and the original's views added when missing; `None` when it
/// already holds all of them.
pub fn merged_design(current: Option<&Value>) -> Option<Value> {
    let mut doc = match current {
        Some(Value::Object(fields)) => fields.clone(),
        _ => Map::new(),
    };
    let before = Value::Object(doc.clone());
    doc.insert("_id".into(), json!(format!("_design/{DESIGN}")));
    doc.entry("language").or_insert_with(|| json!("javascript"));
    for (section, name, body) in own_parts() {
        edit_section(&mut doc, section, |parts| {
            parts.insert(name.into(), body);
        });
    }
    edit_section(&mut doc, "views", |views| {
        for (name, body) in original_views() {
            let replaced = REPLACED_TEXTS.iter().any(|(view, reduce)| {
                *view == name
                    && views.get(name).and_then(|v| v.get("reduce")) == Some(&json!(reduce))
            });
            if replaced {
                views.insert(name.into(), body);
            } else {
                views.entry(name).or_insert(body);
            }
        }
    });
    let doc = Value::Object(doc);
    (current.is_none() || doc != before).then_some(doc)
}

/// Runs `edit` on the object under `key` (an empty one when absent or not
/// an object).
fn edit_section(
    doc: &mut Map<String, Value>,
    key: &str,
    edit: impl FnOnce(&mut Map<String, Value>),
) {
    let mut section = match doc.remove(key) {
        Some(Value::Object(section)) => section,
        _ => Map::new(),
    };
    edit(&mut section);
    doc.insert(key.into(), Value::Object(section));
}

/// The history view's map: HISTORY documents, and replies that carry their
/// operation, keyed `[ResourceId, seconds
/// since the epoch in UTC, nanoseconds, RequestId, _id]`. Go-style times
/// (trailing zeros trimmed, any UTC offset) do not sort as text, so the
/// time is parsed and emitted as numbers, which CouchDB and PouchDB collate
/// numerically; a time that does not parse gets `null` seconds and comes
/// first. The document id makes keys unique, so that a page starts exactly
/// where the previous one stopped.
fn history_view() -> Value {
    json!({
        "map": r"function (doc) {
  if ((doc.Type !== 'HISTORY' && doc.Type !== 'REPLY') || !doc.Operation) { return; }
  var op = doc.Operation;
  var m = /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))$/.exec(String(op.Time));
  var seconds = null;
  var nanos = 0;
  if (m) {
    var d = new Date(0);
    d.setUTCFullYear(+m[1], +m[2] - 1, +m[3]);
    d.setUTCHours(+m[4], +m[5], +m[6], 0);
    var offset = m[8] ? 0 : (m[9] === '-' ? -1 : 1) * (+m[10] * 3600 + +m[11] * 60);
    seconds = d.getTime() / 1000 - offset;
    nanos = +((m[7] || '') + '000000000').slice(0, 9);
  }
  emit([doc.ResourceId, seconds, nanos, String(op.RequestId), doc._id], null);
}"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_both_nodes_views_and_the_filter() {
        let doc = merged_design(None).expect("written");
        let views = doc["views"].as_object().unwrap();
        for name in [
            REPLIES_VIEW,
            REQUESTS_VIEW,
            RESOURCES_VIEW,
            RUNS_VIEW,
            "all-by-resourceid",
            "last-reply",
            HISTORY_VIEW,
        ] {
            assert!(views.contains_key(name), "{name} missing");
        }
        assert!(doc["filters"]["by-site"].is_string());
        assert_eq!(doc["_id"], "_design/cheops");
    }

    #[test]
    fn the_originals_document_keeps_everything_and_gains_this_nodes_parts() {
        let mut original: Value = serde_json::from_str(include_str!(
            "../../../model/tests/wire/go-compatible-design-document.json"
        ))
        .unwrap();
        original["_id"] = json!("_design/cheops");
        original["_rev"] = json!("1-abc");
        original["views"]["someone-elses"] = json!({"map": "function (doc) {}"});
        let merged = merged_design(Some(&original)).expect("this node's parts are added");
        for (name, body) in original["views"].as_object().unwrap() {
            assert_eq!(&merged["views"][name], body, "{name} was rewritten");
        }
        assert_eq!(merged["_rev"], "1-abc");
        assert!(merged["views"][REPLIES_VIEW]["map"].is_string());
        assert_eq!(merged_design(Some(&merged)), None, "merging is idempotent");
    }

    #[test]
    fn a_stale_own_view_is_rewritten_but_foreign_text_is_not() {
        let mut stored = merged_design(None).unwrap();
        stored["views"][REPLIES_VIEW] = json!({"map": "function (doc) { emit(1) }"});
        stored["views"]["last-reply"] = json!({"map": "their text", "reduce": "their reduce"});
        let merged = merged_design(Some(&stored)).expect("the own view is fixed");
        assert_eq!(merged["views"][REPLIES_VIEW], own_parts()[0].2);
        assert_eq!(merged["views"]["last-reply"]["map"], "their text");
    }

    /// Every JavaScript function this node writes into the design document.
    fn own_functions() -> Vec<String> {
        let doc = merged_design(None).expect("written");
        let mut texts = Vec::new();
        for section in ["views", "filters"] {
            for part in doc[section].as_object().unwrap().values() {
                match part {
                    Value::String(text) => texts.push(text.clone()),
                    Value::Object(view) => texts.extend(
                        view.values()
                            .filter_map(Value::as_str)
                            .filter(|text| text.starts_with("function"))
                            .map(str::to_owned),
                    ),
                    _ => {}
                }
            }
        }
        texts
    }

    #[test]
    fn every_function_runs_on_every_couchdb_javascript_engine() {
        // ES5 methods that SpiderMonkey and QuickJS (without Intl) both
        // have: a new one is added here only once checked on both.
        const ALLOWED_METHODS: [&str; 7] = [
            "exec",
            "forEach",
            "getTime",
            "indexOf",
            "setUTCFullYear",
            "setUTCHours",
            "slice",
        ];
        const FORBIDDEN_SYNTAX: [&str; 6] = ["=>", "`", "let ", "const ", "class ", "..."];
        let texts = own_functions();
        assert!(texts.len() >= 8, "{} functions found", texts.len());
        for text in &texts {
            let mut rest = text.as_str();
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // A regular expression's `.(` calls nothing.
                let called = !name.is_empty() && rest[name.len()..].trim_start().starts_with('(');
                assert!(
                    !called || ALLOWED_METHODS.contains(&name.as_str()),
                    "`{name}` is not known to run on every engine, in {text}"
                );
            }
            for syntax in FORBIDDEN_SYNTAX {
                assert!(!text.contains(syntax), "`{syntax}` (beyond ES5) in {text}");
            }
        }
    }

    #[test]
    fn the_last_reply_text_this_node_wrote_before_is_rewritten() {
        let mut stored = merged_design(None).unwrap();
        stored["views"]["last-reply"]["reduce"] = json!(REPLACED_TEXTS[0].1);
        let merged = merged_design(Some(&stored)).expect("rewritten");
        assert_eq!(merged["views"]["last-reply"]["reduce"], LAST_REPLY_REDUCE);
    }
}
