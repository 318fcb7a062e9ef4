//! Queries of the design document's views.

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{CouchClient, DocRows, ViewEntry, ViewRow};
use crate::metrics::RequestKind;
use crate::ReplicatorError;

impl CouchClient {
    /// The database sequence up to which a view's index is built, read
    /// without building it further.
    pub async fn view_indexed_seq(
        &self,
        design: &str,
        view: &str,
    ) -> Result<Value, ReplicatorError> {
        let url = self.url(&["_design", design, "_view", view]);
        let builder = self.request(Method::GET, url).query(&[
            ("stale", "ok"),
            ("update_seq", "true"),
            ("limit", "0"),
            ("reduce", "false"),
        ]);
        let context = format!("GET view {design}/{view} (its sequence)");
        let (_, mut value) = self.send(RequestKind::View, builder, &context, &[]).await?;
        match value.get_mut("update_seq").map(Value::take) {
            Some(seq) if !seq.is_null() => Ok(seq),
            _ => Err(ReplicatorError::Couch {
                status: 0,
                context,
                body: "no update_seq in the answer".into(),
            }),
        }
    }

    /// Brings a view's index up to date, reading none of its rows.
    pub async fn index_view(&self, design: &str, view: &str) -> Result<(), ReplicatorError> {
        let url = self.url(&["_design", design, "_view", view]);
        let builder = self
            .request(Method::GET, url)
            .query(&[("limit", "0"), ("reduce", "false")]);
        let context = format!("GET view {design}/{view} (indexing)");
        self.send(RequestKind::View, builder, &context, &[]).await?;
        Ok(())
    }

    /// The rows of a view whose key is one of `keys`, as `(key, value)`, in
    /// the order of `keys` (a key with several rows gives them all). The
    /// keys go in the body of a POST, so that their number is not bounded
    /// by the length of a URL; PouchDB Server 4.2 takes it too. With
    /// `stale`, the index is read as it stands, without indexing what was
    /// stored since (`stale=ok`, which PouchDB Server 4.2 and CouchDB 3
    /// take).
    pub async fn view_rows_by_keys<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        design: &str,
        view: &str,
        keys: &[Value],
        stale: bool,
    ) -> Result<Vec<(K, V)>, ReplicatorError> {
        let entries = self.view_entries_by_keys(design, view, keys, stale).await?;
        Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
    }

    /// [`CouchClient::view_rows_by_keys`], each row with the id of the
    /// document that emitted it.
    pub async fn view_entries_by_keys<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        design: &str,
        view: &str,
        keys: &[Value],
        stale: bool,
    ) -> Result<Vec<ViewEntry<K, V>>, ReplicatorError> {
        #[derive(Deserialize)]
        struct Rows<K, V> {
            rows: Vec<ViewEntry<K, V>>,
        }
        let url = self.url(&["_design", design, "_view", view]);
        let mut builder = self
            .request(Method::POST, url)
            .json(&serde_json::json!({ "keys": keys }));
        if stale {
            builder = builder.query(&[("stale", "ok")]);
        }
        let context = format!("POST view {design}/{view}");
        let (_, rows) = self
            .send_as::<Rows<K, V>>(RequestKind::View, builder, &context, &[])
            .await?;
        Ok(rows.rows)
    }

    /// The documents a view's rows point to (with their `_conflicts`),
    /// decoded as `T`, in key order.
    pub async fn view_docs<T: DeserializeOwned>(
        &self,
        design: &str,
        view: &str,
    ) -> Result<Vec<T>, ReplicatorError> {
        let url = self.url(&["_design", design, "_view", view]);
        let builder = self.request(Method::GET, url).query(&[
            ("include_docs", "true"),
            ("conflicts", "true"),
            ("reduce", "false"),
        ]);
        let context = format!("GET view {design}/{view}");
        let (_, rows) = self
            .send_as::<DocRows<T>>(RequestKind::View, builder, &context, &[])
            .await?;
        Ok(rows.rows.into_iter().filter_map(|r| r.doc).collect())
    }

    /// A reduced view's values grouped by whole key, for the keys from
    /// `start` to `end` (inclusive).
    pub async fn view_groups<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        design: &str,
        view: &str,
        start: &Value,
        end: &Value,
    ) -> Result<Vec<(K, V)>, ReplicatorError> {
        #[derive(Deserialize)]
        struct Rows<K, V> {
            rows: Vec<Row<K, V>>,
        }
        #[derive(Deserialize)]
        struct Row<K, V> {
            key: K,
            value: V,
        }
        let url = self.url(&["_design", design, "_view", view]);
        let builder = self.request(Method::GET, url).query(&[
            ("group", "true"),
            ("startkey", start.to_string().as_str()),
            ("endkey", end.to_string().as_str()),
        ]);
        let context = format!("GET view {design}/{view} (grouped)");
        let (_, rows) = self
            .send_as::<Rows<K, V>>(RequestKind::View, builder, &context, &[])
            .await?;
        Ok(rows.rows.into_iter().map(|r| (r.key, r.value)).collect())
    }

    /// One page of a view's rows between `start` and `end` (inclusive),
    /// in key order, at most `limit`, with the documents they point to.
    pub async fn view_range(
        &self,
        design: &str,
        view: &str,
        start: &Value,
        end: &Value,
        limit: usize,
    ) -> Result<Vec<ViewRow>, ReplicatorError> {
        let url = self.url(&["_design", design, "_view", view]);
        let builder = self.request(Method::GET, url).query(&[
            ("startkey", start.to_string().as_str()),
            ("endkey", end.to_string().as_str()),
            ("limit", limit.to_string().as_str()),
            ("include_docs", "true"),
            ("reduce", "false"),
        ]);
        self.view_rows(builder, design, view).await
    }

    /// The rows of a view whose key is one of `keys`, with the documents
    /// they point to.
    pub async fn view_keys(
        &self,
        design: &str,
        view: &str,
        keys: &[Value],
    ) -> Result<Vec<ViewRow>, ReplicatorError> {
        let url = self.url(&["_design", design, "_view", view]);
        let builder = self
            .request(Method::POST, url)
            .query(&[("include_docs", "true"), ("reduce", "false")])
            .json(&serde_json::json!({ "keys": keys }));
        self.view_rows(builder, design, view).await
    }

    async fn view_rows(
        &self,
        builder: RequestBuilder,
        design: &str,
        view: &str,
    ) -> Result<Vec<ViewRow>, ReplicatorError> {
        #[derive(Deserialize)]
        struct Rows {
            rows: Vec<ViewRow>,
        }
        let context = format!("view {design}/{view}");
        let (_, value) = self.send(RequestKind::View, builder, &context, &[]).await?;
        Ok(Self::decode::<Rows>(value, &context)?.rows)
    }
}
